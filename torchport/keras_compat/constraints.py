"""Keras' weight constraints in torch, applied after each update as Keras' optimizer applies them
(`variable.assign(constraint(variable))`). Each takes the weight in Keras' own layout (`axis` is Keras' axis:
0 for a Dense kernel's input dimension)."""
from __future__ import annotations

import torch

EPSILON = 1e-7  # keras.config.epsilon()


def _norms(w: torch.Tensor, axis) -> torch.Tensor:
    axis = tuple(axis) if isinstance(axis, (list, tuple)) else (axis,)
    return w.square().sum(dim=axis, keepdim=True).sqrt()


class MaxNorm:
    def __init__(self, max_value: float = 2.0, axis=0):
        self.max_value, self.axis = float(max_value), axis

    def __call__(self, w):
        norms = _norms(w, self.axis)
        return w * (norms.clamp(0, self.max_value) / (EPSILON + norms))


class NonNeg:
    def __call__(self, w):
        return w.clamp_min(0)


class UnitNorm:
    def __init__(self, axis=0):
        self.axis = axis

    def __call__(self, w):
        return w / (EPSILON + _norms(w, self.axis))


class MinMaxNorm:
    def __init__(self, min_value: float = 0.0, max_value: float = 1.0, rate: float = 1.0, axis=0):
        self.min_value, self.max_value, self.rate, self.axis = float(min_value), float(max_value), float(rate), axis

    def __call__(self, w):
        norms = _norms(w, self.axis)
        desired = self.rate * norms.clamp(self.min_value, self.max_value) + (1 - self.rate) * norms
        return w * (desired / (EPSILON + norms))


CLASSES = {"MaxNorm": MaxNorm, "NonNeg": NonNeg, "UnitNorm": UnitNorm, "MinMaxNorm": MinMaxNorm}
NAMES = {"max_norm": "MaxNorm", "non_neg": "NonNeg", "unit_norm": "UnitNorm", "min_max_norm": "MinMaxNorm",
         "maxnorm": "MaxNorm", "nonneg": "NonNeg", "unitnorm": "UnitNorm", "minmaxnorm": "MinMaxNorm"}


def from_config(entry):
    """A constraint from its Keras config entry; ValueError for one Keras has not, or an unknown option."""
    if isinstance(entry, str):
        entry = {"class_name": NAMES.get(entry.lower(), entry), "config": {}}
    if not isinstance(entry, dict) or entry.get("class_name") not in CLASSES:
        raise ValueError(f"constraint {entry.get('class_name') if isinstance(entry, dict) else entry!r}")
    conf = {k: v for k, v in (entry.get("config") or {}).items() if k != "name"}
    try:
        return CLASSES[entry["class_name"]](**conf)
    except TypeError:
        raise ValueError(f"constraint {entry['class_name']} with options {sorted(conf)}") from None
