"""Weights between Keras and the hand ports (SimpleCNN, MnistModel): live models both ways, and Keras files
read and written through the porter's own reader and writer (`porting.files`, `porting.writer`), no TensorFlow.

Layouts: a Conv2D kernel (kh, kw, in, out) is torch's (out, in, kh, kw) via permute(3, 2, 0, 1); a Dense
kernel (in, out) is torch's weight transposed. torchport's models flatten channels-last like Keras, so the
first Dense kernel needs no row permutation.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from .errors import DataError, ModelFileError, WeightsOnlyError
from .outputs import write_atomic
from .porting.writer import layers_h5_bytes


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


# ---- files: read and written by the porter's readers and writer (hostile input refused the same way) ---------

def _file_layers(path: str) -> tuple[list[tuple[str, list[np.ndarray]]], bool]:
    """(layer, [kernel, bias]) for each layer of a Keras file that holds weights, and whether that order is
    the model's: a `.keras` or full `.h5` model file is ported (its config gives the order); a bare
    `.weights.h5` holds Keras' storage keys only (`dense`, `dense_1`, ...), whose order need not be the model's."""
    from .porting.files import read_weights_file
    from .porting.plan import plan_file

    try:
        plan = plan_file(path)
    except WeightsOnlyError:
        return read_weights_file(path), False
    return [(name, [a for _, arrays in slots for a in arrays]) for name, slots in plan.keras_arrays().items()], True


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
    """Load a Keras `.keras`, full `.h5` or Keras 3 `.weights.h5` file into the torch port, without TensorFlow."""
    tlayers = weighted_layers(torch_model)
    try:
        file_layers, in_order = _file_layers(path)
    except ModelFileError as e:
        raise DataError(f"not a readable Keras weights file ({e})") from None
    if in_order:
        _check_count(len(file_layers), tlayers, path)
        pairs = list(zip(file_layers, [tl for _, tl in tlayers], strict=True))
    else:
        pairs = _match_by_shape(file_layers, tlayers, path)
    for (fname, arrays), tl in pairs:
        if len(arrays) != 2:
            raise DataError(f"{path}: layer {fname} holds {len(arrays)} arrays, expected kernel and bias")
        _assign(tl, *arrays, where=f"{path}: layer {fname}")
    return torch_model


def save_keras_weights(torch_model: nn.Module, path: str) -> None:
    """Write the torch port's weights as a Keras 3 `.weights.h5` file (Keras' layer names and layout)."""
    layers = weighted_layers(torch_model)
    keys = [(f"layers/{name}", name, "Conv2D" if isinstance(layer, nn.Conv2d) else "Dense") for name, layer in layers]
    blob = layers_h5_bytes(keys, {name: [("", to_keras_layout(layer))] for name, layer in layers}, "sequential")
    write_atomic(path, lambda f: f.write(blob))
