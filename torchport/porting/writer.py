"""Keras 3 files written with h5py and zipfile: `model.weights.h5` (Keras' `model.load_weights` reads it) and
`.keras` archives (Keras' `load_model` opens them). Used to save a ported model's trained weights back for
Keras, and by the tests to make model files without TensorFlow.

The layout is Keras' own (see files.py): `layers/<snake_case(class)>[_k]/<sub-object>/vars/<i>`, every layer
of the model present (an empty `vars` group for a layer without variables), `vars` groups named.
"""
from __future__ import annotations

import datetime
import io
import json
import zipfile

import numpy as np

from .files import snake_case
from .graph import parse


def storage_keys(config: dict) -> list[tuple[str, str, str]]:
    """(storage key, layer name, class) for each layer of a model config, in Keras' counting order."""
    graph = parse(config)
    layers = [layer for layer in graph.layers if not layer.is_op]
    if graph.class_name == "Sequential":
        layers = [layer for layer in layers if layer.class_name != "InputLayer"]
    return [(layer.storage_key, layer.name, layer.class_name) for layer in layers]


def weights_h5_bytes(config: dict, arrays: dict[str, list[tuple[str, list[np.ndarray]]]]) -> bytes:
    """A `.weights.h5` file: `arrays[layer name]` = [(slot, [arrays in Keras' order]), ...]."""
    import h5py

    buf = io.BytesIO()
    with h5py.File(buf, "w") as h5:
        layers = h5.create_group("layers")
        for key, name, cls in storage_keys(config):
            group = layers.create_group(key[len("layers/"):])
            slots = arrays.get(name) or [("", [])]
            for slot, values in slots:
                target = group
                for part in [p for p in slot.split("/") if p]:
                    target = target.require_group(part)
                v = target.create_group("vars")
                v.attrs["name"] = name if not slot else f"{snake_case(cls)}_{slot.split('/')[-1]}"
                for i, a in enumerate(values):
                    v.create_dataset(str(i), data=np.asarray(a))
            if "vars" not in group:
                group.create_group("vars").attrs["name"] = name
        h5.create_group("vars").attrs["name"] = config.get("config", {}).get("name", "model")
    return buf.getvalue()


def keras_archive_bytes(config: dict, arrays, compile_config: dict | None = None,
                        keras_version: str = "3.15.1") -> bytes:
    """A `.keras` zip: metadata.json, config.json (with `compile_config` if given), model.weights.h5."""
    config = dict(config)
    if compile_config is not None:
        config["compile_config"] = compile_config
    meta = {"keras_version": keras_version, "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S")}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:  # Keras stores its members uncompressed
        z.writestr("metadata.json", json.dumps(meta))
        z.writestr("config.json", json.dumps(config))
        z.writestr("model.weights.h5", weights_h5_bytes(config, arrays))
    return buf.getvalue()
