"""Converters of the layer classes Keras ships inside keras.applications: ConvNeXt's LayerScale and
StochasticDepth, InceptionResNetV2's CustomScaleLayer (each found as `keras.src.applications.<model>`)."""
from __future__ import annotations

from ..convert import KERAS, Converter, Weight
from ..registry import converter


@converter("LayerScale")
class LayerScale(Converter):
    """x * gamma, gamma per channel (ConvNeXt: after the block's pointwise Dense, on Keras' layout)."""

    passes_mask = True

    def setup(self):
        self.dim = self.int_opt("projection_dim")
        if self.feature_dim() != self.dim:
            self.bad(f"projection_dim {self.dim} != the input's {self.feature_dim()} channels")

    def wanted_layout(self, i, t):
        return KERAS

    def weights(self):
        return [Weight("gamma", (self.dim,))]

    def module(self):
        self.ctx.uses.add("kc")
        return f"kc.LayerScale({self.dim})"

    def forward(self, ins, outs):
        return [f"{outs[0]} = self.{self.attr}({ins[0]})"]

    def to_torch(self, arrays):
        return {"gamma": arrays[0]}

    def to_keras(self, state):
        return [state["gamma"]]


@converter("StochasticDepth")
class StochasticDepth(Converter):
    """The identity at inference; in training each sample's residual branch dropped with drop_path_rate."""

    passes_mask = True

    def setup(self):
        self.rate = self.float_opt("drop_path_rate")
        if not 0 <= self.rate < 1:
            self.bad(f"drop_path_rate = {self.rate}")

    def module(self):
        self.ctx.uses.add("kc")
        return f"kc.StochasticDepth({self.rate!r})"

    def forward(self, ins, outs):
        return [f"{outs[0]} = self.{self.attr}({ins[0]})"]


@converter("CustomScaleLayer")
class CustomScaleLayer(Converter):
    """InceptionResNetV2's residual: inputs[0] + inputs[1] * scale."""

    n_inputs = (2, 2)

    def setup(self):
        self.scale = self.float_opt("scale")
        if self.inputs[0].shape != self.inputs[1].shape:
            self.bad(f"inputs of shapes {self.inputs[0].shape} and {self.inputs[1].shape}")

    def wanted_layout(self, i, t):
        return self.inputs[0].layout

    def forward(self, ins, outs):
        return [f"{outs[0]} = {ins[0]} + {ins[1]} * {self.scale!r}"]
