"""Weights between Keras and torchport: live models both ways, and Keras 3 weight files with h5py alone.

Layouts: a Conv2D kernel (kh, kw, in, out) is torch's (out, in, kh, kw) via permute(3, 2, 0, 1); a Dense
kernel (in, out) is torch's weight transposed. torchport's models flatten channels-last like Keras, so the
first Dense kernel needs no row permutation.
"""
from __future__ import annotations

import io
import json
import re
import zipfile

import numpy as np
import torch
import torch.nn as nn

from .errors import DataError
from .outputs import write_atomic


def weighted_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(Keras name, layer) for each Conv2d / Linear, in order. Keras names come from the model's own
    attribute names when it carries Keras names, else Keras' automatic ones (dense, dense_1, ...)."""
    keras_named = hasattr(model, "keras_layer_types")
    counters: dict[str, int] = {}
    out = []
    for name, mod in model.named_modules():
        if isinstance(mod, (nn.Conv2d, nn.Linear)):
            base = "conv2d" if isinstance(mod, nn.Conv2d) else "dense"
            k = counters.get(base, 0)
            counters[base] = k + 1
            out.append((name if keras_named else (base if k == 0 else f"{base}_{k}"), mod))
    return out


def keras_layout(array: np.ndarray) -> np.ndarray:
    """A torch weight (or its gradient) in Keras' layout: conv (out, in, kh, kw) -> (kh, kw, in, out),
    dense (out, in) -> (in, out), bias unchanged."""
    return np.ascontiguousarray(array.transpose(2, 3, 1, 0) if array.ndim == 4 else array.T)


def to_keras_layout(layer: nn.Module) -> list[np.ndarray]:
    return [keras_layout(layer.weight.detach().cpu().numpy()), layer.bias.detach().cpu().numpy().copy()]


def expected_keras_shapes(layer: nn.Module) -> list[tuple[int, ...]]:
    return [tuple(a.shape) for a in to_keras_layout(layer)]


def _assign(layer: nn.Module, kernel: np.ndarray, bias: np.ndarray, where: str) -> None:
    want = expected_keras_shapes(layer)
    if [tuple(kernel.shape), tuple(bias.shape)] != want:
        raise DataError(f"{where}: shapes {tuple(kernel.shape)}, {tuple(bias.shape)} do not match the model's "
                        f"{want[0]}, {want[1]}")
    k = torch.from_numpy(np.asarray(kernel))
    k = k.permute(3, 2, 0, 1) if isinstance(layer, nn.Conv2d) else k.T
    with torch.no_grad():
        layer.weight.copy_(k)
        layer.bias.copy_(torch.from_numpy(np.asarray(bias)))


def _check_count(n_file: int, layers, where: str) -> None:
    if n_file != len(layers):
        raise DataError(f"{where}: has {n_file} layers with weights, the model has {len(layers)} "
                        f"({', '.join(n for n, _ in layers)})")


def keras_to_torch(keras_model, torch_model: nn.Module) -> nn.Module:
    """Copy a live Keras model's weights into the torch port (layers matched in order)."""
    klayers = [layer for layer in keras_model.layers if layer.get_weights()]
    tlayers = weighted_layers(torch_model)
    _check_count(len(klayers), tlayers, "Keras model")
    for kl, (name, tl) in zip(klayers, tlayers, strict=True):
        _assign(tl, *kl.get_weights(), where=f"Keras layer {kl.name} -> {name}")
    return torch_model


def torch_to_keras(torch_model: nn.Module, keras_model):
    """Copy the torch port's weights into a live Keras model (layers matched in order)."""
    klayers = [layer for layer in keras_model.layers if layer.get_weights()]
    tlayers = weighted_layers(torch_model)
    _check_count(len(klayers), tlayers, "Keras model")
    for kl, (name, tl) in zip(klayers, tlayers, strict=True):
        want = [tuple(w.shape) for w in kl.get_weights()]
        if want != expected_keras_shapes(tl):
            raise DataError(f"{name} -> Keras layer {kl.name}: shapes {expected_keras_shapes(tl)} do not match {want}")
        kl.set_weights(to_keras_layout(tl))
    return keras_model


# ---- files ------------------------------------------------------------------------------------------------

def _natural(name: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def _read_h5_layers(h5, order: list[str] | None) -> list[tuple[str, list[np.ndarray]]]:
    """(layer name, [kernel, bias]) for each layer with weights, in `order` or natural name order."""
    if "layers" not in h5:
        raise DataError("not a Keras 3 weights file (no 'layers' group)")
    group = h5["layers"]
    names = order if order is not None else sorted(group.keys(), key=_natural)
    out = []
    for name in names:
        if name not in group or "vars" not in group[name]:
            continue
        vars_ = group[name]["vars"]
        arrays = [np.asarray(vars_[k]) for k in sorted(vars_.keys(), key=int)]
        if arrays:
            out.append((name, arrays))
    return out


def _match_by_shape(file_layers, tlayers, where: str):
    """Pair each torch layer, in order, with the next unused file layer of the expected shapes.

    A `.weights.h5` file does not record layer order, and Keras names depend on what else the session built
    (dense_7, ...), so order by name is only a tie-breaker; shapes decide.
    """
    _check_count(len(file_layers), tlayers, where)
    unused = list(file_layers)
    pairs = []
    for name, tl in tlayers:
        want = expected_keras_shapes(tl)
        hit = next((fl for fl in unused if [tuple(a.shape) for a in fl[1]] == want), None)
        if hit is None:
            have = ", ".join(f"{n} {[tuple(a.shape) for a in arrs]}" for n, arrs in unused)
            raise DataError(f"{where}: no layer matches the model's {name} (kernel {want[0]}, bias {want[1]}); "
                            f"unmatched in file: {have}")
        unused.remove(hit)
        pairs.append((hit, tl))
    return pairs


def load_keras_weights(torch_model: nn.Module, path: str) -> nn.Module:
    """Load a Keras 3 `.weights.h5` or `.keras` file into the torch port, without TensorFlow."""
    import h5py

    tlayers = weighted_layers(torch_model)
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                config = json.loads(z.read("config.json"))
                blob = z.read("model.weights.h5")
            layer_cfgs = config.get("config", {}).get("layers", [])
            order = [c.get("config", {}).get("name") for c in layer_cfgs if c.get("class_name") != "InputLayer"]
            with h5py.File(io.BytesIO(blob), "r") as h5:
                file_layers = _read_h5_layers(h5, order)
            _check_count(len(file_layers), tlayers, path)
            for (fname, arrays), (name, tl) in zip(file_layers, tlayers, strict=True):
                if len(arrays) != 2:
                    raise DataError(f"{path}: layer {fname} holds {len(arrays)} arrays, expected kernel and bias")
                _assign(tl, *arrays, where=f"{path}: layer {fname} -> {name}")
        else:
            with h5py.File(path, "r") as h5:
                file_layers = _read_h5_layers(h5, None)
            for (fname, arrays), tl in _match_by_shape(file_layers, tlayers, path):
                _assign(tl, *arrays, where=f"{path}: layer {fname}")
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as e:
        raise DataError(f"{path}: not a readable Keras weights file ({e})") from None
    return torch_model


def save_keras_weights(torch_model: nn.Module, path: str) -> None:
    """Write the torch port's weights as a Keras 3 `.weights.h5` file (Keras' layer names and layout)."""
    import h5py


    def write(f):
        with h5py.File(f, "w") as h5:
            layers = h5.create_group("layers")
            for name, layer in weighted_layers(torch_model):
                vars_ = layers.create_group(name).create_group("vars")
                vars_.attrs["name"] = name
                for i, arr in enumerate(to_keras_layout(layer)):
                    vars_.create_dataset(str(i), data=arr)
            h5.create_group("vars").attrs["name"] = "sequential"

    write_atomic(path, write)
