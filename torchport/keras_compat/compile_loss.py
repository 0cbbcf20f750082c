"""Keras' compiled loss and metrics for models of several outputs and for sample weights, as Keras 3's
`trainers/compile_utils.py` computes them.

- The loss is the sum over outputs of `loss_weight * loss_i(y_i, y_pred_i, sample_weight)`, plus the
  regularization penalties (`penalty`): what Keras reports as `loss`.
- Each output's own loss is reported as `<output>_loss` (several outputs only), *without* its loss weight,
  with the sample weights; each output's metrics as `<output>_<metric>`.
- A loss reduces "sum_over_batch_size": sum(value * weight) over the number of values. A metric in
  `metrics` ignores sample weights; one in `weighted_metrics` is sum(value * weight) / sum(weight) over the
  epoch (a ratio the engine aggregates as two columns: `means.RATIO`).

Targets travel as `Targets`: one tensor per output and the batch's sample weights (or None).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
import torch

from .losses import KerasLoss, squeeze_or_expand


class Targets(NamedTuple):
    y: tuple                       # one target tensor per output
    sample_weight: torch.Tensor | None = None


def _outputs(outputs) -> tuple:
    return outputs if isinstance(outputs, (tuple, list)) else (outputs,)


class CompileLoss:
    """The total loss of a batch, `loss(outputs, targets)` (the engine's order): outputs a tensor or a
    tuple, targets a `Targets`. `losses[i]` is None for an output Keras trains without a loss."""

    def __init__(self, losses: Sequence[KerasLoss | None], loss_weights: Sequence[float | None],
                 penalty: Callable[[], torch.Tensor] | None = None):
        self.losses, self.loss_weights, self.penalty = list(losses), list(loss_weights), penalty
        self.name = ", ".join(loss.name for loss in self.losses if loss is not None)

    def __call__(self, outputs, targets: Targets) -> torch.Tensor:
        outputs = _outputs(outputs)
        total = None
        for loss, weight, y_pred, y_true in zip(self.losses, self.loss_weights, outputs, targets.y, strict=True):
            if loss is None:
                continue
            value = loss.weighted(y_pred, y_true, targets.sample_weight)
            value = value if weight is None else value * weight
            total = value if total is None else total + value
        if self.penalty is not None:
            total = total + self.penalty()
        return total

    def output_loss(self, i: int, per_batch: bool) -> Callable:
        """`<output>_loss`: output i's loss with the sample weights, before its loss weight. `per_batch`: Keras 3
        averages it over batches, each batch counting once (its training step is traced with an unknown batch
        size, so the tracker's weight is None: a last partial batch counts as much as a full one), unlike `loss`
        (weighted by batch size); tf.keras 2 weights it by batch size. Returned as a ratio of two means."""
        return OutputLoss(self.losses[i], i, per_batch)


class OutputLoss:
    ratio = True

    def __init__(self, loss: KerasLoss, i: int, per_batch: bool):
        self.loss, self.i, self.per_batch = loss, i, per_batch

    def __call__(self, outputs, targets: Targets) -> torch.Tensor:
        y_pred = _outputs(outputs)[self.i]
        v = self.loss.weighted(y_pred, targets.y[self.i], targets.sample_weight)
        one = torch.ones((), dtype=v.dtype, device=v.device)
        n = len(y_pred) if self.per_batch else 1  # the engine weights each batch's value by its size n
        return torch.stack([v / n, one / n])


def output_metric(fn: Callable, i: int) -> Callable:
    """A metric of output i (its batch mean; sample weights ignored, as Keras' `metrics`)."""
    return lambda outputs, targets: fn(_outputs(outputs)[i], targets.y[i])


class WeightedMetric:
    """A metric of output i in `weighted_metrics`: its per-sample values (means over any further axes) weighted
    by the sample weights, returned as the batch's (sum(v * w) / n, sum(w) / n): the engine keeps both means
    and reports their ratio. Without sample weights every weight is 1 (the plain mean)."""

    ratio = True

    def __init__(self, values: Callable, i: int):
        self.values, self.i = values, i

    def __call__(self, outputs, targets: Targets) -> torch.Tensor:
        v = self.values(_outputs(outputs)[self.i], targets.y[self.i])
        v = v.reshape(len(v), -1).mean(dim=1) if v.dim() > 1 else v
        w = targets.sample_weight
        if w is None:
            return torch.stack([v.mean(), torch.ones((), dtype=v.dtype, device=v.device)])
        v, w = squeeze_or_expand(v, w.to(v.dtype))
        return torch.stack([(v * w).sum() / len(v), w.sum() / len(v)])


def class_ids(y: np.ndarray) -> np.ndarray:
    """Each sample's class as Keras' class_weight_to_sample_weights reads it: the argmax of a one-hot row,
    else the rounded label; ValueError where the targets hold more than one class per sample."""
    labels = y
    if y.ndim > 1:
        labels = y.argmax(axis=-1) if y.shape[-1] != 1 else y.squeeze(-1)
    if labels.ndim != 1:
        raise ValueError(f"class weights need one class per sample; the targets have shape {y.shape}")
    return np.round(labels).astype(np.int64)


def class_weight_to_sample_weight(y: np.ndarray, class_weight: dict[int, float], dtype) -> np.ndarray:
    """Keras' class_weight_to_sample_weights: each sample's class looked up, 1.0 for a class the mapping
    leaves out (once per distinct class, not per sample)."""
    classes, which = np.unique(class_ids(y), return_inverse=True)
    return np.array([class_weight.get(int(c), 1.0) for c in classes], dtype=dtype)[which]
