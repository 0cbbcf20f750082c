"""Keras' recurrent layers where torch's own are not an exact twin.

torch's nn.LSTM / nn.GRU / nn.RNN compute Keras' LSTM (gates i, f, c, o: torch's order), GRU with
`reset_after=True` (gates reordered z, r, h -> r, z, n) and SimpleRNN (tanh or relu) exactly, and the
generated code uses them directly. These subclasses keep their parameters (same names, same layout) and
add what torch lacks: Keras' mask (a masked step keeps the state and repeats the previous output, or
outputs zeros with `zero_output_for_mask`), GRU with `reset_after=False`, and other activations. Without
a mask and with torch's activations they call torch's fused kernel.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

ACTIVATIONS = {
    "tanh": torch.tanh, "sigmoid": torch.sigmoid, "relu": F.relu, "linear": lambda x: x,
    "hard_sigmoid": F.hardsigmoid,  # Keras 3: relu6(x + 3) / 6
    "elu": F.elu, "selu": F.selu, "softplus": F.softplus, "softsign": F.softsign, "swish": F.silu,
    "silu": F.silu, "gelu": F.gelu,
}


class _KerasRecurrent:
    """The step loop shared by the three layers: one direction at a time, Keras' masking rules."""

    gates = 1

    def _setup(self, activation: str, recurrent_activation: str, zero_output_for_mask: bool):
        self.activation = activation
        self.recurrent_activation = recurrent_activation
        self.zero_output_for_mask = zero_output_for_mask
        self._act = ACTIVATIONS[activation]
        self._rec = ACTIVATIONS[recurrent_activation]

    def _params(self, d: int):
        suffix = "_l0" + ("_reverse" if d else "")
        w_ih, w_hh = getattr(self, "weight_ih" + suffix), getattr(self, "weight_hh" + suffix)
        b_ih = getattr(self, "bias_ih" + suffix) if self.bias else None
        b_hh = getattr(self, "bias_hh" + suffix) if self.bias else None
        return w_ih, w_hh, b_ih, b_hh

    def _direction(self, x, mask, d):
        w_ih, w_hh, b_ih, b_hh = self._params(d)
        if d:  # the reverse direction reads the sequence backwards, as Keras' go_backwards layer does
            x = x.flip(1)
            mask = None if mask is None else mask.flip(1)
        gx = F.linear(x, w_ih, b_ih)  # every step's input projection at once
        n, steps = x.shape[0], x.shape[1]
        h = x.new_zeros(n, self.hidden_size)
        c = x.new_zeros(n, self.hidden_size) if isinstance(self, nn.LSTM) else None
        out_prev = h
        outs = []
        for t in range(steps):
            h_new, c_new = self._cell(gx[:, t], h, c, w_hh, b_hh)
            if mask is None:
                h, c, out = h_new, c_new, h_new
            else:
                keep = mask[:, t, None]
                out = torch.where(keep, h_new, out_prev)
                h = torch.where(keep, h_new, h)
                c = torch.where(keep, c_new, c) if c is not None else None
            outs.append(out)
            out_prev = out
        out = torch.stack(outs, 1)
        if mask is not None and self.zero_output_for_mask:
            out = out * mask[..., None].to(out.dtype)
        return (out.flip(1) if d else out), h, c

    def _keras_forward(self, x, mask):
        if mask is not None:
            mask = mask.bool()
        runs = [self._direction(x, mask, d) for d in range(2 if self.bidirectional else 1)]
        out = torch.cat([r[0] for r in runs], -1)
        h_n = torch.stack([r[1] for r in runs])
        if isinstance(self, nn.LSTM):
            return out, (h_n, torch.stack([r[2] for r in runs]))
        return out, h_n


class LSTM(_KerasRecurrent, nn.LSTM):
    def __init__(self, input_size, hidden_size, bias=True, bidirectional=False, activation="tanh",
                 recurrent_activation="sigmoid", zero_output_for_mask=False, device=None, dtype=None):
        super().__init__(input_size, hidden_size, bias=bias, batch_first=True, bidirectional=bidirectional,
                         device=device, dtype=dtype)
        self._setup(activation, recurrent_activation, zero_output_for_mask)

    def _cell(self, gx, h, c, w_hh, b_hh):
        i, f, g, o = (gx + F.linear(h, w_hh, b_hh)).chunk(4, -1)
        c = self._rec(f) * c + self._rec(i) * self._act(g)
        return self._rec(o) * self._act(c), c

    def forward(self, x, mask=None):
        if mask is None and (self.activation, self.recurrent_activation) == ("tanh", "sigmoid"):
            return super().forward(x)
        return self._keras_forward(x, mask)


class GRU(_KerasRecurrent, nn.GRU):
    """`reset_after=True` (Keras 3's default) is torch's GRU; `reset_after=False` applies the reset gate
    before the recurrent product: n = act(W_in x + b_in + (r * h) W_hn), with no recurrent bias."""

    def __init__(self, input_size, hidden_size, bias=True, bidirectional=False, activation="tanh",
                 recurrent_activation="sigmoid", reset_after=True, zero_output_for_mask=False, device=None,
                 dtype=None):
        super().__init__(input_size, hidden_size, bias=bias, batch_first=True, bidirectional=bidirectional,
                         device=device, dtype=dtype)
        self._setup(activation, recurrent_activation, zero_output_for_mask)
        self.reset_after = reset_after

    def _cell(self, gx, h, c, w_hh, b_hh):
        x_r, x_z, x_n = gx.chunk(3, -1)
        u = self.hidden_size
        if self.reset_after:
            h_r, h_z, h_n = F.linear(h, w_hh, b_hh).chunk(3, -1)
            r, z = self._rec(x_r + h_r), self._rec(x_z + h_z)
            n = self._act(x_n + r * h_n)
        else:
            h_r, h_z = F.linear(h, w_hh[:2 * u]).chunk(2, -1)
            r, z = self._rec(x_r + h_r), self._rec(x_z + h_z)
            n = self._act(x_n + F.linear(r * h, w_hh[2 * u:]))
        return z * h + (1 - z) * n, None

    def forward(self, x, mask=None):
        exact = (self.activation, self.recurrent_activation, self.reset_after) == ("tanh", "sigmoid", True)
        if mask is None and exact:
            return super().forward(x)
        return self._keras_forward(x, mask)


class SimpleRNN(_KerasRecurrent, nn.RNN):
    def __init__(self, input_size, hidden_size, bias=True, bidirectional=False, activation="tanh",
                 zero_output_for_mask=False, device=None, dtype=None):
        torch_act = activation if activation in ("tanh", "relu") else "tanh"
        super().__init__(input_size, hidden_size, nonlinearity=torch_act, bias=bias, batch_first=True,
                         bidirectional=bidirectional, device=device, dtype=dtype)
        self._setup(activation, "sigmoid", zero_output_for_mask)

    def _cell(self, gx, h, c, w_hh, b_hh):
        return self._act(gx + F.linear(h, w_hh, b_hh)), None

    def forward(self, x, mask=None):
        if mask is None and self.activation in ("tanh", "relu"):
            return super().forward(x)
        return self._keras_forward(x, mask)
