"""Keras' preprocessing layers for torch: Normalization, and the resizing that Resizing, CenterCrop and
RandomCrop share. Images are torch's (N, C, H, W); each function is TensorFlow's, checked against Keras."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

EPSILON = 1e-7  # keras.backend.epsilon(): Normalization divides by max(sqrt(variance), epsilon)


class Normalization(nn.Module):
    """(x - mean) / max(sqrt(variance), 1e-7), or its inverse (`invert=True`), with the mean and variance
    `adapt` computed (Keras' variables) or given in the config (constants): buffers shaped to broadcast
    against the input as torch holds it. `count` is an adapted layer's third variable (its sample count)."""

    def __init__(self, shape, invert: bool = False, adapted: bool = True):
        super().__init__()
        self.invert = invert
        self.register_buffer("mean", torch.zeros(shape))
        self.register_buffer("variance", torch.ones(shape))
        if adapted:
            self.register_buffer("count", torch.zeros(()))

    def forward(self, x):
        std = self.variance.to(x.dtype).sqrt().clamp_min(EPSILON)
        mean = self.mean.to(x.dtype)
        return mean + x * std if self.invert else (x - mean) / std


def crop_box(height: int, width: int, target_h: int, target_w: int) -> tuple[int, int, int, int]:
    """TensorFlow's `crop_to_aspect_ratio`: the centred box of the target's aspect ratio (top, left, h, w)."""
    crop_h = max(min(height, int(float(width * target_h) / target_w)), 1)
    crop_w = max(min(width, int(float(height * target_w) / target_h)), 1)
    return int(float(height - crop_h) / 2), int(float(width - crop_w) / 2), crop_h, crop_w


def resize(x: torch.Tensor, size: tuple[int, int], interpolation: str = "bilinear",
           crop_to_aspect_ratio: bool = False) -> torch.Tensor:
    """`tf.image.resize` (half-pixel centres, no antialiasing) of (N, C, H, W) images: torch's bilinear
    with align_corners=False, and "nearest-exact" for TensorFlow's nearest (floor((i + 0.5) * scale))."""
    if crop_to_aspect_ratio:
        top, left, h, w = crop_box(x.shape[-2], x.shape[-1], *size)
        x = x[..., top:top + h, left:left + w]
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if interpolation == "nearest":
        return F.interpolate(x, size=size, mode="nearest-exact")
    return F.interpolate(x, size=size, mode=interpolation, align_corners=False, antialias=False)


def center_crop(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Keras' CenterCrop: the centred window, or (an image smaller than the window) `smart_resize`: the
    centred box of the window's aspect ratio resized to it, bilinear."""
    h, w = x.shape[-2], x.shape[-1]
    if h >= height and w >= width:
        top, left = (h - height) // 2, (w - width) // 2
        return x[..., top:top + height, left:left + width]
    return resize(x, (height, width), "bilinear", crop_to_aspect_ratio=True)


class Rescaling(nn.Module):
    """x * scale + offset with a per-channel scale or offset (buffers shaped to broadcast over the input)."""

    def __init__(self, shape):
        super().__init__()
        self.register_buffer("scale", torch.ones(shape))
        self.register_buffer("offset", torch.zeros(shape))

    def forward(self, x):
        return x * self.scale.to(x.dtype) + self.offset.to(x.dtype)


class Constants(nn.Module):
    """The constant tensors of an operation a Keras graph records (`ops.matmul(x, ops.ones((16, 3)))`), as
    buffers: they move with the model, and the state holds their values."""

    def __init__(self, **shapes):
        super().__init__()
        for name, shape in shapes.items():
            self.register_buffer(name, torch.zeros(shape))
