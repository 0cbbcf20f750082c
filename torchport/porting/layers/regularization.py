"""Converters of the regularization layers: Dropout and SpatialDropout1D/2D (identity in inference)."""
from __future__ import annotations

from ..convert import KERAS, NCHW, Converter, torch_dim
from ..registry import converter


@converter("Dropout")
class Dropout(Converter):
    passes_mask = True

    def setup(self):
        self.rate = self.float_opt("rate")
        if not 0 <= self.rate < 1:
            self.bad(f"rate = {self.rate} is outside [0, 1)")
        self.noise_shape = self.opt("noise_shape")
        if self.noise_shape is not None:  # EfficientNet's drop-connect: (None, 1, 1, 1), one draw per sample
            t = self.inputs[0]
            ns = list(self.noise_shape)
            if len(ns) != t.rank or not all(d is None or d == 1 or d == s for d, s in zip(ns, (None, *t.shape),
                                                                                            strict=True)):
                self.fail(f"noise_shape={self.noise_shape!r}: only None (the input's size) or 1 per axis is supported")
            self.keep_dims = [i for i, d in enumerate(ns) if d is None or d != 1]  # Keras axes drawn per element

    def module(self):
        self.ctx.uses.add("kc")
        if self.noise_shape is not None:
            t = self.inputs[0]
            dims = sorted(torch_dim(a, t.rank, t.layout) for a in self.keep_dims)
            return f"kc.Dropout({self.rate!r}, noise_dims={tuple(dims)!r})"
        return f"kc.Dropout({self.rate!r})"

    def note(self):
        return "torch's inverted dropout, with a 10x faster CPU mask"

    def forward(self, ins, outs):
        return [f"{outs[0]} = self.{self.attr}({ins[0]})"]


@converter("SpatialDropout1D", "SpatialDropout2D")
class SpatialDropout(Converter):
    passes_mask = True  # Keras' SpatialDropout supports masking: an Embedding's mask reaches the RNN after it

    def setup(self):
        self.rate = self.float_opt("rate")
        if not 0 <= self.rate < 1:
            self.bad(f"rate = {self.rate} is outside [0, 1)")
        self.two_d = self.layer.class_name.endswith("2D")
        if self.two_d and self.opt("data_format", "channels_last") not in ("channels_last", None):
            self.fail("data_format='channels_first' is not supported")
        if len(self.inputs[0].shape) != (3 if self.two_d else 2):
            self.fail(f"expects a rank-{4 if self.two_d else 3} input")

    def wanted_layout(self, i, t):
        return NCHW if self.two_d else KERAS

    def module(self):
        return f"nn.Dropout{'2' if self.two_d else '1'}d({self.rate!r})  # drops whole channels"

    def forward(self, ins, outs):
        if self.two_d:
            return [f"{outs[0]} = self.{self.attr}({ins[0]})"]
        return [f"{outs[0]} = self.{self.attr}({ins[0]}.transpose(1, 2)).transpose(1, 2)  # channels of (N, T, C)"]
