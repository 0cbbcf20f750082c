"""Keras' augmentation layers for torch: RandomFlip, RandomRotation, RandomZoom, RandomTranslation,
RandomContrast, RandomBrightness, RandomCrop. Each is the identity in inference mode (RandomCrop too: Keras
3 crops only in training, though its declared output shape is the crop's) and in training draws its
transform from torch's RNG: the same distribution as Keras' with its parameters (factor ranges, fill modes,
value ranges), but not Keras' draws, so two runs agree with Keras in law, not sample by sample. With a
fixed transform (e.g. `factor=(0.25, 0.25)`) the geometric ones compute exactly what TensorFlow's
ImageProjectiveTransform computes (checked against Keras: 0.0 apart, every fill mode and interpolation).

Images are torch's (N, C, H, W)."""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from .preprocessing import resize


def _range(factor, symmetric: bool = True) -> tuple[float, float]:
    """Keras' factor: a number f is (-f, f) (symmetric) or (f, f); a pair is (low, high)."""
    if isinstance(factor, (list, tuple)):
        return float(min(factor)), float(max(factor))
    return (-abs(float(factor)), abs(float(factor))) if symmetric else (float(factor), float(factor))


def _uniform(n: int, low: float, high: float, like: torch.Tensor) -> torch.Tensor:
    return torch.empty(n, device=like.device, dtype=torch.float32).uniform_(low, high) if high > low else \
        torch.full((n,), low, device=like.device, dtype=torch.float32)


def _map_coordinate(c: torch.Tensor, size: int, mode: str) -> torch.Tensor:
    """TensorFlow's fill-mode mapping of an input coordinate (before interpolation)."""
    if mode == "reflect":  # (d c b a | a b c d | d c b a)
        if size <= 1:
            return torch.zeros_like(c)
        sz2 = 2 * size
        c = torch.where(c < 0, torch.where(c < -sz2, sz2 * torch.trunc(-c / sz2) + c, c), c)
        c = torch.where(c < 0, torch.where(c < -size, c + sz2, -c - 1), c)
        c = torch.where(c > size - 1, c - sz2 * torch.trunc(c / sz2), c)
        c = torch.where(c > size - 1, torch.where(c >= size, sz2 - c - 1, c), c)
        return c.clamp(0, size - 1)
    if mode == "wrap":  # (a b c d | a b c d | a b c d), TensorFlow's arithmetic (it divides by size - 1)
        if size <= 1:
            return torch.zeros_like(c)
        c = torch.where(c < 0, c + size * (torch.trunc(-c / (size - 1)) + 1),  # one branch or the other
                        torch.where(c > size - 1, c - size * torch.trunc(c / (size - 1)), c))
        return c.clamp(0, size - 1)
    if mode == "nearest":  # (a a a a | a b c d | d d d d)
        return c.clamp(0, size - 1)
    return c  # constant: reads outside the image give fill_value


def affine_transform(x: torch.Tensor, matrix: torch.Tensor, interpolation: str = "bilinear",
                     fill_mode: str = "reflect", fill_value: float = 0.0) -> torch.Tensor:
    """Each image through its transform [a0, a1, a2, b0, b1, b2], which maps an output pixel (x, y) to the
    input point (a0 x + a1 y + a2, b0 x + b1 y + b2), pixel centres at integers, as Keras' affine_transform."""
    n, c, h, w = x.shape
    ys, xs = torch.meshgrid(torch.arange(h, device=x.device, dtype=torch.float32),
                            torch.arange(w, device=x.device, dtype=torch.float32), indexing="ij")
    m = matrix.to(torch.float32).view(n, 6, 1, 1)
    in_x = _map_coordinate(m[:, 0] * xs + m[:, 1] * ys + m[:, 2], w, fill_mode)
    in_y = _map_coordinate(m[:, 3] * xs + m[:, 4] * ys + m[:, 5], h, fill_mode)
    flat = x.reshape(n, c, h * w)

    def read(yy, xx):  # the pixels at integer (yy, xx), fill_value outside the image
        inside = (yy >= 0) & (yy <= h - 1) & (xx >= 0) & (xx <= w - 1)
        index = (yy.clamp(0, h - 1) * w + xx.clamp(0, w - 1)).long().view(n, 1, h * w).expand(n, c, h * w)
        values = flat.gather(2, index).view(n, c, h, w)
        return torch.where(inside.unsqueeze(1), values, torch.full_like(values, fill_value))

    if interpolation == "nearest":  # std::round: halves away from zero
        return read(torch.sign(in_y) * torch.floor(in_y.abs() + 0.5), torch.sign(in_x) * torch.floor(in_x.abs() + 0.5))
    y0, x0 = torch.floor(in_y), torch.floor(in_x)
    wy, wx = (in_y - y0).unsqueeze(1).to(x.dtype), (in_x - x0).unsqueeze(1).to(x.dtype)
    top = read(y0, x0) * (1 - wx) + read(y0, x0 + 1) * wx
    bottom = read(y0 + 1, x0) * (1 - wx) + read(y0 + 1, x0 + 1) * wx
    return top * (1 - wy) + bottom * wy


class _Geometric(nn.Module):
    def __init__(self, fill_mode: str = "reflect", interpolation: str = "bilinear", fill_value: float = 0.0):
        super().__init__()
        self.fill_mode, self.interpolation, self.fill_value = fill_mode, interpolation, fill_value

    def forward(self, x):
        if not self.training:
            return x
        return affine_transform(x, self.matrix(x), self.interpolation, self.fill_mode, self.fill_value)


class RandomFlip(nn.Module):
    """Each image flipped with probability 1/2 (per direction for "horizontal_and_vertical")."""

    def __init__(self, mode: str = "horizontal_and_vertical"):
        super().__init__()
        self.mode = mode

    def forward(self, x):
        if not self.training:
            return x
        for direction, dim in (("horizontal", -1), ("vertical", -2)):
            if direction in self.mode:
                flip = (torch.rand(x.shape[0], 1, 1, 1, device=x.device) <= 0.5)
                x = torch.where(flip, x.flip(dim), x)
        return x


class RandomRotation(_Geometric):
    """A rotation by factor * 360 degrees, factor uniform in `factor`'s range, about the image centre."""

    def __init__(self, factor, **kwargs):
        super().__init__(**kwargs)
        self.factor = _range(factor)

    def matrix(self, x):
        n, _, h, w = x.shape
        angle = _uniform(n, self.factor[0] * 360.0, self.factor[1] * 360.0, x) * (math.pi / 180.0)
        cos, sin = torch.cos(angle), torch.sin(angle)
        cx, cy = 0.5 * (w - 1), 0.5 * (h - 1)
        return torch.stack([cos, -sin, cx - cx * cos + cy * sin, sin, cos, cy - cx * sin - cy * cos], 1)


class RandomZoom(_Geometric):
    """A zoom by 1 + z, z uniform in `height_factor`'s range (and `width_factor`'s; None: the same z)."""

    def __init__(self, height_factor, width_factor=None, **kwargs):
        super().__init__(**kwargs)
        self.height, self.width = _range(height_factor), None if width_factor is None else _range(width_factor)

    def matrix(self, x):
        n, _, h, w = x.shape
        zy = _uniform(n, 1.0 + self.height[0], 1.0 + self.height[1], x)
        zx = zy if self.width is None else _uniform(n, 1.0 + self.width[0], 1.0 + self.width[1], x)
        zero = torch.zeros_like(zx)
        return torch.stack([zx, zero, (w - 1.0) / 2.0 * (1.0 - zx), zero, zy, (h - 1.0) / 2.0 * (1.0 - zy)], 1)


class RandomTranslation(_Geometric):
    """A shift by a fraction of the height and width, each uniform in its factor's range."""

    def __init__(self, height_factor, width_factor, **kwargs):
        super().__init__(**kwargs)
        self.height, self.width = _range(height_factor), _range(width_factor)

    def matrix(self, x):
        n, _, h, w = x.shape
        dy = _uniform(n, *self.height, x) * h
        dx = _uniform(n, *self.width, x) * w
        one, zero = torch.ones_like(dx), torch.zeros_like(dx)
        return torch.stack([one, zero, -dx, zero, one, -dy], 1)


class RandomContrast(nn.Module):
    """(x - mean) * f + mean per image and channel, f uniform in [1 - low, 1 + high], clipped to value_range."""

    def __init__(self, factor, value_range=(0, 255)):
        super().__init__()
        self.factor = _range(factor, symmetric=False)
        self.value_range = sorted(value_range)

    def forward(self, x):
        if not self.training:
            return x
        f = _uniform(x.shape[0], 1.0 - self.factor[0], 1.0 + self.factor[1], x).to(x.dtype).view(-1, 1, 1, 1)
        mean = x.mean(-2, keepdim=True).mean(-1, keepdim=True)
        return ((x - mean) * f + mean).clamp(*self.value_range)


class RandomBrightness(nn.Module):
    """x + d * (range width), d uniform in `factor`'s range, per image, clipped to value_range."""

    def __init__(self, factor, value_range=(0, 255)):
        super().__init__()
        self.factor = _range(factor)
        self.value_range = sorted(value_range)

    def forward(self, x):
        if not self.training:
            return x
        span = self.value_range[1] - self.value_range[0]
        delta = (_uniform(x.shape[0], *self.factor, x) * span).to(x.dtype).view(-1, 1, 1, 1)
        return (x + delta).clamp(*self.value_range)


class RandomCrop(nn.Module):
    """Training: one random window of (height, width) for the batch (an image not larger than it: the
    centred box of its aspect ratio, resized). Inference: the input unchanged, as Keras 3 runs it."""

    def __init__(self, height: int, width: int):
        super().__init__()
        self.height, self.width = height, width

    def forward(self, x):
        if not self.training:
            return x
        h, w = x.shape[-2], x.shape[-1]
        if h <= self.height or w <= self.width:
            return resize(x, (self.height, self.width), "bilinear", crop_to_aspect_ratio=True)
        top = int(torch.randint(0, h - self.height + 1, ()))
        left = int(torch.randint(0, w - self.width + 1, ()))
        return x[..., top:top + self.height, left:left + self.width]
