"""Keras' metrics in torch: each returns the batch mean of its per-sample values, which the engine's
`WeightedMean` aggregates as Keras' `Mean` does (weighted by batch size, reset every epoch)."""
from __future__ import annotations

import torch

from .losses import KerasLoss, same_rank


def categorical_accuracy(outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Batch mean of argmax(y_pred) == argmax(y_true); one-hot or integer targets.

    torch.argmax, like tf.argmax, returns the first (smallest) index of tied maxima.
    """
    return _categorical_accuracy(outputs, target).mean()


def sparse_categorical_accuracy(outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return _sparse_categorical_accuracy(outputs, target).mean()


def binary_accuracy(outputs: torch.Tensor, target: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    return _binary_accuracy(outputs, target, threshold).mean()


def exact_accuracy(outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """keras.metrics.Accuracy: how often the prediction equals the label exactly (no argmax, no threshold)."""
    return _exact_accuracy(outputs, target).mean()


# -- the per-sample values each metric is the mean of (a sample-weighted metric weights these) --------------------
def _categorical_accuracy(outputs, target):
    labels = target.argmax(dim=-1) if target.dim() == outputs.dim() else target
    return (outputs.argmax(dim=-1) == labels).to(outputs.dtype)


def _sparse_categorical_accuracy(outputs, target):
    if target.dim() == outputs.dim() and target.shape[-1] == 1:
        target = target.squeeze(-1)
    return (outputs.argmax(dim=-1) == target.long()).to(outputs.dtype)


def _binary_accuracy(outputs, target, threshold: float = 0.5):
    target, outputs = same_rank(target.to(outputs.dtype), outputs)
    return ((outputs > threshold).to(outputs.dtype) == target).to(outputs.dtype).mean(dim=-1)


def _exact_accuracy(outputs, target):
    target, outputs = same_rank(target.to(outputs.dtype), outputs)
    return (outputs == target).to(outputs.dtype)


def _in_top_k(outputs: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """TensorFlow's in_top_k: the target is in the top k unless k classes score strictly higher (ties in)."""
    target_score = outputs.gather(-1, labels.long().unsqueeze(-1))
    return ((outputs > target_score).sum(dim=-1) < k).to(outputs.dtype)


def top_k_categorical_accuracy(outputs, target, k: int = 5):
    return _in_top_k(outputs, target.argmax(dim=-1), k).mean()


def sparse_top_k_categorical_accuracy(outputs, target, k: int = 5):
    return _sparse_top_k(outputs, target, k).mean()


def _sparse_top_k(outputs, target, k: int = 5):
    if target.dim() == outputs.dim() and target.shape[-1] == 1:
        target = target.squeeze(-1)
    return _in_top_k(outputs, target, k)


def is_binary_or_sparse(y_true_shape: tuple, y_pred_shape: tuple) -> tuple[bool, bool]:
    """Keras' compile_utils test: which accuracy (and which cross-entropy) "accuracy"/"crossentropy" mean."""
    is_binary = y_pred_shape[-1] == 1
    is_sparse = len(y_true_shape) < len(y_pred_shape) or (y_true_shape[-1] == 1 and y_pred_shape[-1] > 1)
    return is_binary, is_sparse


def metric_values(name: str, y_true_shape: tuple, y_pred_shape: tuple, **options):
    """A metric by Keras name as its per-sample values, `fn(y_pred, y_true)`; "accuracy"/"acc" resolved from
    the shapes as Keras resolves it. Its mean over a batch is the metric."""
    key = name.lower()
    if key in ("accuracy", "acc"):
        is_binary, is_sparse = is_binary_or_sparse(y_true_shape, y_pred_shape)
        key = "binary_accuracy" if is_binary else "sparse_categorical_accuracy" if is_sparse else \
            "categorical_accuracy"
    key = ALIASES.get(key, key)
    if key in ("top_k_categorical_accuracy", "sparse_top_k_categorical_accuracy"):
        k = int(options.get("k", 5))
        if key.startswith("top"):
            return lambda o, t: _in_top_k(o, t.argmax(dim=-1), k)
        return lambda o, t: _sparse_top_k(o, t, k)
    if key == "binary_accuracy":
        threshold = float(options.get("threshold", 0.5))
        return lambda o, t: _binary_accuracy(o, t, threshold)
    if key in METRICS:
        return METRICS[key]
    if key in ("categorical_crossentropy", "sparse_categorical_crossentropy", "binary_crossentropy",
               "mean_squared_error", "mean_absolute_error"):
        return KerasLoss(key).values  # a loss function used as a metric
    raise ValueError(f"metric {name!r} is not supported")


def get_metric(name: str, y_true_shape: tuple, y_pred_shape: tuple, **options):
    """A metric function by Keras name, returning its batch mean; "accuracy"/"acc" resolved from the shapes."""
    values = metric_values(name, y_true_shape, y_pred_shape, **options)
    if isinstance(getattr(values, "__self__", None), KerasLoss):
        return values.__self__  # its batch mean, as the loss computes it
    return lambda o, t: values(o, t).mean()


ALIASES = {"mse": "mean_squared_error", "mae": "mean_absolute_error", "categorical_acc": "categorical_accuracy",
           "sparse_categorical_acc": "sparse_categorical_accuracy", "top_k_accuracy": "top_k_categorical_accuracy"}
METRICS = {"categorical_accuracy": _categorical_accuracy, "sparse_categorical_accuracy": _sparse_categorical_accuracy,
           "exact_accuracy": _exact_accuracy}
