"""Parity of a ported Keras model file: the port against the Keras that wrote the file, same weights.

The reference is loaded with `safe_mode` (Keras refuses Lambda bytecode itself; torchport already did),
by Keras 3 for Keras 3 files and by tf_keras for tf.keras 2 files. Inputs are drawn from a seeded numpy
Generator in the model's input shapes: images in [0, 1], token ids in the Embedding's vocabulary with
padding zeros in front (masks exercised), other inputs standard normal. Everything runs in inference mode.
"""
from __future__ import annotations

import numpy as np
import torch

from .core import Result, format_table, max_abs, max_rel, worst

FLOAT64_POLICY = {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float64"},
                  "registered_name": None}


def reference_keras(path: str, keras_version: str):
    """The `keras` module that wrote the file: Keras 3, or tf_keras for a tf.keras 2 file."""
    from ..keras_env import import_keras
    keras = import_keras()
    if keras_version.startswith("2."):
        import tf_keras
        return tf_keras
    return keras


def load_reference(path: str, keras_version: str, dtype: str = "float32"):
    keras = reference_keras(path, keras_version)
    model = keras.models.load_model(path, compile=False, safe_mode=True) if not keras_version.startswith("2.") \
        else keras.models.load_model(path, compile=False)
    if dtype == "float32":
        return model
    config = model.get_config()
    _set_dtype(config, "float64", keras_version.startswith("2."))
    twin = model.__class__.from_config(config)
    twin.set_weights([w.astype("float64") for w in model.get_weights()])
    return twin


def _set_dtype(obj, dtype: str, keras2: bool) -> None:
    """Every layer config's dtype policy (and float inputs' dtype) to `dtype`, recursively."""
    if isinstance(obj, dict):
        if "dtype" in obj and (isinstance(obj["dtype"], dict) or obj["dtype"] in ("float32", "float64")):
            obj["dtype"] = dtype if keras2 or not isinstance(obj["dtype"], dict) else dict(FLOAT64_POLICY)
        for v in obj.values():
            _set_dtype(v, dtype, keras2)
    elif isinstance(obj, list):
        for v in obj:
            _set_dtype(v, dtype, keras2)


def make_inputs(plan, batch: int, seed: int, dtype: str = "float32") -> list[np.ndarray]:
    """One seeded array per model input, in Keras' layout."""
    from ..porting.convert import NCHW

    rng = np.random.default_rng(seed)
    arrays = []
    for t in plan.inputs:
        shape = [batch] + [(16 if t.layout == NCHW else 7) if d is None else d for d in t.shape]
        if t.dtype.startswith(("int", "uint")):
            vocab = next((c.input_dim for c in plan.converters.values()
                          if getattr(c, "input_dim", None) and c.inputs[0].var == t.var), 10)
            a = rng.integers(1, vocab, shape)
            if len(shape) == 2:  # pre-padding, as pad_sequences does: masked steps in front
                for row, pad in zip(a, rng.integers(0, shape[1], batch), strict=True):
                    row[:pad] = 0
            arrays.append(a.astype(t.dtype))
        elif t.layout == NCHW:
            arrays.append(rng.uniform(0, 1, shape).astype(dtype))
        else:
            arrays.append(rng.standard_normal(shape).astype(dtype))
    return arrays


def torch_inputs(plan, arrays: list[np.ndarray]) -> list[torch.Tensor]:
    from ..porting.convert import NCHW
    return [torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2) if t.layout == NCHW else a))
            for t, a in zip(plan.inputs, arrays, strict=True)]


def _listify(out) -> list:
    return list(out) if isinstance(out, (list, tuple)) else [out]


def torch_model(plan, path: str, dtype: str):
    """The port in `dtype`: planned again as a float64 model (its constants as Keras applies them in one)."""
    if dtype == plan.dtype:
        return plan.module()
    from ..port import plan_file
    return plan_file(path, dtype).module()


def check_forward(plan, path: str, dtype: str = "float32", batch: int = 8, seed: int = 0) -> Result:
    km = load_reference(path, plan.ctx.keras_version, dtype)
    tm = torch_model(plan, path, dtype)
    x = make_inputs(plan, batch, seed, dtype)
    theirs = [np.asarray(o) for o in _listify(km(x if len(x) > 1 else x[0], training=False))]
    with torch.no_grad():
        ours = [o.numpy() for o in _listify(tm(*torch_inputs(plan, x)))]
    diff = worst((ours, theirs), lambda a, b: max_abs(a, b) / max(1.0, float(np.max(np.abs(b)))))
    return Result(f"forward {dtype} (batch {batch}){_caveat(plan, dtype)}", "max |out - keras| / max(1, |keras|)",
                  diff, _tolerance(plan, dtype, 1e-10, 1e-5))


def _float32_inside(plan) -> list[str]:
    return sorted(plan.ctx.caveats)


def _tolerance(plan, dtype: str, tol64: float, tol32: float) -> float:
    """float64 tolerances hold only where TensorFlow computes in float64 throughout."""
    return tol64 if dtype == "float64" and not _float32_inside(plan) else tol32


def _caveat(plan, dtype: str) -> str:
    return f" [{'; '.join(_float32_inside(plan))}]" if dtype == "float64" and _float32_inside(plan) else ""


def gradient_pairs(plan, km, tm, x, seed: int):
    """(ours, theirs): the gradient of sum(out * c) (c a fixed random cotangent) for every trainable
    Keras variable, ours mapped to Keras' layout by each layer's converter."""
    import tensorflow as tf

    if not any(p.requires_grad for p in tm.parameters()):
        return [], []
    rng = np.random.default_rng(seed + 1)
    xs = torch_inputs(plan, x)
    tm.zero_grad()
    outs = _listify(tm(*xs))
    cot = [rng.standard_normal(o.shape).astype(o.detach().numpy().dtype) for o in outs]
    sum(((o * torch.from_numpy(c)).sum() for o, c in zip(outs, cot, strict=True)), torch.zeros(())).backward()
    with tf.GradientTape() as tape:
        k_outs = _listify(km(x if len(x) > 1 else x[0], training=False))
        loss = tf.add_n([tf.reduce_sum(o * c) for o, c in zip(k_outs, cot, strict=True)])
    ours, k_vars = [], []
    for conv, expected in plan.weighted:
        layer = km.get_layer(conv.name)
        if not layer.trainable_weights:
            continue
        state = {name[len(conv.attr) + 1:]: (p.grad if p.grad is not None else torch.zeros_like(p)).numpy()
                 for name, p in tm.named_parameters() if name.startswith(conv.attr + ".")}
        state.update({name[len(conv.attr) + 1:]: np.zeros(tuple(b.shape))  # buffers have no gradient
                      for name, b in tm.named_buffers() if name.startswith(conv.attr + ".")})
        ours += [a for a, w in zip(conv.to_keras(state), expected, strict=True) if w.trainable]
        k_vars += layer.trainable_weights
    return ours, [np.asarray(tf.convert_to_tensor(g)) for g in tape.gradient(loss, k_vars)]  # Embedding: sparse


def check_gradients(plan, path: str, dtype: str = "float32", batch: int = 8, seed: int = 0) -> Result:
    km = load_reference(path, plan.ctx.keras_version, dtype)
    tm = torch_model(plan, path, dtype)
    ours, theirs = gradient_pairs(plan, km, tm, make_inputs(plan, batch, seed, dtype), seed)
    return Result(f"gradients {dtype}, all {len(theirs)} tensors (batch {batch}){_caveat(plan, dtype)}",
                  "max rel |grad - keras|", worst((ours, theirs), max_rel), _tolerance(plan, dtype, 1e-9, 1e-5))


def port_checks(plan, path: str) -> list[Result]:
    return [check_forward(plan, path, "float32"), check_forward(plan, path, "float64"),
            check_gradients(plan, path, "float32"), check_gradients(plan, path, "float64")]


def port_report(path: str, plan) -> str:
    """parity.md: the port's forward and gradient checks against Keras, as `torchport parity` prints them."""
    from ..keras_env import import_keras
    keras = import_keras()
    import tensorflow as tf

    head = [f"# Parity of `{plan.file_name}` ({plan.title}) against Keras", "",
            f"Keras {keras.__version__}, TensorFlow {tf.__version__}, torch {torch.__version__}; "
            "same weights, seeded inputs, inference mode.", ""]
    try:
        load_reference(path, plan.ctx.keras_version)
    except Exception as e:  # Keras itself cannot read some files it wrote (e.g. a masked .h5): say so
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        return "\n".join(head + [f"Keras cannot load this file itself ({reason}): nothing to compare against.", ""])
    results = port_checks(plan, path)
    failed = [r for r in results if not r.passed]
    return "\n".join(head + ["```", format_table(results), "```", "",
                             f"{len(results) - len(failed)} passed, {len(failed)} failed", ""])
