"""Converters of the activation layers: Activation, ReLU, LeakyReLU, ELU, Softmax."""
from __future__ import annotations

from ..convert import Converter, torch_dim
from ..registry import converter


@converter("Activation")
class Activation(Converter):
    passes_mask = True

    def setup(self):
        if self.opt("activation") in ("softmax", "log_softmax") and self.inputs[0].mask is not None:
            self.fail("a softmax over masked inputs is not supported")

    def forward(self, ins, outs):
        t = self.inputs[0]
        return [f"{outs[0]} = {self.act(self.opt('activation'), ins[0], t.layout, t.rank)}"]


@converter("ReLU")
class ReLU(Converter):
    passes_mask = True

    def setup(self):
        self.max_value = self.opt("max_value")
        if self.max_value is not None:
            self.max_value = self.float_opt("max_value")
        self.threshold = self.float_opt("threshold", 0.0)
        self.slope = self.float_opt("negative_slope", 0.0)

    def forward(self, ins, outs):
        x = ins[0]
        if (self.slope, self.max_value, self.threshold) == (0.0, None, 0.0):
            self.ctx.uses.add("F")
            return [f"{outs[0]} = F.relu({x})"]
        if (self.max_value, self.threshold) == (None, 0.0):  # TensorFlow's leaky_relu: a float32 slope
            self.ctx.uses.add("F")
            return [f"{outs[0]} = F.leaky_relu({x}, {self.ctx.keras_float(self.slope)!r})"]
        self.ctx.uses.add("kc")
        return [f"{outs[0]} = kc.relu({x}, negative_slope={self.slope!r}, max_value={self.max_value!r}, "
                f"threshold={self.threshold!r})  # Keras' relu: clipped first, then the negative part"]


@converter("LeakyReLU")
class LeakyReLU(Converter):
    passes_mask = True

    def setup(self):
        key = "negative_slope" if "negative_slope" in self.cfg else "alpha"  # Keras 3 / Keras 2
        self.slope = self.ctx.keras_float(self.float_opt(key, 0.3))  # a float32 op attribute in TensorFlow

    def forward(self, ins, outs):
        self.ctx.uses.add("F")
        return [f"{outs[0]} = F.leaky_relu({ins[0]}, {self.slope!r})  # Keras' default slope is 0.3 (torch's 0.01)"]


@converter("ELU")
class ELU(Converter):
    passes_mask = True

    def setup(self):
        self.alpha = self.float_opt("alpha", 1.0)

    def forward(self, ins, outs):
        self.ctx.uses.add("F")
        return [f"{outs[0]} = F.elu({ins[0]}, alpha={self.alpha!r})"]


@converter("Softmax")
class Softmax(Converter):
    def setup(self):
        axis = self.opt("axis", -1)
        t = self.inputs[0]
        axes = axis if isinstance(axis, list) else [axis]
        if not all(isinstance(a, int) and not isinstance(a, bool) and -t.rank <= a < t.rank for a in axes) \
                or len(axes) != 1:
            self.fail(f"axis={axis!r} is not supported (one axis is)")
        self.axis = axes[0]
        if self.axis % t.rank == 0:
            self.fail("a softmax over the batch axis is not supported")
        if t.mask is not None:
            self.fail("a softmax over masked inputs is not supported")

    def forward(self, ins, outs):
        t = self.inputs[0]
        dim = torch_dim(self.axis, t.rank, t.layout)
        if self.is_output and self.axis % t.rank == t.rank - 1:
            self.ctx.uses.update({"kc", "logits"})
            return [f"{outs[0]} = kc.softmax({ins[0]}, dim={dim})  # keeps the logits for the loss, as Keras does"]
        return [f"{outs[0]} = torch.softmax({ins[0]}, dim={dim})"]
