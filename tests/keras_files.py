"""Keras model files written without TensorFlow, for the tests of the reader, the port and fit."""
import numpy as np


def write_keras_file(path, config: dict, seed: int = 0, arrays=None, compile_config=None) -> str:
    """A `.keras` file for `config` with seeded random weights of the shapes its converters expect (no
    TensorFlow needed): what a Keras user's file holds, for tests of the reader and the port."""
    from torchport.porting.build import plan_model
    from torchport.porting.files import KerasFile
    from torchport.porting.writer import keras_archive_bytes

    if arrays is None:
        plan = plan_model(KerasFile(str(path), "keras", "3.15.1", config, None))
        rng = np.random.default_rng(seed)
        arrays = {}
        for conv, expected in plan.weighted:
            slots = {}
            for w in expected:  # glorot-like scales: a trained model's, not a saturated one's
                fan_in = int(np.prod(w.shape[:-1])) if len(w.shape) > 1 else 1
                a = rng.uniform(0.5, 1.5, w.shape) if "variance" in w.name else rng.normal(0, 1, w.shape) / np.sqrt(
                    max(fan_in, 1)) * (0.3 if len(w.shape) == 1 else 1.0)
                slots.setdefault(w.slot, []).append(a.astype("float32"))
            arrays[conv.name] = list(slots.items())
    with open(path, "wb") as f:
        f.write(keras_archive_bytes(config, arrays, compile_config))
    return str(path)
