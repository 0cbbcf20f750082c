"""Keras activations torch has no single call for, and the logits Keras' TensorFlow backend keeps.

`softmax` and `sigmoid` return probabilities carrying `_keras_logits`, the tensor they were computed from,
exactly as `keras.activations.softmax/sigmoid` do on TensorFlow: a cross-entropy loss on such an output
then works from the logits (numerically stable), which is what TensorFlow's Keras trains with.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .casts import f32 as _f32


def softmax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    out = torch.softmax(x, dim=dim)
    out._keras_logits = x
    return out


def sigmoid(x: torch.Tensor) -> torch.Tensor:
    out = torch.sigmoid(x)
    out._keras_logits = x
    return out


def relu(x: torch.Tensor, negative_slope: float = 0.0, max_value: float | None = None,
         threshold: float = 0.0) -> torch.Tensor:
    """Keras' relu (the ReLU layer's too): x above `threshold`, else `negative_slope * (x - threshold)`,
    clipped at `max_value`; written as Keras writes it, so the clip applies before the negative part and
    each constant is float32 exactly where Keras' TensorFlow backend makes it so (no-ops in float32)."""
    if negative_slope != 0.0:
        if max_value is None and threshold == 0:
            return F.leaky_relu(x, _f32(negative_slope))  # a float32 op attribute in TensorFlow
        negative_part = F.relu(-x + threshold) if threshold != 0 else F.relu(-x)  # Python arithmetic: exact
    clip_max = max_value is not None
    max_value = None if max_value is None else _f32(max_value)  # ops.cast of a Python float: via float32
    if threshold != 0:
        x = torch.where(x > _f32(threshold), x, torch.zeros_like(x))
    elif max_value == 6:
        x = F.relu6(x)
        clip_max = False
    else:
        x = F.relu(x)
    if clip_max:
        x = x.clamp(0.0, max_value)
    if negative_slope != 0.0:
        x = x - negative_slope * negative_part
    return x
