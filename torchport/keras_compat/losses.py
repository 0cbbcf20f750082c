"""Keras' `categorical_crossentropy` for a softmax-output model, computed from its logits."""
import torch
import torch.nn.functional as F

EPSILON = 1e-7  # keras.config.epsilon()


def categorical_crossentropy(logits: torch.Tensor, target: torch.Tensor, clipped: bool = False) -> torch.Tensor:
    """Mean over the batch of -sum(y * log softmax(logits)).

    `target` is one-hot (or any distribution) of the logits' shape, or integer class indices.
    Default: the TensorFlow backend's path, which recovers the logits behind a softmax output and takes a
    stable log-softmax. `clipped=True`: the torch/jax backends' path, which renormalises the probabilities,
    clips them to [1e-7, 1 - 1e-7] and takes the log; it differs only where a probability saturates.
    """
    if target.dim() == logits.dim() - 1:
        target = F.one_hot(target.long(), logits.shape[-1]).to(logits.dtype)
    target = target.to(logits.dtype)
    if clipped:
        p = torch.softmax(logits, dim=-1)
        p = p / p.sum(dim=-1, keepdim=True)
        log_p = torch.log(p.clamp(EPSILON, 1.0 - EPSILON))
    else:
        log_p = torch.log_softmax(logits, dim=-1)
    return -(target * log_p).sum(dim=-1).mean()
