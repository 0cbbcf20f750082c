"""An Embedding's gradient as Keras' TensorFlow backend holds it: one row per looked-up id (`tf.IndexedSlices`),
where torch's embedding backward writes the dense sum over repeated ids.

Keras' optimizers apply their elementwise ops to those rows before the rows are added into a variable
(keras/src/backend/tensorflow/sparse.py): `ops.square(g)` squares each looked-up row, so a token seen twice
in a batch with gradients 1 and 2 adds 1 + 4 = 5 to Adam's second moment, where the square of the dense
gradient adds 9. Linear ops give the same either way; the ones that differ are the square (Adam, AdamW,
Nadam, RMSprop, Adagrad, Adadelta, clipnorm's and global_clipnorm's norms), the absolute value (Adamax) and
the clip (clipvalue). Measured on Embedding + Flatten trained 2 epochs with Adam in float64: the dense
square is 5.8e-3 (relative loss) away from Keras; these rows agree to 1e-15 (parity_tests/test_fit_parity.py).

`track(model)` records, for every `nn.Embedding`, the ids and the gradient of its output in the backward
pass (a tensor hook: the gradient of output row i is the gradient of weight row ids[i]); a Keras optimizer
reads them with `rows_of(p)` and clears them at `zero_grad`. `torchport fit` tracks a ported model when its
optimizer has such an op; a plain torch training loop never sees any of this.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

_ATTR = "_keras_rows"  # on the Embedding's weight: the (ids, row gradients) recorded since the last zero_grad


@dataclass
class Rows:
    """The looked-up rows of one variable's gradient: `values[i]` belongs to row `indices[i]`."""

    indices: torch.Tensor  # (K,) int64
    values: torch.Tensor   # (K, D)
    like: torch.Tensor     # the variable

    def sum(self, fn=None) -> torch.Tensor:
        """The dense gradient of `fn(indices, values)` (each row's values first, then added up per id), as
        TensorFlow densifies an IndexedSlices. index_put_ with accumulate: no host sync, and on CUDA a sorted,
        deterministic sum (index_add_ would use atomics)."""
        values = self.values if fn is None else fn(self.indices, self.values)
        return torch.zeros_like(self.like).index_put_((self.indices,), values.to(self.like.dtype), accumulate=True)

    def map(self, fn) -> Rows:
        return Rows(self.indices, fn(self.values), self.like)


def track(model: torch.nn.Module, dense=()) -> list:
    """Record every nn.Embedding's looked-up rows in the backward pass; returns the hook handles. `dense`: the
    weights whose Keras gradient is dense anyway (a regularized embedding: TensorFlow adds the penalty's dense
    gradient to the rows, which makes the sum a dense tensor)."""
    handles = []
    for module in model.modules():
        if isinstance(module, torch.nn.Embedding) and not any(module.weight is p for p in dense):
            setattr(module.weight, _ATTR, [])
            handles.append(module.register_forward_hook(_on_lookup))
    return handles


def _on_lookup(module, inputs, out):
    if not (torch.is_grad_enabled() and out.requires_grad):
        return
    ids = inputs[0].reshape(-1)
    weight = module.weight

    def record(grad):
        getattr(weight, _ATTR).append((ids, grad.reshape(-1, grad.shape[-1])))

    out.register_hook(record)


def tracked(p: torch.Tensor) -> bool:
    return hasattr(p, _ATTR)


def rows_of(p: torch.Tensor) -> Rows | None:
    """The rows recorded for `p` since the last clear (every call of a shared Embedding), or None."""
    records = getattr(p, _ATTR, None)
    if not records:
        return None
    if len(records) == 1:
        return Rows(records[0][0], records[0][1], p)
    return Rows(torch.cat([r[0] for r in records]), torch.cat([r[1] for r in records]), p)


def clear(params) -> None:
    for p in params:
        if hasattr(p, _ATTR):
            getattr(p, _ATTR).clear()
