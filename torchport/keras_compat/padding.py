"""TensorFlow's "same" padding, which torch's `padding="same"` cannot express with a stride > 1.

TensorFlow pads a dimension of size n by max((ceil(n / s) - 1) * s + k_eff - n, 0) in total, with the odd
pixel at the end (bottom/right); torch pads symmetrically. For stride 1 the two agree (torch's "same" also
puts the odd pixel at the end), so the generated code keeps torch's own `padding="same"` there.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def same_amounts(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """(before, after) padding of one dimension, as TensorFlow computes "same"."""
    k_eff = (kernel - 1) * dilation + 1
    total = max((math.ceil(size / stride) - 1) * stride + k_eff - size, 0)
    return total // 2, total - total // 2


def pad_same(x: torch.Tensor, kernel_size, strides, dilation=1, value: float = 0.0) -> torch.Tensor:
    """Pad the trailing len(kernel_size) dimensions of `x` (channels-first) as TensorFlow's "same" does."""
    k = tuple(kernel_size)
    s = tuple(strides)
    d = (dilation,) * len(k) if isinstance(dilation, int) else tuple(dilation)
    pads = []
    for size, kk, ss, dd in reversed(list(zip(x.shape[-len(k):], k, s, d, strict=True))):
        pads += same_amounts(size, kk, ss, dd)  # F.pad takes the last dimension first
    return F.pad(x, pads, value=value) if any(pads) else x


def avg_pool_same(x: torch.Tensor, pool_size, strides) -> torch.Tensor:
    """Average pooling with "same" padding where the padded cells are not counted (Keras/TensorFlow):
    the window sum over the zero-padded input divided by the number of real cells in the window."""
    pool = F.avg_pool2d if len(pool_size) == 2 else F.avg_pool1d
    ones = torch.ones_like(x[:1, :1])
    return pool(pad_same(x, pool_size, strides), pool_size, strides) / pool(pad_same(ones, pool_size, strides),
                                                                          pool_size, strides)


def max_pool_same(x: torch.Tensor, pool_size, strides) -> torch.Tensor:
    """Max pooling with "same" padding: TensorFlow pads with -inf, so padded cells never win."""
    pool = F.max_pool2d if len(pool_size) == 2 else F.max_pool1d
    return pool(pad_same(x, pool_size, strides, value=float("-inf")), pool_size, strides)
