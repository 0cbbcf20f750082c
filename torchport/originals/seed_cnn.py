"""The seed CNN as Keras 3 saves it: its config.json (model and compile settings, as `model.save` wrote them
for the seed script's model compiled with SGD(0.01, momentum=0.9)), and a `.keras` file of it holding the
weights `torchport train cifar10 --seed N` starts from, written without TensorFlow."""
from __future__ import annotations

import json
from importlib import resources

CONFIG = json.loads(resources.files(__package__).joinpath("seed_cnn_config.json").read_text())


def write_keras_file(path: str, seed: int = 7) -> str:
    """The seed CNN's `.keras` with SimpleCNN's initial weights for `seed` (torch's draw, as the port makes it)."""
    import torch

    from ..cifar10 import SimpleCNN
    from ..keras_io import to_keras_layout, weighted_layers
    from ..porting.writer import keras_archive_bytes

    torch.manual_seed(seed)
    model = SimpleCNN()
    arrays = {name: [("", to_keras_layout(layer))] for name, layer in weighted_layers(model)}
    config = {k: v for k, v in CONFIG.items() if k != "compile_config"}
    with open(path, "wb") as f:
        f.write(keras_archive_bytes(config, arrays, CONFIG["compile_config"]))
    return path
