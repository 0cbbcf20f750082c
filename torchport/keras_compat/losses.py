"""Keras' losses in torch, as the TensorFlow backend computes them.

A cross-entropy on an output that carries `_keras_logits` (a ported softmax/sigmoid output, see
activations.py) works from those logits, exactly as TensorFlow's Keras does during `fit`; on plain
probabilities it clips them to [1e-7, 1 - 1e-7] first. Each loss returns the batch mean of its per-sample
values (Keras' "sum_over_batch_size" reduction); a per-sample value is the mean over the last axis where
Keras takes one (binary cross-entropy, MSE, MAE, Huber).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

EPSILON = 1e-7  # keras.config.epsilon()


def same_rank(y_true: torch.Tensor, y_pred: torch.Tensor):
    """Keras' squeeze_or_expand_to_same_rank: (N,) targets against an (N, 1) output become (N, 1)."""
    if y_true.dim() == y_pred.dim() - 1 and y_pred.shape[-1] == 1:
        y_true = y_true.unsqueeze(-1) if y_true.dim() == 1 else y_true
    elif y_pred.dim() == y_true.dim() - 1 and y_true.shape[-1] == 1:
        y_true = y_true.squeeze(-1)
    return y_true, y_pred


def squeeze_or_expand(x1: torch.Tensor, x2: torch.Tensor):
    """Keras' squeeze_or_expand_to_same_rank: ranks one apart meet where the longer one ends in 1."""
    r1, r2 = x1.dim(), x2.dim()
    if r1 == r2 + 1 and x1.shape[-1] == 1:
        return (x1, x2.unsqueeze(-1)) if r2 == 1 else (x1.squeeze(-1), x2)
    if r2 == r1 + 1 and x2.shape[-1] == 1:
        return (x1.unsqueeze(-1), x2) if r1 == 1 else (x1, x2.squeeze(-1))
    return x1, x2


def _logits_of(y_pred: torch.Tensor, from_logits: bool):
    """The logits behind `y_pred` if TensorFlow's Keras would use them, else None (the probability path)."""
    logits = getattr(y_pred, "_keras_logits", None)
    if logits is not None:
        return logits
    return y_pred if from_logits else None


def categorical_crossentropy(logits: torch.Tensor, target: torch.Tensor, clipped: bool = False) -> torch.Tensor:
    """Mean over the batch of -sum(y * log softmax(logits)): the seed CNN's loss on its logits.

    `target` is one-hot (or any distribution) of the logits' shape, or integer class indices.
    Default: the TensorFlow backend's path, which recovers the logits behind a softmax output and takes a
    stable log-softmax. `clipped=True`: the torch/jax backends' path, which renormalises the probabilities,
    clips them to [1e-7, 1 - 1e-7] and takes the log; it differs only where a probability saturates.
    """
    if target.dim() == logits.dim() - 1:
        target = F.one_hot(target.long(), logits.shape[-1]).to(logits.dtype)
    target = target.to(logits.dtype)
    if clipped:
        return _clipped_categorical(torch.softmax(logits, dim=-1), target).mean()
    return -(target * torch.log_softmax(logits, dim=-1)).sum(dim=-1).mean()


def _clipped_categorical(p: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    p = p / p.sum(dim=-1, keepdim=True)
    return -(target * torch.log(p.clamp(EPSILON, 1.0 - EPSILON))).sum(dim=-1)


class KerasLoss:
    """A Keras loss by name and options, called as `loss(y_pred, y_true)` (the engine's order)."""

    def __init__(self, name: str, from_logits: bool = False, label_smoothing: float = 0.0, delta: float = 1.0):
        if name not in LOSSES:
            raise ValueError(f"loss {name!r} is not supported")
        self.name, self.from_logits, self.label_smoothing, self.delta = name, from_logits, label_smoothing, delta

    def __call__(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        return LOSSES[self.name](self, y_pred, y_true).mean()

    def values(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        """The per-sample values (per sample and step for a sequence output), before any reduction."""
        return LOSSES[self.name](self, y_pred, y_true)

    def weighted(self, y_pred: torch.Tensor, y_true: torch.Tensor, sample_weight: torch.Tensor | None) -> torch.Tensor:
        """Keras' reduce_weighted_values: sum(value * weight) over the number of values (not over the sum of
        the weights: "sum_over_batch_size"); the plain mean without weights."""
        values = self.values(y_pred, y_true)
        if sample_weight is None:
            return values.mean()
        values, weight = squeeze_or_expand(values, sample_weight.to(values.dtype))
        weighted = values * weight
        return weighted.sum() / weighted.numel()

    def __repr__(self):
        return f"KerasLoss({self.name!r})"

    # -- the per-sample functions ------------------------------------------------------------------------------
    def _categorical(self, y_pred, y_true):
        y_true = y_true.to(y_pred.dtype)
        if self.label_smoothing:
            y_true = y_true * (1.0 - self.label_smoothing) + self.label_smoothing / y_true.shape[-1]
        logits = _logits_of(y_pred, self.from_logits)
        if logits is not None:
            return -(y_true * torch.log_softmax(logits, dim=-1)).sum(dim=-1)
        return _clipped_categorical(y_pred, y_true)

    def _sparse_categorical(self, y_pred, y_true):
        if y_true.dim() == y_pred.dim() and y_true.shape[-1] == 1:
            y_true = y_true.squeeze(-1)
        logits = _logits_of(y_pred, self.from_logits)
        if logits is None:  # TensorFlow: log of the clipped probabilities, then a softmax cross-entropy on them
            logits = torch.log(y_pred.clamp(EPSILON, 1 - EPSILON))
        log_p = torch.log_softmax(logits, dim=-1)
        return -log_p.gather(-1, y_true.long().unsqueeze(-1)).squeeze(-1)

    def _binary(self, y_pred, y_true):
        y_true, y_pred = same_rank(y_true.to(y_pred.dtype), y_pred)
        if self.label_smoothing:
            y_true = y_true * (1.0 - self.label_smoothing) + 0.5 * self.label_smoothing
        logits = _logits_of(y_pred, self.from_logits)
        if logits is not None:  # tf.nn.sigmoid_cross_entropy_with_logits
            values = F.binary_cross_entropy_with_logits(logits, y_true, reduction="none")
        else:
            p = y_pred.clamp(EPSILON, 1.0 - EPSILON)
            values = -(y_true * torch.log(p) + (1 - y_true) * torch.log(1 - p))
        return values.mean(dim=-1)

    def _mse(self, y_pred, y_true):
        y_true, y_pred = same_rank(y_true.to(y_pred.dtype), y_pred)
        return (y_true - y_pred).square().mean(dim=-1)

    def _mae(self, y_pred, y_true):
        y_true, y_pred = same_rank(y_true.to(y_pred.dtype), y_pred)
        return (y_true - y_pred).abs().mean(dim=-1)

    def _huber(self, y_pred, y_true):
        y_true, y_pred = same_rank(y_true.to(y_pred.dtype), y_pred)
        error = y_pred - y_true
        abs_error = error.abs()
        d = self.delta
        return torch.where(abs_error <= d, 0.5 * error.square(), d * abs_error - 0.5 * d * d).mean(dim=-1)


LOSSES = {
    "categorical_crossentropy": KerasLoss._categorical,
    "sparse_categorical_crossentropy": KerasLoss._sparse_categorical,
    "binary_crossentropy": KerasLoss._binary,
    "mean_squared_error": KerasLoss._mse,
    "mean_absolute_error": KerasLoss._mae,
    "huber": KerasLoss._huber,
}

# other names Keras accepts for the same losses (strings and class names, lower-cased)
ALIASES = {"mse": "mean_squared_error", "mae": "mean_absolute_error", "huber_loss": "huber",
           "categoricalcrossentropy": "categorical_crossentropy",
           "sparsecategoricalcrossentropy": "sparse_categorical_crossentropy",
           "binarycrossentropy": "binary_crossentropy", "meansquarederror": "mean_squared_error",
           "meanabsoluteerror": "mean_absolute_error"}
