"""Converters of the core Keras layers: Dense, activations, Dropout, reshaping, Rescaling, Embedding."""
from __future__ import annotations

import math

from .convert import KERAS, NCHW, Converter, Out, Weight, converter, torch_dim


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


@converter("Dropout")
class Dropout(Converter):
    passes_mask = True

    def setup(self):
        self.rate = self.float_opt("rate")
        if not 0 <= self.rate < 1:
            self.bad(f"rate = {self.rate} is outside [0, 1)")
        if self.opt("noise_shape") is not None:
            self.fail("noise_shape is not supported")

    def module(self):
        self.ctx.uses.add("kc")
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


@converter("NotEqual")
class NotEqual(Converter):
    """Keras 3 records an Embedding's mask as this operation in a Functional graph."""

    def setup(self):
        consts = [a for a in self.call_args if isinstance(a, (int, float)) and not isinstance(a, bool)]
        if len(consts) != 1:
            self.fail("only `tensor != number` is supported")
        self.value = consts[0]

    def outputs(self):
        return [Out(self.inputs[0].shape, self.inputs[0].layout, dtype="bool")]

    def forward(self, ins, outs):
        return [f"{outs[0]} = {ins[0]} != {self.value!r}"]
