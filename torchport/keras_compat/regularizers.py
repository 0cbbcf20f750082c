"""Keras' weight regularizers in torch, as Keras 3 computes them: the penalty each adds to the loss (Keras
reports it inside `loss`, training and validation alike). Each takes the weight in Keras' own layout (the
orthogonal regularizer's rows are Keras' rows)."""
from __future__ import annotations

import torch

from .casts import f32

EPSILON = 1e-7  # keras.config.epsilon()


class L1L2:
    """L1, L2 and L1L2: l1 * sum(|w|) + l2 * sum(w^2) (a zero factor's term left out, as Keras does). Keras
    casts each factor with `ops.cast(l2, w.dtype)`, which makes a Python float a float32 tensor first: a
    float64 model's penalty uses 0.009999999776482582 for 0.01 (1e-9 relative in its loss otherwise)."""

    def __init__(self, l1: float = 0.0, l2: float = 0.0):
        self.l1, self.l2 = f32(l1), f32(l2)

    def __call__(self, w: torch.Tensor) -> torch.Tensor:
        total = w.new_zeros(())
        if self.l1:
            total = total + self.l1 * w.abs().sum()
        if self.l2:
            total = total + self.l2 * w.square().sum()
        return total

    layout_free = True  # a sum over the elements: any arrangement of them gives the same penalty


class OrthogonalRegularizer:
    """factor * 0.5 * sum(|off-diagonal of N N^T|) / pairs, N the L2-normalised rows (mode="rows") or columns
    of a rank-2 weight (Keras' normalize: w * min(rsqrt(sum(w^2)), 1/epsilon))."""

    layout_free = False

    def __init__(self, factor: float = 0.01, mode: str = "rows"):
        if mode not in ("rows", "columns"):
            raise ValueError(f"mode {mode!r}")
        self.factor, self.mode = float(factor), mode

    def __call__(self, w: torch.Tensor) -> torch.Tensor:
        if w.dim() != 2:
            raise ValueError(f"the orthogonal regularizer takes a rank-2 weight, not shape {tuple(w.shape)}")
        axis = 1 if self.mode == "rows" else 0
        n = w * torch.minimum(torch.rsqrt(w.square().sum(axis, keepdim=True)),
                              torch.tensor(1.0 / EPSILON, dtype=w.dtype, device=w.device))
        product = n @ n.T if self.mode == "rows" else n.T @ n
        size = product.shape[0]
        off = product * (1.0 - torch.eye(size, dtype=w.dtype, device=w.device))
        return self.factor * 0.5 * off.abs().sum() / (size * (size - 1.0) / 2.0)


NAMES = {"l1": "L1", "l2": "L2", "l1_l2": "L1L2", "l1l2": "L1L2", "orthogonal_regularizer": "OrthogonalRegularizer"}


def from_config(entry) -> L1L2 | OrthogonalRegularizer:
    """A regularizer from its Keras config entry ({"class_name": "L2", "config": {"l2": 0.01}} or "l2");
    ValueError for one Keras has not, or an option it has not."""
    if isinstance(entry, str):
        entry = {"class_name": NAMES.get(entry.lower(), entry), "config": {}}
    if not isinstance(entry, dict):
        raise ValueError(f"{entry!r}")
    cls = str(entry.get("class_name", ""))
    conf = {k: v for k, v in (entry.get("config") or {}).items() if k != "name"}
    if cls == "L1":
        return L1L2(l1=conf.get("l1", 0.01))
    if cls == "L2":
        return L1L2(l2=conf.get("l2", 0.01))
    if cls == "L1L2":
        return L1L2(conf.get("l1", 0.0), conf.get("l2", 0.0))
    if cls == "OrthogonalRegularizer":
        return OrthogonalRegularizer(conf.get("factor", 0.01), conf.get("mode", "rows"))
    raise ValueError(f"regularizer '{cls}'")
