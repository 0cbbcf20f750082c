"""Converters of the core layers: Dense, Identity, Embedding (its `!= 0` mask, which Keras 3 records as an
operation, is in operations.py)."""
from __future__ import annotations

from ..convert import KERAS, Converter, Out, Weight
from ..registry import converter


@converter("Dense")
class Dense(Converter):
    passes_mask = True

    def setup(self):
        self.units = self.int_opt("units")
        self.use_bias = bool(self.opt("use_bias", True))
        if self.opt("lora_rank"):
            self.fail("lora_rank is not supported")
        if self.opt("quantization_config") or self.opt("quantization_mode"):
            self.fail("quantization is not supported")
        self.n_in = self.feature_dim()

    def wanted_layout(self, i, t):
        return KERAS  # acts on Keras' last axis

    def outputs(self):
        t = self.inputs[0]
        return [Out((*t.shape[:-1], self.units), KERAS, t.mask is not None)]

    def weights(self):
        return [Weight("kernel", (self.n_in, self.units))] + ([Weight("bias", (self.units,))] if self.use_bias else [])

    def module(self):
        return f"nn.Linear({self.n_in}, {self.units}{'' if self.use_bias else ', bias=False'})"

    def forward(self, ins, outs):
        rank = len(self.inputs[0].shape) + 1
        return [f"{outs[0]} = {self.act(self.opt('activation'), f'self.{self.attr}({ins[0]})', KERAS, rank)}"]

    def to_torch(self, arrays):
        out = {"weight": arrays[0].T}
        if self.use_bias:
            out["bias"] = arrays[1]
        return out

    def to_keras(self, state):
        return [state["weight"].T] + ([state["bias"]] if self.use_bias else [])


@converter("Identity")
class Identity(Converter):
    passes_mask = True

    def forward(self, ins, outs):
        return [] if ins[0] == outs[0] else [f"{outs[0]} = {ins[0]}"]


@converter("Embedding")
class Embedding(Converter):
    def setup(self):
        self.input_dim = self.int_opt("input_dim")
        self.output_dim = self.int_opt("output_dim")
        self.mask_zero = bool(self.opt("mask_zero", False))
        for key in ("lora_rank", "quantization_config", "sparse"):
            if self.opt(key):
                self.fail(f"{key} is not supported")

    def outputs(self):
        return [Out((*self.inputs[0].shape, self.output_dim), KERAS, self.mask_zero)]

    def weights(self):
        return [Weight("embeddings", (self.input_dim, self.output_dim))]

    def module(self):
        return f"nn.Embedding({self.input_dim}, {self.output_dim})"

    def forward(self, ins, outs):
        tokens = ins[0] if self.inputs[0].dtype.startswith(("int", "uint")) else f"{ins[0]}.long()"
        lines = []
        if self.mask_zero:  # before the embedding: in a Sequential model both are `x`
            lines.append(f"{self.out_masks[0]} = {ins[0]} != 0  # mask_zero: token 0 is padding, skipped downstream")
        lines.append(f"{outs[0]} = self.{self.attr}({tokens})")
        return lines

    def to_torch(self, arrays):
        return {"weight": arrays[0]}

    def to_keras(self, state):
        return [state["weight"]]
