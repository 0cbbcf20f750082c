"""Converters of the attention layers: MultiHeadAttention, Attention, AdditiveAttention."""
from __future__ import annotations

import math

import numpy as np

from ..convert import KERAS, Converter, Out, Weight
from ..registry import converter


class _Attending(Converter):
    takes_mask = True

    def wanted_layout(self, i, t):
        return KERAS

    def call_flag(self, key: str) -> bool:
        v = self.call_kwargs.get(key, False)
        if not isinstance(v, bool):
            self.fail(f"{key}={v!r} given as a tensor is not supported")
        return v

    def mask_args(self, ins, query: int, value: int) -> list[str]:
        parts = []
        if self.inputs[query].mask is not None:
            parts.append(f"query_mask={self.inputs[query].mask}")
        if self.inputs[value].mask is not None:
            parts.append(f"value_mask={self.inputs[value].mask}")
        if self.causal:
            parts.append("use_causal_mask=True")
        if self.scores:
            parts.append("return_attention_scores=True")
        return parts


@converter("MultiHeadAttention")
class MultiHeadAttention(_Attending):
    n_inputs = (2, 4)
    tensor_kwargs = ("key", "value", "attention_mask")

    def setup(self):
        self.heads = self.int_opt("num_heads")
        self.key_dim = self.int_opt("key_dim")
        self.value_dim = self.int_opt("value_dim") if self.opt("value_dim") is not None else self.key_dim
        self.use_bias = bool(self.opt("use_bias", True))
        self.dropout = self.float_opt("dropout", 0.0)
        for key in ("use_gate", "sliding_window", "flash_attention"):
            if self.opt(key):
                self.fail(f"{key} is not supported")
        axes = self.opt("attention_axes")
        if axes not in (None, [1], (1,), 1, [-2]):
            self.fail(f"attention_axes={axes!r}: attention over the sequence axis of (batch, T, features) is supported")
        named = {k: v for k, v in self.call_kwargs.items() if k in self.tensor_kwargs}
        positional = len(self.inputs) - len(named)
        order = ["query", "value", "key"][:positional]
        self.slots = {name: i for i, name in enumerate(order)}
        self.slots.update(named)
        if "value" not in self.slots:
            self.fail("called without a value tensor")
        for name in ("query", "value", "key"):
            if name in self.slots and self.inputs[self.slots[name]].rank != 3:
                self.fail("only (batch, T, features) inputs are supported")
        q = self.inputs[self.slots["query"]]
        self.features = {name: self.feature_dim(self.inputs[self.slots.get(name, self.slots["value"])])
                         for name in ("query", "key", "value")}
        out = self.opt("output_shape")
        if isinstance(out, (list, tuple)):
            if len(out) != 1:
                self.fail(f"output_shape={out!r}: one feature axis is supported")
            out = out[0]
        self.out_dim = self.features["query"] if out is None else out
        if not isinstance(self.out_dim, int):
            self.bad(f"output_shape = {out!r}")
        self.causal = self.call_flag("use_causal_mask")
        self.scores = self.call_flag("return_attention_scores")
        self.q_shape = q.shape

    def outputs(self):
        t = self.inputs[self.slots["query"]]
        out = [Out((*t.shape[:-1], self.out_dim), KERAS)]
        if self.scores:
            tk = self.inputs[self.slots.get("key", self.slots["value"])].shape[0]
            out.append(Out((self.heads, t.shape[0], tk), KERAS))
        return out

    def weights(self):
        w = []
        for slot, n_in, dim in (("query_dense", self.features["query"], self.key_dim),
                                ("key_dense", self.features["key"], self.key_dim),
                                ("value_dense", self.features["value"], self.value_dim)):
            w.append(Weight("kernel", (n_in, self.heads, dim), slot))
            if self.use_bias:
                w.append(Weight("bias", (self.heads, dim), slot))
        w.append(Weight("kernel", (self.heads, self.value_dim, self.out_dim), "output_dense"))
        if self.use_bias:
            w.append(Weight("bias", (self.out_dim,), "output_dense"))
        return w

    def module(self):
        self.ctx.uses.add("kc")
        f = self.features
        return (f"kc.MultiHeadAttention({self.heads}, {self.key_dim}, {self.value_dim}, {f['query']}, {f['key']}, "
                f"{f['value']}, {self.out_dim}" + ("" if self.use_bias else ", use_bias=False")
                + (f", dropout={self.dropout!r}" if self.dropout else "") + self._scale() + ")")

    def _scale(self) -> str:
        exact = 1.0 / math.sqrt(float(self.key_dim))
        scale = self.ctx.keras_float(exact)
        return "" if scale == exact else f", scale={scale!r}"

    def note(self):
        return "Keras' scaling and masking (see keras_compat/attention.py)"

    def forward(self, ins, outs):
        args = [ins[self.slots["query"]], ins[self.slots["value"]]]
        if "key" in self.slots:
            args.append(f"key={ins[self.slots['key']]}")
        if "attention_mask" in self.slots:
            args.append(f"attention_mask={ins[self.slots['attention_mask']]}")
        args += self.mask_args(ins, self.slots["query"], self.slots["value"])
        return [f"{', '.join(outs)} = self.{self.attr}({', '.join(args)})"]

    def _linears(self):
        names = [("query", self.key_dim), ("key", self.key_dim), ("value", self.value_dim)]
        return names

    def to_torch(self, arrays):
        arrays = list(arrays)
        state = {}
        for name, _ in self._linears():
            kernel = arrays.pop(0)
            state[f"{name}.weight"] = kernel.reshape(kernel.shape[0], -1).T
            if self.use_bias:
                state[f"{name}.bias"] = arrays.pop(0).reshape(-1)
        kernel = arrays.pop(0)
        state["output.weight"] = kernel.reshape(-1, kernel.shape[-1]).T
        if self.use_bias:
            state["output.bias"] = arrays.pop(0)
        return state

    def to_keras(self, state):
        out = []
        for name, dim in self._linears():
            w = np.asarray(state[f"{name}.weight"])
            out.append(w.T.reshape(w.shape[1], self.heads, dim))
            if self.use_bias:
                out.append(np.asarray(state[f"{name}.bias"]).reshape(self.heads, dim))
        w = np.asarray(state["output.weight"])
        out.append(w.T.reshape(self.heads, self.value_dim, self.out_dim))
        if self.use_bias:
            out.append(np.asarray(state["output.bias"]))
        return out


@converter("Attention")
class Attention(_Attending):
    n_inputs = (2, 3)

    def setup(self):
        self.use_scale = bool(self.opt("use_scale", False))
        self.mode = self.choice("score_mode", ("dot", "concat"), "dot")
        self.dropout = self.float_opt("dropout", 0.0)
        if self.opt("causal"):
            self.fail("causal is not supported (use_causal_mask in the call is)")
        for t in self.inputs:
            if t.rank != 3:
                self.fail("only (batch, T, features) inputs are supported")
        self.causal = self.call_flag("use_causal_mask")
        self.scores = self.call_flag("return_attention_scores")

    def outputs(self):
        q, v = self.inputs[0], self.inputs[1]
        out = [Out((*q.shape[:-1], v.shape[-1]), KERAS, q.mask is not None)]
        if self.scores:
            out.append(Out((q.shape[0], v.shape[0]), KERAS))
        return out

    def weights(self):
        return ([Weight("scale", ())] if self.use_scale else []) + \
            ([Weight("concat_score_weight", ())] if self.mode == "concat" else [])

    def module(self):
        self.ctx.uses.add("kc")
        args = [f"use_scale={self.use_scale}"] + ([f"score_mode={self.mode!r}"] if self.mode != "dot" else []) + \
            ([f"dropout={self.dropout!r}"] if self.dropout else [])
        return f"kc.Attention({', '.join(args)})"

    def forward(self, ins, outs):
        args = [ins[0], ins[1]] + ([f"key={ins[2]}"] if len(ins) > 2 else []) + self.mask_args(ins, 0, 1)
        return [f"{', '.join(outs)} = self.{self.attr}({', '.join(args)})"]

    def to_torch(self, arrays):
        arrays = list(arrays)
        state = {}
        if self.use_scale:
            state["scale"] = np.asarray(arrays.pop(0))
        if self.mode == "concat":
            state["concat_score_weight"] = np.asarray(arrays.pop(0))
        return state

    def to_keras(self, state):
        return ([state["scale"]] if self.use_scale else []) + \
            ([state["concat_score_weight"]] if self.mode == "concat" else [])


@converter("AdditiveAttention")
class AdditiveAttention(Attention):
    def setup(self):
        super().setup()
        self.use_scale = bool(self.opt("use_scale", True))
        self.mode = "dot"
        self.dim = self.feature_dim(self.inputs[0])

    def weights(self):
        return [Weight("scale", (self.dim,))] if self.use_scale else []

    def module(self):
        self.ctx.uses.add("kc")
        return (f"kc.AdditiveAttention({self.dim}, use_scale={self.use_scale}"
                + (f", dropout={self.dropout!r}" if self.dropout else "") + ")")
