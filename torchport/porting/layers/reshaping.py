"""Converters of the reshaping layers: Flatten, Reshape, Permute, zero padding, cropping, up-sampling.

Flatten reads a channels-last image in Keras' (h, w, c) order, whatever layout torch holds it in.
"""
from __future__ import annotations

import math

from ..convert import KERAS, NCHW, Converter, Out
from ..registry import converter
from .spatial import Spatial, tuple_src


@converter("Flatten")
class Flatten(Converter):
    def setup(self):
        if self.opt("data_format", "channels_last") not in ("channels_last", None):
            self.fail("data_format='channels_first' is not supported")

    def outputs(self):
        shape = self.inputs[0].shape
        size = None if any(d is None for d in shape) else math.prod(shape)
        return [Out((size,), KERAS)]

    def forward(self, ins, outs):
        t = self.inputs[0]
        if t.layout == NCHW:
            return [f"{outs[0]} = {ins[0]}.permute(0, 2, 3, 1).flatten(1)  # Keras flattens channels-last: (h, w, c)"]
        return [f"{outs[0]} = {ins[0]}.flatten(1)"]


@converter("Reshape")
class Reshape(Converter):
    def setup(self):
        target = self.opt("target_shape")
        if not isinstance(target, (list, tuple)) or not all(
                isinstance(d, int) and not isinstance(d, bool) and (d == -1 or 1 <= d <= 2**31) for d in target) \
                or list(target).count(-1) > 1:
            self.bad(f"target_shape = {target!r} is not a shape")
        shape = self.inputs[0].shape
        known = None if any(d is None for d in shape) else math.prod(shape)
        fixed = math.prod(d for d in target if d != -1)
        if -1 in target:
            if known is not None:
                if known % fixed:
                    self.bad(f"cannot reshape {shape} into {tuple(target)}")
                target = tuple(known // fixed if d == -1 else d for d in target)
            else:
                target = tuple(None if d == -1 else d for d in target)
        elif known is not None and known != fixed:
            self.bad(f"cannot reshape {shape} ({known} values) into {tuple(target)}")
        self.target = tuple(target)

    def wanted_layout(self, i, t):
        return KERAS

    def outputs(self):
        return [Out(self.target, KERAS)]

    def forward(self, ins, outs):
        dims = ", ".join(str(-1 if d is None else d) for d in self.target)
        return [f"{outs[0]} = {ins[0]}.reshape(-1, {dims})" if None not in self.target and len(self.target) else
                f"{outs[0]} = {ins[0]}.reshape({ins[0]}.shape[0], {dims})"]


@converter("Permute")
class Permute(Converter):
    def setup(self):
        dims = self.opt("dims")
        n = len(self.inputs[0].shape)
        if not isinstance(dims, (list, tuple)) or sorted(dims) != list(range(1, n + 1)):
            self.bad(f"dims = {dims!r} is not a permutation of 1..{n}")
        self.dims = tuple(dims)

    def wanted_layout(self, i, t):
        return KERAS

    def outputs(self):
        shape = self.inputs[0].shape
        return [Out(tuple(shape[d - 1] for d in self.dims), KERAS)]

    def forward(self, ins, outs):
        return [f"{outs[0]} = {ins[0]}.permute(0, {', '.join(map(str, self.dims))})"]


def _pairs(conv: Converter, key: str, n: int, default) -> tuple:
    """Keras' padding/cropping argument: an int, n ints (symmetric) or n (before, after) pairs."""
    v = conv.opt(key, default)
    if isinstance(v, int) and not isinstance(v, bool):
        v = [v] * n
    if isinstance(v, (list, tuple)) and len(v) == n:
        out = []
        for p in v:
            p = (p, p) if isinstance(p, int) and not isinstance(p, bool) else p
            if not (isinstance(p, (list, tuple)) and len(p) == 2 and all(
                    isinstance(i, int) and not isinstance(i, bool) and 0 <= i <= 2**20 for i in p)):
                conv.bad(f"{key} = {v!r}")
            out.append(tuple(p))
        return tuple(out)
    conv.bad(f"{key} = {v!r}")


@converter("ZeroPadding2D")
class ZeroPadding2D(Spatial):
    rank = 2

    def setup(self):
        self.read_format()
        self.pads = _pairs(self, "padding", 2, 1)

    def outputs(self):
        spatial = tuple(None if n is None else n + a + b for n, (a, b) in zip(self.spatial, self.pads, strict=True))
        return [Out(self.shape_out(spatial, self.channels_in), self.layout_out())]

    def module(self):
        (t, b), (left, r) = self.pads
        return f"nn.ZeroPad2d(({left}, {r}, {t}, {b}))  # (left, right, top, bottom)"

    def forward(self, ins, outs):
        return [f"{outs[0]} = self.{self.attr}({ins[0]})"]


@converter("ZeroPadding1D")
class ZeroPadding1D(Spatial):
    rank = 1

    def setup(self):
        self.read_format()
        v = self.opt("padding", 1)
        if isinstance(v, int) and not isinstance(v, bool):
            v = (v, v)
        if not (isinstance(v, (list, tuple)) and len(v) == 2
                and all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i <= 2**20 for i in v)):
            self.bad(f"padding = {v!r}")
        self.pad = tuple(v)

    def outputs(self):
        n = self.spatial[0]
        return [Out(self.shape_out((None if n is None else n + sum(self.pad),), self.channels_in), KERAS)]

    def forward(self, ins, outs):
        self.ctx.uses.add("F")
        a, b = self.pad
        pads = f"(0, 0, {a}, {b})" if self.cl else f"({a}, {b})"  # F.pad lists the last dimension first
        return [f"{outs[0]} = F.pad({ins[0]}, {pads})"]


@converter("Cropping2D")
class Cropping2D(Spatial):
    rank = 2

    def setup(self):
        self.read_format()
        self.crops = _pairs(self, "cropping", 2, 0)
        for n, (a, b) in zip(self.spatial, self.crops, strict=True):
            if n is not None and a + b >= n:
                self.bad(f"cropping {self.crops} removes all of {self.spatial}")

    def outputs(self):
        spatial = tuple(None if n is None else n - a - b for n, (a, b) in zip(self.spatial, self.crops, strict=True))
        return [Out(self.shape_out(spatial, self.channels_in), self.layout_out())]

    def forward(self, ins, outs):
        idx = ", ".join(f"{a}:{'' if b == 0 else -b}" for a, b in self.crops)
        return [f"{outs[0]} = {ins[0]}[:, :, {idx}]"]


@converter("UpSampling2D")
class UpSampling2D(Spatial):
    rank = 2

    def setup(self):
        self.read_format()
        self.size = self.tuple_opt("size", 2, 2)
        self.mode = self.choice("interpolation", ("nearest", "bilinear"), "nearest")
        if self.mode == "bilinear":
            self.ctx.caveats.add("TensorFlow's bilinear resize computes in float32")

    def outputs(self):
        spatial = tuple(None if n is None else n * s for n, s in zip(self.spatial, self.size, strict=True))
        return [Out(self.shape_out(spatial, self.channels_in), self.layout_out())]

    def module(self):
        if self.mode == "nearest":
            return f"nn.Upsample(scale_factor={tuple_src(self.size)}, mode=\"nearest\")"
        return f"nn.Upsample(scale_factor={tuple_src(self.size)}, mode=\"bilinear\", align_corners=False)"

    def forward(self, ins, outs):
        return [f"{outs[0]} = self.{self.attr}({ins[0]})"]


@converter("UpSampling1D")
class UpSampling1D(Spatial):
    rank = 1

    def setup(self):
        self.read_format()
        self.size = self.int_opt("size", 2)

    def outputs(self):
        n = self.spatial[0]
        return [Out(self.shape_out((None if n is None else n * self.size,), self.channels_in), KERAS)]

    def forward(self, ins, outs):
        return [f"{outs[0]} = {ins[0]}.repeat_interleave({self.size}, dim=1)"]
