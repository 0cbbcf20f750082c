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
    """(storage key, layer name, class) for each layer of a model config, in Keras' counting order; a nested
    model's layers follow it, inside its group (`layers/functional/layers/conv2d`, named `base/conv1`)."""
    return _keys(parse(config), "", "")


def _keys(graph, key_prefix: str, name_prefix: str) -> list[tuple[str, str, str]]:
    layers = [layer for layer in graph.layers if not layer.is_op]
    if graph.class_name == "Sequential":
        layers = [layer for layer in layers if layer.class_name != "InputLayer"]
    found = []
    for layer in layers:
        key, name = key_prefix + layer.storage_key, name_prefix + layer.name
        found.append((key, name, layer.class_name))
        if layer.nested is not None:
            found += _keys(layer.nested, f"{key}/", f"{name}/")
    return found


def weights_h5_bytes(config: dict, arrays: dict[str, list[tuple[str, list[np.ndarray]]]]) -> bytes:
    """A `.weights.h5` file of a model config: `arrays[layer name]` = [(slot, [arrays in Keras' order]), ...]."""
    return layers_h5_bytes(storage_keys(config), arrays, config.get("config", {}).get("name", "model"))


def layers_h5_bytes(layers: list[tuple[str, str, str]], arrays: dict, model_name: str) -> bytes:
    """A `.weights.h5` file: for each (storage key, layer name, class) its `arrays[layer name]`, as above."""
    import h5py

    buf = io.BytesIO()
    with h5py.File(buf, "w") as h5:
        group_of = h5.create_group("layers")
        for key, name, cls in layers:
            group = group_of.create_group(key[len("layers/"):])
            slots = arrays.get(name) or [("", [])]
            name = name.split("/")[-1]
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
        h5.create_group("vars").attrs["name"] = model_name
    return buf.getvalue()


def _with_modules(entry: dict, module: str) -> dict:
    """A Keras 3 `.h5` config entry (`{"class_name", "config"}`) as a `.keras` file holds it: with its module."""
    return {"module": module, **entry, "registered_name": entry.get("registered_name")} if "module" not in entry \
        else entry


def _model_with_modules(config: dict) -> dict:
    """A model entry and its layers' (nested models' too) with the modules a `.keras` file names."""
    if "module" not in config:  # as Keras 3 writes them into a .keras file
        config = {"module": "keras", **config, "registered_name": None} if config["class_name"] == "Sequential" \
            else {"module": "keras.src.models.functional", **config, "registered_name": config["class_name"]}
    layers = [_model_with_modules(layer) if layer.get("class_name") in ("Sequential", "Functional", "Model")
              and "layers" in layer.get("config", {}) else _with_modules(layer, "keras.layers")
              for layer in config["config"]["layers"]]
    return {**config, "config": {**config["config"], "layers": layers}}


def keras3_saved_form(config: dict, compile_config: dict | None) -> tuple[dict, dict | None]:
    """A Keras 3 legacy `.h5`'s model config and training settings in the form `keras.models.load_model`
    reads from a `.keras` file: the model and each layer entry name their module (an `.h5` leaves it out for
    those, and Keras' `.keras` loader then cannot find `Sequential`), and so do loss and metric objects."""
    config = _model_with_modules(config)
    if compile_config is not None:
        compile_config = dict(compile_config)
        if isinstance(compile_config.get("loss"), dict):
            compile_config["loss"] = _with_modules(compile_config["loss"], "keras.losses")
        if isinstance(compile_config.get("metrics"), list):
            compile_config["metrics"] = [_with_modules(m, "keras.metrics") if isinstance(m, dict) else m
                                         for m in compile_config["metrics"]]
    return config, compile_config


def keras_archive_bytes(config: dict, arrays, compile_config: dict | None = None,
                        keras_version: str = "3.15.1") -> bytes:
    """A `.keras` zip: metadata.json, config.json (with `compile_config` if given), model.weights.h5."""
    config, compile_config = keras3_saved_form(config, compile_config)
    if compile_config is not None:
        config["compile_config"] = compile_config
    meta = {"keras_version": keras_version, "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S")}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:  # Keras stores its members uncompressed
        z.writestr("metadata.json", json.dumps(meta))
        z.writestr("config.json", json.dumps(config))
        z.writestr("model.weights.h5", weights_h5_bytes(config, arrays))
    return buf.getvalue()
