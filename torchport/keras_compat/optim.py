"""KerasSGD: Keras' SGD update rule in torch.

Keras keeps a velocity v = momentum * v - lr * g and adds it (w += v; Nesterov: w += momentum * v - lr * g).
torch.optim.SGD keeps buf = momentum * buf + g and subtracts lr * buf. The two agree only while lr is
constant; once lr decays, only Keras' rule follows Keras' trajectory.

`decay` has two documented meanings, chosen explicitly with `legacy_decay`:
- Keras 3 (default, what produced the CIFAR-10 seed's log): the argument is ignored, with Keras' warning.
- Keras 2 legacy (tf_keras.optimizers.legacy.SGD): lr_t = lr / (1 + decay * t), t = updates already applied.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import torch

KERAS3_DECAY_WARNING = "Argument `decay` is no longer supported and will be ignored."


def _check(name: str, value: float, minimum: float = 0.0) -> float:
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value < minimum:
        raise ValueError(f"{name} must be a finite number >= {minimum}, got {value!r}")
    return float(value)


class KerasSGD(torch.optim.Optimizer):
    def __init__(self, params, learning_rate: float = 0.01, momentum: float = 0.0, nesterov: bool = False,
                 decay: float = 0.0, legacy_decay: bool = False, foreach: bool = True):
        _check("learning_rate", learning_rate)
        _check("momentum", momentum)
        _check("decay", decay)
        if momentum > 1:
            raise ValueError(f"momentum must be in [0, 1], got {momentum!r}")
        if decay and not legacy_decay:
            warnings.warn(KERAS3_DECAY_WARNING, stacklevel=2)
            decay = 0.0
        # Keras casts the Python float momentum through a float32 tensor (convert_to_tensor, then cast to the
        # variable's dtype), so even a float64 model steps with momentum 0.8999999761581421, not 0.9.
        momentum = float(np.float32(momentum))
        defaults = dict(lr=float(learning_rate), momentum=momentum, nesterov=bool(nesterov),
                        decay=float(decay), iterations=0, foreach=foreach)
        super().__init__(params, defaults)

    @staticmethod
    def current_lr(group) -> float:
        """The learning rate the next update uses (legacy decay counts updates already applied)."""
        return group["lr"] / (1.0 + group["decay"] * group["iterations"]) if group["decay"] else group["lr"]

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            grads = [p.grad for p in params]
            lr, m = self.current_lr(group), group["momentum"]
            group["iterations"] += 1
            if not params:
                continue
            if m == 0:
                self._apply(group["foreach"], "add_", params, grads, alpha=-lr)
                continue
            vs = []
            for p in params:
                state = self.state[p]
                if "velocity" not in state:
                    state["velocity"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                vs.append(state["velocity"])
            self._apply(group["foreach"], "mul_", vs, m)                 # v = m * v
            self._apply(group["foreach"], "add_", vs, grads, alpha=-lr)  # v -= lr * g
            if group["nesterov"]:                                        # w += m * v - lr * g
                self._apply(group["foreach"], "add_", params, vs, alpha=m)
                self._apply(group["foreach"], "add_", params, grads, alpha=-lr)
            else:                                                        # w += v
                self._apply(group["foreach"], "add_", params, vs)
        return loss

    @staticmethod
    def _apply(foreach: bool, op: str, tensors, other, **kw):
        """One in-place op over a list: fused across tensors with torch._foreach_* when enabled."""
        if foreach:
            getattr(torch, f"_foreach_{op}")(tensors, other, **kw)
        else:
            others = other if isinstance(other, list) else [other] * len(tensors)
            for t, o in zip(tensors, others, strict=True):
                getattr(t, op)(o, **kw)
