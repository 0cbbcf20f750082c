"""Converters of the convolution, pooling, padding and resampling layers.

Channels-last images are held NCHW (torch's convolutions want it); 1-D layers keep Keras' (N, T, C) and
transpose around torch's (N, C, T) call. TensorFlow's "same" padding is kept exact: torch's own
`padding="same"` at stride 1 (the odd pixel goes at the end in both), `kc.pad_same` before a strided call.
"""
from __future__ import annotations

import math

from .convert import KERAS, NCHW, Converter, Out, Weight, check_params, converter


def out_len(n, k, s, d, padding):
    """Keras' output length of a convolution or pooling window along one dimension (None stays None)."""
    if n is None:
        return None
    k_eff = (k - 1) * d + 1
    if padding == "valid":
        return (n - k_eff) // s + 1 if n >= k_eff else 0
    return -(-n // s)  # "same" and "causal"


def _tuple_src(t: tuple) -> str:
    return f"({t[0]},)" if len(t) == 1 else f"({', '.join(map(str, t))})"


class _Spatial(Converter):
    """What convolutions and poolings share: rank, data_format, the spatial dimensions."""

    rank = 2

    def read_format(self):
        fmt = self.opt("data_format", "channels_last")
        if fmt not in ("channels_last", "channels_first", None):
            self.bad(f"data_format = {fmt!r}")
        self.cl = fmt != "channels_first"
        shape = self.inputs[0].shape
        if len(shape) != self.rank + 1:
            self.fail(f"expects a rank-{self.rank + 2} input (batch included), got rank {len(shape) + 1}")
        self.spatial = shape[:-1] if self.cl else shape[1:]
        self.channels_in = shape[-1] if self.cl else shape[0]

    def wanted_layout(self, i, t):
        return NCHW if (self.rank == 2 and self.cl) else KERAS

    def shape_out(self, spatial, channels):
        return (*spatial, channels) if self.cl else (channels, *spatial)

    def layout_out(self):
        return NCHW if (self.rank == 2 and self.cl) else KERAS

    def channels_first_in(self, x: str) -> str:
        """The input as torch's channels-first call wants it."""
        return f"{x}.transpose(1, 2)" if (self.rank == 1 and self.cl) else x

    def channels_back(self, expr: str) -> str:
        return f"{expr}.transpose(1, 2)" if (self.rank == 1 and self.cl) else expr


class _Conv(_Spatial):
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
        args = [str(self.channels_in), str(self.filters), f"kernel_size={_tuple_src(self.kernel)}"]
        if any(s != 1 for s in self.strides):
            args.append(f"stride={_tuple_src(self.strides)}")
        src = f"{cls}({', '.join(args)}{self.torch_padding()}"
        if any(d != 1 for d in self.dilation):
            src += f", dilation={_tuple_src(self.dilation)}"
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
            d = "" if all(v == 1 for v in self.dilation) else f", {_tuple_src(self.dilation)}"
            return f"kc.pad_same({x}, {_tuple_src(self.kernel)}, {_tuple_src(self.strides)}{d})"
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
        args = [str(self.channels_in), str(self.filters), f"kernel_size={_tuple_src(self.kernel)}"]
        if any(s != 1 for s in self.strides):
            args.append(f"stride={_tuple_src(self.strides)}")
        if any(p[1] for p in self.plan):
            args.append(f"padding={_tuple_src(tuple(p[1] for p in self.plan))}")
        if any(p[2] for p in self.plan):
            args.append(f"output_padding={_tuple_src(tuple(p[2] for p in self.plan))}")
        if any(d != 1 for d in self.dilation):
            args.append(f"dilation={_tuple_src(self.dilation)}")
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
        depthwise = [str(self.channels_in), str(mid), f"kernel_size={_tuple_src(self.kernel)}"]
        if any(s != 1 for s in self.strides):
            depthwise.append(f"stride={_tuple_src(self.strides)}")
        src = f"nn.Conv2d({', '.join(depthwise)}{self.torch_padding()}"
        if any(d != 1 for d in self.dilation):
            src += f", dilation={_tuple_src(self.dilation)}"
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


# ---- pooling ------------------------------------------------------------------------------------------------

class _Pool(_Spatial):
    kind = "max"
    passes_mask = False

    def setup(self):
        self.read_format()
        n = self.rank
        self.pool = self.tuple_opt("pool_size", n, 2)
        strides = self.opt("strides")
        self.strides = self.pool if strides is None else self.tuple_opt("strides", n)
        self.padding = self.choice("padding", ("valid", "same"), "valid")

    def outputs(self):
        spatial = tuple(out_len(n, k, s, 1, self.padding)
                        for n, k, s in zip(self.spatial, self.pool, self.strides, strict=True))
        if any(v == 0 for v in spatial):
            self.bad(f"the input {self.spatial} is smaller than the pool {self.pool}")
        return [Out(self.shape_out(spatial, self.channels_in), self.layout_out())]

    def module(self):
        if self.padding == "same":
            return None
        cls = f"nn.{'Max' if self.kind == 'max' else 'Avg'}Pool{self.rank}d"
        stride = "" if self.strides == self.pool else f", stride={_tuple_src(self.strides)}"
        return f"{cls}(kernel_size={_tuple_src(self.pool)}{stride})"

    def forward(self, ins, outs):
        x = self.channels_first_in(ins[0])
        if self.padding == "same":
            self.ctx.uses.add("kc")
            fn = "kc.max_pool_same" if self.kind == "max" else "kc.avg_pool_same"
            note = "  # TensorFlow pads with -inf" if self.kind == "max" else "  # padded cells are not counted"
            call = f"{fn}({x}, {_tuple_src(self.pool)}, {_tuple_src(self.strides)})"
            return [f"{outs[0]} = {self.channels_back(call)}{note}"]
        return [f"{outs[0]} = {self.channels_back(f'self.{self.attr}({x})')}"]


@converter("MaxPooling2D", "MaxPool2D")
class MaxPooling2D(_Pool):
    rank, kind = 2, "max"


@converter("MaxPooling1D", "MaxPool1D")
class MaxPooling1D(_Pool):
    rank, kind = 1, "max"


@converter("AveragePooling2D", "AvgPool2D")
class AveragePooling2D(_Pool):
    rank, kind = 2, "avg"


@converter("AveragePooling1D", "AvgPool1D")
class AveragePooling1D(_Pool):
    rank, kind = 1, "avg"


class _GlobalPool(_Spatial):
    kind = "avg"

    def setup(self):
        self.read_format()
        self.keepdims = bool(self.opt("keepdims", False))
        if self.kind == "avg" and self.rank == 1 and self.inputs[0].mask is not None:
            self.takes_mask = True
            if not self.cl:
                self.fail("a masked input with data_format='channels_first' is not supported")

    def outputs(self):
        shape = self.shape_out((1,) * self.rank, self.channels_in) if self.keepdims else (self.channels_in,)
        return [Out(shape, self.layout_out() if self.keepdims else KERAS)]

    def forward(self, ins, outs):
        x = ins[0]
        dims = (2, 3) if self.rank == 2 else ((1,) if self.cl else (2,))
        keep = ", keepdim=True" if self.keepdims else ""
        dim_src = dims[0] if len(dims) == 1 else _tuple_src(dims)
        if self.takes_mask:
            self.ctx.uses.add("kc")
            lines = [f"{outs[0]} = kc.masked_mean({x}, {self.inputs[0].mask})  # the mean over unmasked steps"]
            return lines + ([f"{outs[0]} = {outs[0]}.unsqueeze(1)"] if self.keepdims else [])
        fn = "mean" if self.kind == "avg" else "amax"
        return [f"{outs[0]} = {x}.{fn}({dim_src}{keep})"]


@converter("GlobalAveragePooling2D", "GlobalAvgPool2D")
class GlobalAveragePooling2D(_GlobalPool):
    rank, kind = 2, "avg"


@converter("GlobalMaxPooling2D", "GlobalMaxPool2D")
class GlobalMaxPooling2D(_GlobalPool):
    rank, kind = 2, "max"


@converter("GlobalAveragePooling1D", "GlobalAvgPool1D")
class GlobalAveragePooling1D(_GlobalPool):
    rank, kind = 1, "avg"


@converter("GlobalMaxPooling1D", "GlobalMaxPool1D")
class GlobalMaxPooling1D(_GlobalPool):
    rank, kind = 1, "max"


# ---- padding, cropping, resampling ----------------------------------------------------------------------------

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
class ZeroPadding2D(_Spatial):
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
class ZeroPadding1D(_Spatial):
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
class Cropping2D(_Spatial):
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
class UpSampling2D(_Spatial):
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
            return f"nn.Upsample(scale_factor={_tuple_src(self.size)}, mode=\"nearest\")"
        return f"nn.Upsample(scale_factor={_tuple_src(self.size)}, mode=\"bilinear\", align_corners=False)"

    def forward(self, ins, outs):
        return [f"{outs[0]} = self.{self.attr}({ins[0]})"]


@converter("UpSampling1D")
class UpSampling1D(_Spatial):
    rank = 1

    def setup(self):
        self.read_format()
        self.size = self.int_opt("size", 2)

    def outputs(self):
        n = self.spatial[0]
        return [Out(self.shape_out((None if n is None else n * self.size,), self.channels_in), KERAS)]

    def forward(self, ins, outs):
        return [f"{outs[0]} = {ins[0]}.repeat_interleave({self.size}, dim=1)"]

