"""What convolution, pooling and the spatial reshaping layers share: the input's rank and data_format, the
spatial dimensions, and Keras' output length of a window.

Channels-last images are held NCHW (torch's convolutions want it); 1-D layers keep Keras' (N, T, C) and
transpose around torch's (N, C, T) call.
"""
from __future__ import annotations

from ..convert import KERAS, NCHW, Converter


def out_len(n, k, s, d, padding):
    """Keras' output length of a convolution or pooling window along one dimension (None stays None)."""
    if n is None:
        return None
    k_eff = (k - 1) * d + 1
    if padding == "valid":
        return (n - k_eff) // s + 1 if n >= k_eff else 0
    return -(-n // s)  # "same" and "causal"


def tuple_src(t: tuple) -> str:
    return f"({t[0]},)" if len(t) == 1 else f"({', '.join(map(str, t))})"


class Spatial(Converter):
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
