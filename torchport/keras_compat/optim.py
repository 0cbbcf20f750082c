"""Keras' optimizers in torch: Keras' update formulas, in Keras' order, with Keras' dtype handling.

One loop (`KerasOptimizer.step`) does what `keras.optimizers.Optimizer.apply` does: clip the gradients
(clipnorm, global_clipnorm or clipvalue), decay the weights (v -= v * wd * lr), apply each optimizer's
`update_step`, count the iteration. Each subclass's `update` is its Keras `update_step`, line for line.

dtypes. Keras writes a hyperparameter two ways, and a float64 model sees the
difference: `ops.cast(self.beta_1, dtype)` makes a float32 tensor first (0.9 -> 0.8999999761581421), while
`1 - self.beta_1` or `ops.multiply(m, self.momentum)` keep the Python float exact. `_f32` marks the first
kind. The learning rate is a variable of Keras' floatx (`lr_dtype`); a schedule computes in float32.

SGD's two meanings of `decay` (chosen with `legacy_decay`): Keras 3 ignores it with a warning (what
produced the CIFAR-10 seed's log); Keras 2's legacy SGD uses lr / (1 + decay * t), t = updates applied.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import torch

from . import sparse_rows
from .casts import f32 as _f32

KERAS3_DECAY_WARNING = "Argument `decay` is no longer supported and will be ignored."


def _check(name: str, value: float, minimum: float = 0.0) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value < minimum:
        raise ValueError(f"{name} must be a finite number >= {minimum}, got {value!r}")
    return float(value)


# ---- learning-rate schedules (Keras computes them in float32) ----------------------------------------------------

def schedule_value(schedule: dict, step: int) -> float:
    """The learning rate a Keras schedule gives at `step` (optimizer iterations so far), in float32."""
    kind, c = schedule["class_name"], schedule["config"]
    f = np.float32
    t = f(step)
    if kind == "ExponentialDecay":
        p = t / f(c["decay_steps"])
        if c.get("staircase"):
            p = np.floor(p)
        return float(f(c["initial_learning_rate"]) * np.power(f(c["decay_rate"]), p))
    if kind == "InverseTimeDecay":
        p = t / f(c["decay_steps"])
        if c.get("staircase"):
            p = np.floor(p)
        return float(f(c["initial_learning_rate"]) / (f(1) + f(c["decay_rate"]) * p))
    if kind == "PiecewiseConstantDecay":
        bounds, values = c["boundaries"], c["values"]
        for b, v in zip(bounds, values, strict=False):
            if step <= b:
                return float(f(v))
        return float(f(values[-1]))
    if kind == "CosineDecay":
        lr0, decay_steps = f(c["initial_learning_rate"]), f(c["decay_steps"])
        alpha, target, warm = c.get("alpha", 0.0), c.get("warmup_target"), f(c.get("warmup_steps", 0))

        def decay(s, steps, start):
            cosine = f(0.5) * (f(1.0) + np.cos(f(math.pi) * (s / steps)))
            return float(start * (f(1 - alpha) * cosine + f(alpha)))

        if target is None:
            return decay(min(t, decay_steps), decay_steps, lr0)
        target = f(target)
        t = min(t, decay_steps + warm)
        if t < warm:
            return float((target - lr0) * (t / warm) + lr0)
        return decay(t - warm, decay_steps, target)
    raise ValueError(f"learning-rate schedule {kind!r} is not supported")


SCHEDULES = ("ExponentialDecay", "InverseTimeDecay", "PiecewiseConstantDecay", "CosineDecay")


# ---- the shared loop ------------------------------------------------------------------------------------------------

class KerasOptimizer(torch.optim.Optimizer):
    """Keras' `Optimizer.apply`: clip, decay, update, count. Subclasses define `update(p, g, state, lr, group)`.

    Under fp16 autocast torch's GradScaler hands the optimizer `grad_scale` and `found_inf` tensors
    (`_step_supports_amp_scaling`): the step unscales the gradients itself and, where `found_inf` is set,
    keeps every parameter and slot as it was, on the device, so no step waits for the host. (The
    iteration count still advances on a skipped step: it lives on the host.)

    `learning_rate` is a float or a schedule config (`{"class_name": "ExponentialDecay", "config": {...}}`);
    `lr_dtype` is the learning-rate variable's dtype (Keras' floatx: "float32" unless the model was saved
    under `set_floatx("float64")`). Step state lives in `state[p]` and `param_groups[i]["iterations"]`, so
    `state_dict()` checkpoints it exactly.
    """

    def __init__(self, params, learning_rate, *, clipnorm=None, global_clipnorm=None, clipvalue=None,
                 weight_decay=None, lr_dtype: str = "float32", **hyper):
        clips = [c for c in (clipnorm, global_clipnorm, clipvalue) if c is not None]
        if len(clips) > 1:
            raise ValueError("only one of clipnorm, global_clipnorm and clipvalue can be set (as in Keras)")
        for name, v in (("clipnorm", clipnorm), ("global_clipnorm", global_clipnorm), ("clipvalue", clipvalue),
                        ("weight_decay", weight_decay)):
            if v is not None:
                _check(name, v)
        if isinstance(learning_rate, dict):
            if learning_rate.get("class_name") not in SCHEDULES:
                raise ValueError(f"learning-rate schedule {learning_rate.get('class_name')!r} is not supported")
            schedule_value(learning_rate, 0)  # fails now on a malformed config, not mid-training
        else:
            _check("learning_rate", learning_rate)
        defaults = dict(lr=learning_rate, iterations=0, clipnorm=clipnorm, global_clipnorm=global_clipnorm,
                        clipvalue=clipvalue, weight_decay=weight_decay, lr_dtype=lr_dtype, **hyper)
        super().__init__(params, defaults)
        self._rows: dict = {}  # during a step: id(param) -> its Embedding rows (sparse_rows.Rows)

    @staticmethod
    def current_lr(group) -> float:
        """The learning rate of the next update, as Keras holds it (a schedule's value in float32)."""
        lr = group["lr"]
        if isinstance(lr, dict):
            return schedule_value(lr, group["iterations"])
        return _f32(lr) if group["lr_dtype"] == "float32" else float(lr)

    def _clip(self, grads: list[torch.Tensor], rows: list, group) -> tuple[list, list]:
        """Keras' clipping; an Embedding's gradient is clipped as its looked-up rows (sparse_rows.py)."""
        def sq_sum(g, r):
            return (r.values if r is not None else g).square().sum()

        def scaled(g, r, factor):
            return g * factor, (None if r is None else r.map(lambda v: v * factor))

        if group["clipnorm"]:
            c = group["clipnorm"]
            out = [scaled(g, r, c / torch.clamp(sq_sum(g, r).sqrt(), min=c))  # Keras: g * c / max(|g|, c)
                   for g, r in zip(grads, rows, strict=True)]
            return [g for g, _ in out], [r for _, r in out]
        if group["global_clipnorm"]:
            c = group["global_clipnorm"]
            norm = torch.stack([sq_sum(g, r) for g, r in zip(grads, rows, strict=True)]).sum().sqrt()
            scale = c * (1.0 / norm).clamp(max=1.0 / c)  # Keras: c * min(1 / norm, 1 / c); no host tensor
            # `v * scale` turns TensorFlow's rows into a dense tensor: from here on Keras sees dense gradients
            return [g * scale for g in grads], [None] * len(rows)
        if group["clipvalue"]:
            v = group["clipvalue"]
            rows = [None if r is None else r.map(lambda x: x.clamp(-v, v)) for r in rows]
            return [g.clamp(-v, v) if r is None else r.sum() for g, r in zip(grads, rows, strict=True)], rows
        return grads, rows

    def uses_rows(self) -> bool:
        """Whether an update applies a square, abs or clip to the gradient: then an Embedding's gradient must
        reach it as Keras' looked-up rows (`sparse_rows.track` the model), not torch's dense sum."""
        return True

    def square(self, p, g) -> torch.Tensor:
        """`ops.square(gradient)` as Keras computes it: each looked-up row of an Embedding squared, then added."""
        r = self._rows.get(id(p))
        return g.square() if r is None else r.sum(lambda i, v: v.square())

    def absolute(self, p, g) -> torch.Tensor:
        r = self._rows.get(id(p))
        return g.abs() if r is None else r.sum(lambda i, v: v.abs())

    def zero_grad(self, set_to_none: bool = True) -> None:
        super().zero_grad(set_to_none)
        sparse_rows.clear(p for group in self.param_groups for p in group["params"])

    _step_supports_amp_scaling = True

    def graph_safe(self) -> bool:
        """Whether a step reads no host value that changes from step to step, so a CUDA graph of it stays
        right on replay. Keras' bias corrections and schedules read the iteration count: not by default."""
        return False

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        grad_scale, found_inf = getattr(self, "grad_scale", None), getattr(self, "found_inf", None)
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if params:
                grads = [p.grad for p in params]
                rows = [sparse_rows.rows_of(p) for p in params]  # an Embedding's looked-up rows, when tracked
                if grad_scale is not None:  # as GradScaler.unscale_ would: by the float32 reciprocal
                    inv = grad_scale.double().reciprocal().float()
                    grads = [g * inv.to(g.device) for g in grads]
                    rows = [None if r is None else r.map(lambda v, inv=inv: v * inv.to(v.device)) for r in rows]
                before = self._snapshot(params) if found_inf is not None else None
                grads, rows = self._clip(grads, rows, group)
                self._rows = {id(p): r for p, r in zip(params, rows, strict=True) if r is not None}
                lr = self.current_lr(group)
                if group["weight_decay"]:
                    wd = _f32(group["weight_decay"])
                    for p in params:
                        p.sub_(p * wd * lr)
                self.update_all(params, grads, lr, group)
                self._rows = {}
                if before is not None:
                    self._undo_where(found_inf, params, before)
            group["iterations"] += 1
        return loss

    def _snapshot(self, params) -> dict:
        return {id(t): t.clone() for p in params for t in (p, *self.state[p].values()) if torch.is_tensor(t)}

    def _undo_where(self, found_inf: torch.Tensor, params, before: dict) -> None:
        """Where the scaler found an inf or NaN, every tensor the step touched goes back (new slots to
        their initial value): the step did not happen."""
        skip = found_inf.to(params[0].device) > 0
        for p in params:
            for t in (p, *self.state[p].values()):
                if torch.is_tensor(t):
                    old = before.get(id(t))
                    if old is None:  # created by this step
                        old = torch.full_like(t, self._fills.get(id(t), 0.0))
                    t.copy_(torch.where(skip, old, t))

    def update_all(self, params, grads, lr, group):
        for p, g in zip(params, grads, strict=True):
            self.update(p, g, self.state[p], lr, group)

    def update(self, p, g, state, lr, group):
        raise NotImplementedError

    def slot(self, state, name, p, fill: float = 0.0):
        if name not in state:
            state[name] = torch.full_like(p, fill, memory_format=torch.preserve_format)
            self._fills[id(state[name])] = fill
        return state[name]

    @property
    def _fills(self) -> dict:
        """Initial values of slots (for undoing a skipped step that created them)."""
        if "_slot_fills" not in self.__dict__:
            self.__dict__["_slot_fills"] = {}
        return self.__dict__["_slot_fills"]


class KerasSGD(KerasOptimizer):
    """Keras keeps a velocity v = momentum * v - lr * g and adds it (Nesterov: w += momentum * v - lr * g);
    torch.optim.SGD keeps buf = momentum * buf + g and subtracts lr * buf. The two agree only while lr is
    constant. Keras casts the momentum through float32 (0.9 -> 0.8999999761581421, float64 models too)."""

    def __init__(self, params, learning_rate: float = 0.01, momentum: float = 0.0, nesterov: bool = False,
                 decay: float = 0.0, legacy_decay: bool = False, foreach: bool = True, **options):
        _check("momentum", momentum)
        _check("decay", decay)
        if momentum > 1:
            raise ValueError(f"momentum must be in [0, 1], got {momentum!r}")
        if decay and not legacy_decay:
            warnings.warn(KERAS3_DECAY_WARNING, stacklevel=2)
            decay = 0.0
        options.setdefault("lr_dtype", "float64")  # the seed ports hold lr as a Python float (exact in both)
        super().__init__(params, learning_rate, momentum=_f32(momentum), nesterov=bool(nesterov),
                         decay=float(decay), foreach=foreach, **options)

    def graph_safe(self) -> bool:
        return all(not isinstance(g["lr"], dict) and not g["decay"] and not any(map(sparse_rows.tracked, g["params"]))
                   for g in self.param_groups)

    def uses_rows(self) -> bool:  # SGD's update is linear in the gradient: only clipping sees the rows
        return any(g["clipnorm"] or g["global_clipnorm"] or g["clipvalue"] for g in self.param_groups)

    @staticmethod
    def current_lr(group) -> float:
        """Legacy decay counts the updates already applied: the first batch uses the full lr."""
        lr = KerasOptimizer.current_lr(group)
        return lr / (1.0 + group["decay"] * group["iterations"]) if group["decay"] else lr

    def update_all(self, params, grads, lr, group):
        m = group["momentum"]
        if m == 0:
            self._apply(group["foreach"], "add_", params, grads, alpha=-lr)
            return
        vs = [self.slot(self.state[p], "velocity", p) for p in params]
        self._apply(group["foreach"], "mul_", vs, m)                 # v = m * v
        self._apply(group["foreach"], "add_", vs, grads, alpha=-lr)  # v -= lr * g
        if group["nesterov"]:                                        # w += m * v - lr * g
            self._apply(group["foreach"], "add_", params, vs, alpha=m)
            self._apply(group["foreach"], "add_", params, grads, alpha=-lr)
        else:                                                        # w += v
            self._apply(group["foreach"], "add_", params, vs)

    @staticmethod
    def _apply(foreach: bool, op: str, tensors, other, **kw):
        """One in-place op over a list: fused across tensors with torch._foreach_* when enabled."""
        if foreach:
            getattr(torch, f"_foreach_{op}")(tensors, other, **kw)
        else:
            others = other if isinstance(other, list) else [other] * len(tensors)
            for t, o in zip(tensors, others, strict=True):
                getattr(t, op)(o, **kw)


class Adam(KerasOptimizer):
    """alpha = lr * sqrt(1 - b2^t) / (1 - b1^t); m += (g - m)(1 - b1); v += (g^2 - v)(1 - b2);
    w -= m * alpha / (sqrt(v) + eps). eps is outside the square root and not bias-corrected (torch: 1e-8,
    added to sqrt(v-hat))."""

    def __init__(self, params, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False, **options):
        for name, v in (("beta_1", beta_1), ("beta_2", beta_2), ("epsilon", epsilon)):
            _check(name, v)
        super().__init__(params, learning_rate, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, amsgrad=bool(amsgrad),
                         **options)

    def update(self, p, g, state, lr, group):
        b1, b2 = group["beta_1"], group["beta_2"]
        t = group["iterations"] + 1
        alpha = lr * math.sqrt(1 - _f32(b2) ** t) / (1 - _f32(b1) ** t)
        m, v = self.slot(state, "momentum", p), self.slot(state, "velocity", p)
        m.add_((g - m) * (1 - b1))
        v.add_((self.square(p, g) - v) * (1 - b2))
        if group["amsgrad"]:
            v_hat = self.slot(state, "velocity_hat", p)
            torch.maximum(v_hat, v, out=v_hat)
            v = v_hat
        p.sub_((m * alpha) / (v.sqrt() + group["epsilon"]))

    def update_all(self, params, grads, lr, group):
        """On CUDA, `update` over every parameter at once (torch's own optimizers choose foreach there too; on a
        CPU the fused lists measured slower: the FCN's Adam step 36-40 ms per parameter, 41-44 ms fused).
        An Embedding's looked-up rows take the loop."""
        if params and params[0].device.type == "cuda" and not any(id(p) in self._rows for p in params):
            return self.update_foreach(params, grads, lr, group)
        return super().update_all(params, grads, lr, group)

    def update_foreach(self, params, grads, lr, group):
        """`update`'s elementwise ops in the same order, each one kernel for the whole model
        (torch._foreach_*): bit for bit the loop's numbers."""
        b1, b2 = group["beta_1"], group["beta_2"]
        t = group["iterations"] + 1
        alpha = lr * math.sqrt(1 - _f32(b2) ** t) / (1 - _f32(b1) ** t)
        ms = [self.slot(self.state[p], "momentum", p) for p in params]
        vs = [self.slot(self.state[p], "velocity", p) for p in params]
        step = torch._foreach_sub(grads, ms)          # m += (g - m)(1 - b1)
        torch._foreach_mul_(step, 1 - b1)
        torch._foreach_add_(ms, step)
        step = torch._foreach_mul(grads, grads)       # v += (g^2 - v)(1 - b2)
        torch._foreach_sub_(step, vs)
        torch._foreach_mul_(step, 1 - b2)
        torch._foreach_add_(vs, step)
        if group["amsgrad"]:
            v_hats = [self.slot(self.state[p], "velocity_hat", p) for p in params]
            torch._foreach_maximum_(v_hats, vs)
            vs = v_hats
        den = torch._foreach_sqrt(vs)                 # w -= m alpha / (sqrt(v) + eps)
        torch._foreach_add_(den, group["epsilon"])
        num = torch._foreach_mul(ms, alpha)
        torch._foreach_div_(num, den)
        torch._foreach_sub_(params, num)


class AdamW(Adam):
    """Adam with decoupled weight decay (Keras' default 0.004), applied by the shared loop."""

    def __init__(self, params, learning_rate=0.001, weight_decay=0.004, **options):
        super().__init__(params, learning_rate, weight_decay=weight_decay, **options)


class RMSprop(KerasOptimizer):
    """v = rho v + (1 - rho) g^2; w -= lr g / sqrt(v + eps) (eps inside the root; torch adds it outside);
    optional momentum (w -= mom = momentum * mom + increment) and centering."""

    def __init__(self, params, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False, **options):
        for name, v in (("rho", rho), ("momentum", momentum), ("epsilon", epsilon)):
            _check(name, v)
        super().__init__(params, learning_rate, rho=rho, momentum=momentum, epsilon=epsilon, centered=bool(centered),
                         **options)

    def update(self, p, g, state, lr, group):
        rho = group["rho"]
        velocity = self.slot(state, "velocity", p)
        velocity.copy_(rho * velocity + (1 - rho) * self.square(p, g))
        if group["centered"]:
            avg = self.slot(state, "average_gradient", p)
            avg.copy_(rho * avg + (1 - rho) * g)
            denominator = velocity - avg.square() + group["epsilon"]
        else:
            denominator = velocity + group["epsilon"]
        increment = (lr * g) / denominator.sqrt()
        if group["momentum"] > 0:
            mom = self.slot(state, "momentum", p)
            mom.copy_(group["momentum"] * mom + increment)
            p.sub_(mom)
        else:
            p.sub_(increment)


class Adagrad(KerasOptimizer):
    def __init__(self, params, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7, **options):
        _check("initial_accumulator_value", initial_accumulator_value)
        _check("epsilon", epsilon)
        super().__init__(params, learning_rate, initial_accumulator_value=initial_accumulator_value, epsilon=epsilon,
                         **options)

    def update(self, p, g, state, lr, group):
        # Keras' Constant initializer makes the accumulator through a float32 tensor
        acc = self.slot(state, "accumulator", p, _f32(group["initial_accumulator_value"]))
        acc.add_(self.square(p, g))
        p.sub_((lr * g) / (acc + group["epsilon"]).sqrt())


class Adadelta(KerasOptimizer):
    def __init__(self, params, learning_rate=0.001, rho=0.95, epsilon=1e-7, **options):
        _check("rho", rho)
        _check("epsilon", epsilon)
        super().__init__(params, learning_rate, rho=rho, epsilon=epsilon, **options)

    def update(self, p, g, state, lr, group):
        rho, eps = group["rho"], group["epsilon"]
        acc_g = self.slot(state, "accumulated_grad", p)
        acc_dv = self.slot(state, "accumulated_delta_var", p)
        acc_g.copy_(rho * acc_g + (1 - rho) * self.square(p, g))
        rms_dv, rms_g = (acc_dv + eps).sqrt(), (acc_g + eps).sqrt()
        delta = -(rms_dv * g) / rms_g
        r = self._rows.get(id(p))  # Keras squares delta as looked-up rows too (delta is linear in g)
        delta_sq = delta.square() if r is None else r.sum(lambda i, v: (-(rms_dv[i] * v) / rms_g[i]).square())
        acc_dv.copy_(rho * acc_dv + (1 - rho) * delta_sq)
        p.add_(lr * delta)


class Adamax(KerasOptimizer):
    def __init__(self, params, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, **options):
        for name, v in (("beta_1", beta_1), ("beta_2", beta_2), ("epsilon", epsilon)):
            _check(name, v)
        super().__init__(params, learning_rate, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, **options)

    def update(self, p, g, state, lr, group):
        b1 = group["beta_1"]
        t = group["iterations"] + 1
        b1_power = _f32(b1) ** t
        m, u = self.slot(state, "momentum", p), self.slot(state, "norm", p)
        m.add_((g - m) * (1 - b1))
        torch.maximum(group["beta_2"] * u, self.absolute(p, g), out=u)
        p.sub_((lr * m) / ((1 - b1_power) * (u + group["epsilon"])))


class Nadam(KerasOptimizer):
    """Keras' Nadam: a running product of momentum schedules u_t = b1 (1 - 0.5 * 0.96^t), updated once per
    step before the variables (with the exact b1), then per variable with float32-cast b1, b2, 0.96."""

    def __init__(self, params, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, **options):
        for name, v in (("beta_1", beta_1), ("beta_2", beta_2), ("epsilon", epsilon)):
            _check(name, v)
        super().__init__(params, learning_rate, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, u_product=1.0,
                         **options)

    def update_all(self, params, grads, lr, group):
        t = group["iterations"] + 1
        group["u_product"] = group["u_product"] * group["beta_1"] * (1.0 - 0.5 * 0.96 ** t)
        if params[0].dtype == torch.float32:  # Keras' u_product is a variable of the model's dtype
            group["u_product"] = _f32(group["u_product"])
        super().update_all(params, grads, lr, group)

    def update(self, p, g, state, lr, group):
        t = group["iterations"] + 1
        decay, b1, b2 = _f32(0.96), _f32(group["beta_1"]), _f32(group["beta_2"])
        u_t = b1 * (1.0 - 0.5 * decay ** t)
        u_t_1 = b1 * (1.0 - 0.5 * decay ** (t + 1))
        u_product_t = group["u_product"]
        u_product_t_1 = u_product_t * u_t_1
        m, v = self.slot(state, "momentum", p), self.slot(state, "velocity", p)
        m.add_((g - m) * (1 - b1))
        v.add_((self.square(p, g) - v) * (1 - b2))
        m_hat = (u_t_1 * m) / (1 - u_product_t_1) + ((1 - u_t) * g) / (1 - u_product_t)
        v_hat = v / (1 - b2 ** t)
        p.sub_((m_hat * lr) / (v_hat.sqrt() + group["epsilon"]))


OPTIMIZERS = {"SGD": KerasSGD, "Adam": Adam, "AdamW": AdamW, "RMSprop": RMSprop, "Adagrad": Adagrad,
              "Adadelta": Adadelta, "Adamax": Adamax, "Nadam": Nadam}
