"""Keras' categorical accuracy."""
import torch


def categorical_accuracy(outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Batch mean of argmax(y_pred) == argmax(y_true); one-hot or integer targets.

    torch.argmax, like tf.argmax, returns the first (smallest) index of tied maxima.
    """
    labels = target.argmax(dim=-1) if target.dim() == outputs.dim() else target
    return (outputs.argmax(dim=-1) == labels).to(outputs.dtype).mean()
