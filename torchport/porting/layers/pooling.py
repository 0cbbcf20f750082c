"""Converters of the pooling layers: max and average pooling, global pooling (1-D and 2-D).

TensorFlow's "same" pooling pads with -inf (max) or does not count the padded cells (average):
`kc.max_pool_same` / `kc.avg_pool_same`. GlobalAveragePooling1D over a masked sequence is the mean over the
unmasked steps, as Keras takes it.
"""
from __future__ import annotations

from ..convert import KERAS, Out
from ..registry import converter
from .spatial import Spatial, out_len, tuple_src


class _Pool(Spatial):
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
        stride = "" if self.strides == self.pool else f", stride={tuple_src(self.strides)}"
        return f"{cls}(kernel_size={tuple_src(self.pool)}{stride})"

    def forward(self, ins, outs):
        x = self.channels_first_in(ins[0])
        if self.padding == "same":
            self.ctx.uses.add("kc")
            fn = "kc.max_pool_same" if self.kind == "max" else "kc.avg_pool_same"
            note = "  # TensorFlow pads with -inf" if self.kind == "max" else "  # padded cells are not counted"
            call = f"{fn}({x}, {tuple_src(self.pool)}, {tuple_src(self.strides)})"
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


class _GlobalPool(Spatial):
    kind = "avg"

    def setup(self):
        self.read_format()
        self.keepdims = bool(self.opt("keepdims", False))
        self.masked = self.takes_mask and self.inputs[0].mask is not None
        if self.masked and not self.cl:
            self.fail("a masked input with data_format='channels_first' is not supported")

    def outputs(self):
        shape = self.shape_out((1,) * self.rank, self.channels_in) if self.keepdims else (self.channels_in,)
        return [Out(shape, self.layout_out() if self.keepdims else KERAS)]

    def forward(self, ins, outs):
        x = ins[0]
        dims = (2, 3) if self.rank == 2 else ((1,) if self.cl else (2,))
        keep = ", keepdim=True" if self.keepdims else ""
        dim_src = dims[0] if len(dims) == 1 else tuple_src(dims)
        if self.masked:
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
    takes_mask = True  # Keras' mean over the unmasked steps


@converter("GlobalMaxPooling1D", "GlobalMaxPool1D")
class GlobalMaxPooling1D(_GlobalPool):
    rank, kind = 1, "max"
