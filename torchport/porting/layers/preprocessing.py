"""Converters of the preprocessing layers a model holds: Rescaling."""
from __future__ import annotations

from ..convert import Converter
from ..registry import converter


@converter("Rescaling")
class Rescaling(Converter):
    passes_mask = True

    def setup(self):
        for key in ("scale", "offset"):
            v = self.opt(key, 1.0 if key == "scale" else 0.0)
            if isinstance(v, (list, dict)):
                self.fail(f"a per-channel {key} is not supported (a single number is)")
        # Keras casts both through a float32 tensor first: a float64 model multiplies by float32(1/255)
        self.scale = self.ctx.keras_float(self.float_opt("scale", 1.0))
        self.offset = self.ctx.keras_float(self.float_opt("offset", 0.0))

    def forward(self, ins, outs):
        expr = f"{ins[0]} * {self.scale!r}"
        return [f"{outs[0]} = {expr} + {self.offset!r}" if self.offset else f"{outs[0]} = {expr}"]
