"""Converters of SimpleRNN, LSTM, GRU and Bidirectional.

Keras' LSTM is torch's (gates i, f, c, o = torch's i, f, g, o) with one bias: torch's second bias is kept
at zero and frozen, else SGD would move the effective bias twice as fast. Keras' GRU orders its gates
z, r, h; torch's r, z, n: the converter reorders the blocks, and `reset_after=True` (Keras 3's default) is
exactly torch's GRU (input bias b_ih, recurrent bias b_hh). Where torch's layers are not an exact twin
(a mask from `Embedding(mask_zero=True)`, other activations, `reset_after=False`) the generated code uses
`kc.LSTM` / `kc.GRU` / `kc.SimpleRNN`: the same parameters, Keras' step loop.
"""
from __future__ import annotations

import numpy as np

from ...keras_compat.recurrent import ACTIVATIONS
from ..convert import KERAS, Converter, Out, Weight
from ..registry import converter

_GATES = {"LSTM": 4, "GRU": 3, "SimpleRNN": 1}


def _reorder_gru(a: np.ndarray, u: int, axis: int = -1) -> np.ndarray:
    """Keras' z, r, h blocks -> torch's r, z, n (its own inverse)."""
    z, r, h = np.split(a, [u, 2 * u], axis=axis)
    return np.concatenate([r, z, h], axis=axis)


class _RNNSpec:
    """One recurrent layer's config: its class, units, activations and what it returns."""

    def __init__(self, conv: Converter, cfg: dict, class_name: str):
        if class_name not in _GATES:
            conv.fail(f"wraps a {class_name}; SimpleRNN, LSTM and GRU are supported")
        self.cls = class_name
        self.units = conv.int_opt("units") if cfg is conv.cfg else _int(conv, cfg, "units")
        self.activation = cfg.get("activation", "tanh")
        self.recurrent_activation = cfg.get("recurrent_activation", "sigmoid") if class_name != "SimpleRNN" else None
        self.use_bias = bool(cfg.get("use_bias", True))
        self.return_sequences = bool(cfg.get("return_sequences", False))
        self.return_state = bool(cfg.get("return_state", False))
        self.go_backwards = bool(cfg.get("go_backwards", False))
        self.zero_output_for_mask = bool(cfg.get("zero_output_for_mask", False))
        self.reset_after = bool(cfg.get("reset_after", class_name == "GRU")) if class_name == "GRU" else True
        for key in ("stateful", "time_major"):
            if cfg.get(key):
                conv.fail(f"{key}=True is not supported")
        for key in ("activation", "recurrent_activation"):
            v = getattr(self, key)
            if v is not None and v not in ACTIVATIONS:
                conv.fail(f"{key}={v!r} is not supported")
        if self.activation == "hard_sigmoid" or (self.recurrent_activation == "hard_sigmoid" and conv.ctx.keras2):
            conv.fail("hard_sigmoid from a Keras 2 file is not supported (its formula differs from Keras 3's)")

    @property
    def gates(self) -> int:
        return _GATES[self.cls]

    def torch_exact(self, masked: bool) -> bool:
        """torch's own layer computes this Keras layer exactly."""
        if masked:
            return False
        if self.cls == "SimpleRNN":
            return self.activation in ("tanh", "relu")
        ok = (self.activation, self.recurrent_activation) == ("tanh", "sigmoid")
        return ok and (self.cls != "GRU" or self.reset_after)

    def has_hh_bias(self) -> bool:
        return self.cls == "GRU" and self.reset_after

    def weights(self, n_in: int, slot: str) -> list[Weight]:
        u, g = self.units, self.gates
        w = [Weight("kernel", (n_in, g * u), slot), Weight("recurrent_kernel", (u, g * u), slot)]
        if self.use_bias:
            w.append(Weight("bias", (2, 3 * u) if self.has_hh_bias() else (g * u,), slot))
        return w

    def to_torch(self, arrays, suffix: str) -> dict:
        u = self.units
        k, r = arrays[0], arrays[1]
        if self.cls == "GRU":
            k, r = _reorder_gru(k, u), _reorder_gru(r, u)
        out = {f"weight_ih_l0{suffix}": k.T, f"weight_hh_l0{suffix}": r.T}
        if self.use_bias:
            b = arrays[2]
            if self.has_hh_bias():
                out[f"bias_ih_l0{suffix}"], out[f"bias_hh_l0{suffix}"] = _reorder_gru(b[0], u), _reorder_gru(b[1], u)
            else:
                b = _reorder_gru(b, u) if self.cls == "GRU" else b
                out[f"bias_ih_l0{suffix}"], out[f"bias_hh_l0{suffix}"] = b, np.zeros_like(b)
        return out

    def to_keras(self, state, suffix: str) -> list:
        u = self.units
        k, r = state[f"weight_ih_l0{suffix}"].T, state[f"weight_hh_l0{suffix}"].T
        if self.cls == "GRU":
            k, r = _reorder_gru(k, u), _reorder_gru(r, u)
        out = [k, r]
        if self.use_bias:
            b_ih, b_hh = state[f"bias_ih_l0{suffix}"], state[f"bias_hh_l0{suffix}"]
            if self.has_hh_bias():
                out.append(np.stack([_reorder_gru(b_ih, u), _reorder_gru(b_hh, u)]))
            else:
                b = b_ih + b_hh  # the frozen second bias is zero
                out.append(_reorder_gru(b, u) if self.cls == "GRU" else b)
        return out

    def module(self, ctx, n_in: int, masked: bool, bidirectional: bool, zero_output: bool) -> str:
        args = [str(n_in), str(self.units)]
        if not self.use_bias:
            args.append("bias=False")
        if bidirectional:
            args.append("bidirectional=True")
        if self.torch_exact(masked):
            if self.cls == "SimpleRNN" and self.activation == "relu":
                args.append('nonlinearity="relu"')
            return f"nn.{'RNN' if self.cls == 'SimpleRNN' else self.cls}({', '.join(args)}, batch_first=True)"
        ctx.uses.add("kc")
        if self.activation != "tanh":
            args.append(f"activation={self.activation!r}")
        if self.recurrent_activation not in (None, "sigmoid"):
            args.append(f"recurrent_activation={self.recurrent_activation!r}")
        if self.cls == "GRU" and not self.reset_after:
            args.append("reset_after=False")
        if zero_output and masked:
            args.append("zero_output_for_mask=True")
        return f"kc.{self.cls}({', '.join(args)})"

    def init_lines(self, attr: str, bidirectional: bool) -> list[str]:
        if not self.use_bias or self.has_hh_bias():
            return []
        lines = [f"self.{attr}.bias_hh_l0.requires_grad_(False)  # Keras has one bias: torch's second stays zero"]
        if bidirectional:
            lines.append(f"self.{attr}.bias_hh_l0_reverse.requires_grad_(False)")
        return lines

    def note(self, masked: bool) -> str | None:
        if self.torch_exact(masked):
            return None
        if masked:
            return "Keras' mask: a masked step keeps the state"
        if self.cls == "GRU" and not self.reset_after:
            return "reset_after=False: the reset gate before the recurrent product"
        return "Keras' activations in Keras' step loop"

    def state_names(self) -> list[str]:
        return ["h", "c"] if self.cls == "LSTM" else ["h"]


def _int(conv, cfg, key):
    v = cfg.get(key)
    if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= 2**31:
        conv.bad(f"{key} = {v!r}")
    return v


def _call(attr: str, x: str, mask: str | None, backwards: bool) -> str:
    if backwards:  # go_backwards: Keras reads the sequence (and its mask) in reverse
        x = f"{x}.flip(1)"
        mask = None if mask is None else f"{mask}.flip(1)"
    return f"self.{attr}({x}{'' if mask is None else f', {mask}'})"


class _OverSteps(Converter):
    """What the recurrent layers share: a (batch, steps, features) input in Keras' layout and its mask."""

    takes_mask = True  # a masked step keeps the state

    def read_input(self):
        t = self.inputs[0]
        if len(t.shape) != 2:
            self.fail(f"expects (batch, steps, features), got rank {t.rank}")
        self.n_in = self.feature_dim()
        self.masked = t.mask is not None

    def wanted_layout(self, i, t):
        return KERAS


@converter("SimpleRNN", "LSTM", "GRU")
class Recurrent(_OverSteps):
    def setup(self):
        self.spec = _RNNSpec(self, self.cfg, self.layer.class_name)
        self.read_input()

    def outputs(self):
        s, t = self.spec, self.inputs[0]
        out = Out((t.shape[0], s.units) if s.return_sequences else (s.units,), KERAS,
                  self.masked and s.return_sequences)
        return [out] + ([Out((s.units,))] * len(s.state_names()) if s.return_state else [])

    def weights(self):
        return self.spec.weights(self.n_in, "cell")

    def module(self):
        return self.spec.module(self.ctx, self.n_in, self.masked, False, self.spec.zero_output_for_mask)

    def note(self):
        return self.spec.note(self.masked)

    def init_lines(self):
        return self.spec.init_lines(self.attr, False)

    def forward(self, ins, outs):
        s = self.spec
        call = _call(self.attr, ins[0], self.inputs[0].mask, s.go_backwards)
        last = "" if s.return_sequences else "[:, -1]"
        note = "" if s.return_sequences else "  # the last step's output (return_sequences=False)"
        if not s.return_state:
            return [f"{outs[0]} = {call}[0]{last}{note}"]
        states = outs[1:]
        if s.cls == "LSTM":
            lines = [f"{outs[0]}, ({states[0]}, {states[1]}) = {call}"]
        else:
            lines = [f"{outs[0]}, {states[0]} = {call}"]
        if last:
            lines.append(f"{outs[0]} = {outs[0]}{last}{note}")
        lines.append(f"{', '.join(states)} = {', '.join(f'{v}[0]' for v in states)}  # return_state: the final states")
        return lines

    def to_torch(self, arrays):
        return self.spec.to_torch(arrays, "")

    def to_keras(self, state):
        return self.spec.to_keras(state, "")


@converter("Bidirectional")
class Bidirectional(_OverSteps):
    """Keras runs a forward and a backward copy of the layer and merges them; torch's
    `bidirectional=True` is the same pair (its reverse direction's outputs are already re-aligned, as
    Keras' are after `flip`). Without return_sequences Keras keeps each direction's last output: the
    forward one at the last step, the backward one at the first."""

    def setup(self):
        inner = self.opt("layer")
        if not isinstance(inner, dict) or not isinstance(inner.get("config"), dict):
            self.bad("no wrapped layer")
        self.spec = _RNNSpec(self, inner["config"], inner.get("class_name"))
        back = self.opt("backward_layer")
        if isinstance(back, dict) and isinstance(back.get("config"), dict):
            bs = _RNNSpec(self, back["config"], back.get("class_name"))
            same = (bs.cls, bs.units, bs.activation, bs.recurrent_activation, bs.use_bias, bs.reset_after,
                    bs.return_sequences, bs.return_state)
            mine = (self.spec.cls, self.spec.units, self.spec.activation, self.spec.recurrent_activation,
                    self.spec.use_bias, self.spec.reset_after, self.spec.return_sequences, self.spec.return_state)
            if same != mine or not bs.go_backwards:
                self.fail("a backward_layer that is not the mirror of the forward layer is not supported")
        if self.spec.go_backwards:
            self.fail("a forward layer with go_backwards=True is not supported")
        self.merge = self.opt("merge_mode", "concat")
        if self.merge not in ("concat", "sum", "ave", "mul", None):
            self.fail(f"merge_mode={self.merge!r} is not supported")
        self.read_input()

    def outputs(self):
        s, t = self.spec, self.inputs[0]
        u = s.units
        per = (t.shape[0], u) if s.return_sequences else (u,)
        masked = self.masked and s.return_sequences
        if self.merge is None:
            outs = [Out(per, KERAS, masked), Out(per, KERAS, masked)]
        else:
            merged = (*per[:-1], 2 * u) if self.merge == "concat" else per
            outs = [Out(merged, KERAS, masked)]
        return outs + ([Out((u,))] * (2 * len(s.state_names())) if s.return_state else [])

    def weights(self):
        return self.spec.weights(self.n_in, "forward_layer/cell") + self.spec.weights(self.n_in, "backward_layer/cell")

    def note(self):
        return self.spec.note(self.masked)

    def module(self):
        # Keras forces zero_output_for_mask = return_sequences on both directions
        return self.spec.module(self.ctx, self.n_in, self.masked, True, self.spec.return_sequences)

    def init_lines(self):
        return self.spec.init_lines(self.attr, True)

    def forward(self, ins, outs):
        s = self.spec
        u = s.units
        n_out = 1 if self.merge is not None else 2
        seq = self.temp(f"{outs[0]}_seq")
        call = _call(self.attr, ins[0], self.inputs[0].mask, False)
        states = outs[n_out:]
        if s.return_state:
            h, c = self.temp(f"{seq}_h"), self.temp(f"{seq}_c")
            lines = [f"{seq}, ({h}, {c}) = {call}" if s.cls == "LSTM" else f"{seq}, {h} = {call}"]
        else:
            lines = [f"{seq} = {call}[0]"]
        if s.return_sequences:
            fwd, bwd = f"{seq}[..., :{u}]", f"{seq}[..., {u}:]"
        else:  # each direction's last output: the forward one at the end, the backward one at the start
            fwd, bwd = f"{seq}[:, -1, :{u}]", f"{seq}[:, 0, {u}:]"
        if self.merge == "concat":
            merged = seq if s.return_sequences else f"torch.cat([{fwd}, {bwd}], dim=-1)"
            lines.append(f"{outs[0]} = {merged}")
        elif self.merge == "sum":
            lines.append(f"{outs[0]} = {fwd} + {bwd}")
        elif self.merge == "ave":
            lines.append(f"{outs[0]} = ({fwd} + {bwd}) / 2")
        elif self.merge == "mul":
            lines.append(f"{outs[0]} = {fwd} * {bwd}")
        else:
            lines.append(f"{outs[0]}, {outs[1]} = {fwd}, {bwd}")
        if s.return_state:  # the forward direction's states, then the backward one's
            names = s.state_names()
            per_dir = [f"{h if n == 'h' else c}[{d}]" for d in (0, 1) for n in names]
            lines.append(f"{', '.join(states)} = {', '.join(per_dir)}")
        return lines

    def to_torch(self, arrays):
        n = len(arrays) // 2
        return {**self.spec.to_torch(arrays[:n], ""), **self.spec.to_torch(arrays[n:], "_reverse")}

    def to_keras(self, state):
        return self.spec.to_keras(state, "") + self.spec.to_keras(state, "_reverse")
