"""Converters of the convolution layers: Conv1D, Conv2D, Conv2DTranspose, DepthwiseConv2D, SeparableConv2D.

TensorFlow's "same" padding is kept exact: torch's own `padding="same"` at stride 1 (the odd pixel goes at
the end in both), `kc.pad_same` before a strided call.
"""
from __future__ import annotations

import math

from ..convert import Out, Weight, check_params
from ..registry import converter
from .spatial import Spatial, out_len, tuple_src


class _Conv(Spatial):
    transpose = False

    def setup(self):
        self.read_format()
        n = self.rank
        self.filters = self.int_opt("filters")
        self.kernel = self.tuple_opt("kernel_size", n)
        self.strides = self.tuple_opt("strides", n, 1)
        self.dilation = self.tuple_opt("dilation_rate", n, 1)
        self.groups = self.int_opt("groups", 1)
        self.use_bias = bool(self.opt("use_bias", True))
        allowed = ("valid", "same", "causal") if (n == 1 and not self.transpose) else ("valid", "same")
        self.padding = self.choice("padding", allowed, "valid")
        if self.channels_in is None:
            self.fail("the number of input channels is unknown (None)")
        if self.channels_in % self.groups or self.filters % self.groups:
            self.bad(f"groups={self.groups} does not divide the channels ({self.channels_in} in, {self.filters} out)")
        if self.opt("lora_rank"):
            self.fail("lora_rank is not supported")
        check_params(math.prod(self.kernel) * self.channels_in * self.filters, f"layer '{self.name}'")

    def outputs(self):
        spatial = tuple(out_len(n, k, s, d, self.padding)
                        for n, k, s, d in zip(self.spatial, self.kernel, self.strides, self.dilation, strict=True))
        if any(v == 0 for v in spatial):
            self.bad(f"the input {self.spatial} is smaller than the kernel {self.kernel}: the output would be empty")
        return [Out(self.shape_out(spatial, self.filters), self.layout_out())]

    def weights(self):
        kernel = (*self.kernel, self.channels_in // self.groups, self.filters)
        return [Weight("kernel", kernel)] + ([Weight("bias", (self.filters,))] if self.use_bias else [])

    def torch_padding(self) -> str:
        if self.padding == "same" and all(s == 1 for s in self.strides):
            return ', padding="same"'  # stride 1: torch's "same" puts the odd pixel at the end, as TensorFlow
        return ""

    def module(self):
        cls = f"nn.Conv{self.rank}d"
        args = [str(self.channels_in), str(self.filters), f"kernel_size={tuple_src(self.kernel)}"]
        if any(s != 1 for s in self.strides):
            args.append(f"stride={tuple_src(self.strides)}")
        src = f"{cls}({', '.join(args)}{self.torch_padding()}"
        if any(d != 1 for d in self.dilation):
            src += f", dilation={tuple_src(self.dilation)}"
        if self.groups != 1:
            src += f", groups={self.groups}"
        return src + ("" if self.use_bias else ", bias=False") + ")"

    def padded(self, x: str) -> str:
        """Explicit padding torch's layer cannot do itself: strided "same" and "causal"."""
        if self.padding == "causal":
            self.ctx.uses.add("F")
            return f"F.pad({x}, ({(self.kernel[0] - 1) * self.dilation[0]}, 0))"
        if self.padding == "same" and any(s != 1 for s in self.strides):
            self.ctx.uses.add("kc")
            d = "" if all(v == 1 for v in self.dilation) else f", {tuple_src(self.dilation)}"
            return f"kc.pad_same({x}, {tuple_src(self.kernel)}, {tuple_src(self.strides)}{d})"
        return x

    def forward(self, ins, outs):
        call = self.channels_back(f"self.{self.attr}({self.padded(self.channels_first_in(ins[0]))})")
        out = self.outputs()[0]
        line = f"{outs[0]} = {self.act(self.opt('activation'), call, out.layout, len(out.shape) + 1)}"
        if self.padding == "same" and any(s != 1 for s in self.strides):
            line += "  # TensorFlow's \"same\": the odd pixel of padding at the end"
        return [line]

    def to_torch(self, arrays):
        k = arrays[0]
        out = {"weight": k.transpose(3, 2, 0, 1) if self.rank == 2 else k.transpose(2, 1, 0)}
        if self.use_bias:
            out["bias"] = arrays[1]
        return out

    def to_keras(self, state):
        w = state["weight"]
        return [w.transpose(2, 3, 1, 0) if self.rank == 2 else w.transpose(2, 1, 0)] + \
            ([state["bias"]] if self.use_bias else [])


@converter("Conv2D", "Convolution2D")
class Conv2D(_Conv):
    rank = 2


@converter("Conv1D", "Convolution1D")
class Conv1D(_Conv):
    rank = 1


@converter("Conv2DTranspose", "Convolution2DTranspose")
class Conv2DTranspose(_Conv):
    """Keras' kernel is (kh, kw, out, in); torch's ConvTranspose2d weight (in, out, kh, kw). TensorFlow
    computes the output size first (Keras' formula) and takes that window of the full transposed
    convolution, starting at half the excess: torch's `padding` crops equally on both sides, its
    `output_padding` extends at the end, and an odd excess leaves one row/column to slice off."""

    rank = 2
    transpose = True

    def setup(self):
        super().setup()
        if self.groups != 1:
            self.fail("groups is not supported")
        op = self.opt("output_padding")
        self.output_padding = None if op is None else self.tuple_opt("output_padding", 2, minimum=0)
        self.plan = []
        for i, n in enumerate(self.spatial):
            if n is None:
                self.fail("an unknown (None) input size is not supported")
            k, s, d = self.kernel[i], self.strides[i], self.dilation[i]
            k_eff = (k - 1) * d + 1
            p = None if self.output_padding is None else self.output_padding[i]
            if self.padding == "valid":
                out = (n - 1) * s + k_eff + (max(k_eff, s) - k_eff if p is None else p)
            else:
                out = n * s if p is None else (n - 1) * s + k_eff % 2 + p
            full = (n - 1) * s + k_eff
            before = max(full - out, 0) // 2 if self.padding == "same" else 0
            extend = out - (full - 2 * before)
            if extend >= max(s, d):
                self.fail(f"output_padding={p} cannot be expressed with torch's ConvTranspose2d")
            self.plan.append((out, before, max(extend, 0), extend < 0))

    def outputs(self):
        return [Out(self.shape_out(tuple(p[0] for p in self.plan), self.filters), self.layout_out())]

    def weights(self):
        return [Weight("kernel", (*self.kernel, self.filters, self.channels_in))] + \
            ([Weight("bias", (self.filters,))] if self.use_bias else [])

    def module(self):
        args = [str(self.channels_in), str(self.filters), f"kernel_size={tuple_src(self.kernel)}"]
        if any(s != 1 for s in self.strides):
            args.append(f"stride={tuple_src(self.strides)}")
        if any(p[1] for p in self.plan):
            args.append(f"padding={tuple_src(tuple(p[1] for p in self.plan))}")
        if any(p[2] for p in self.plan):
            args.append(f"output_padding={tuple_src(tuple(p[2] for p in self.plan))}")
        if any(d != 1 for d in self.dilation):
            args.append(f"dilation={tuple_src(self.dilation)}")
        if not self.use_bias:
            args.append("bias=False")
        return f"nn.ConvTranspose2d({', '.join(args)})"

    def forward(self, ins, outs):
        call = f"self.{self.attr}({ins[0]})"
        crop = any(p[3] for p in self.plan)
        if crop:
            h, w = (p[0] for p in self.plan)
            call += f"[:, :, :{h}, :{w}]"
        out = self.outputs()[0]
        line = f"{outs[0]} = {self.act(self.opt('activation'), call, out.layout, 4)}"
        return [line + ("  # TensorFlow's \"same\": the odd row/column is cropped at the end" if crop else "")]

    def to_torch(self, arrays):
        out = {"weight": arrays[0].transpose(3, 2, 0, 1)}
        if self.use_bias:
            out["bias"] = arrays[1]
        return out

    def to_keras(self, state):
        return [state["weight"].transpose(2, 3, 1, 0)] + ([state["bias"]] if self.use_bias else [])


@converter("DepthwiseConv2D")
class DepthwiseConv2D(_Conv):
    """Keras' depthwise kernel (kh, kw, in, m): output channel c * m + j filters input channel c, which is
    torch's grouped convolution (groups = in) with weight (in * m, 1, kh, kw)."""

    rank = 2

    def setup(self):
        self.cfg = {**self.cfg, "filters": 1}
        self.mult = self.int_opt("depth_multiplier", 1)
        super().setup()
        self.filters = self.channels_in * self.mult
        self.groups = self.channels_in

    def weights(self):
        return [Weight("depthwise_kernel", (*self.kernel, self.channels_in, self.mult))] + \
            ([Weight("bias", (self.filters,))] if self.use_bias else [])

    def to_torch(self, arrays):
        kh, kw, c, m = arrays[0].shape
        out = {"weight": arrays[0].reshape(kh, kw, c * m).transpose(2, 0, 1)[:, None]}
        if self.use_bias:
            out["bias"] = arrays[1]
        return out

    def to_keras(self, state):
        w = state["weight"]
        kh, kw = w.shape[2:]
        return [w[:, 0].transpose(1, 2, 0).reshape(kh, kw, self.channels_in, self.mult)] + \
            ([state["bias"]] if self.use_bias else [])


@converter("SeparableConv2D", "SeparableConvolution2D")
class SeparableConv2D(_Conv):
    """A depthwise convolution (strides, padding, dilation) then a 1x1 pointwise one with the bias."""

    rank = 2

    def setup(self):
        super().setup()
        self.mult = self.int_opt("depth_multiplier", 1)
        if self.groups != 1:
            self.fail("groups is not supported")

    def weights(self):
        mid = self.channels_in * self.mult
        return [Weight("depthwise_kernel", (*self.kernel, self.channels_in, self.mult)),
                Weight("pointwise_kernel", (1, 1, mid, self.filters))] + \
            ([Weight("bias", (self.filters,))] if self.use_bias else [])

    def module(self):
        mid = self.channels_in * self.mult
        depthwise = [str(self.channels_in), str(mid), f"kernel_size={tuple_src(self.kernel)}"]
        if any(s != 1 for s in self.strides):
            depthwise.append(f"stride={tuple_src(self.strides)}")
        src = f"nn.Conv2d({', '.join(depthwise)}{self.torch_padding()}"
        if any(d != 1 for d in self.dilation):
            src += f", dilation={tuple_src(self.dilation)}"
        src += f", groups={self.channels_in}, bias=False)"
        pointwise = f"nn.Conv2d({mid}, {self.filters}, kernel_size=(1, 1){'' if self.use_bias else ', bias=False'})"
        return f"nn.Sequential({src}, {pointwise})"

    def to_torch(self, arrays):
        kh, kw, c, m = arrays[0].shape
        out = {"0.weight": arrays[0].reshape(kh, kw, c * m).transpose(2, 0, 1)[:, None],
               "1.weight": arrays[1].transpose(3, 2, 0, 1)}
        if self.use_bias:
            out["1.bias"] = arrays[2]
        return out

    def to_keras(self, state):
        w = state["0.weight"]
        kh, kw = w.shape[2:]
        return [w[:, 0].transpose(1, 2, 0).reshape(kh, kw, self.channels_in, self.mult),
                state["1.weight"].transpose(2, 3, 1, 0)] + ([state["1.bias"]] if self.use_bias else [])
