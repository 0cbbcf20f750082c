"""Running means over an epoch: Keras' batch-size-weighted one, and the PyTorch tutorial's unweighted one.

Each step's batch means are copied into one preallocated device buffer (a single small copy, no host
sync); the means are computed when `result()` is read: once per epoch, or when a progress bar refreshes.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch

# A column named `<metric>` + RATIO is the denominator of the column `<metric>`: that metric is reported as the
# ratio of the two means (Keras' Mean under sample weights: sum(value * weight) / sum(weight) over the epoch).
RATIO = "/weights"


def ratios(means: dict[str, float]) -> dict[str, float]:
    """The means with each ratio metric divided by its denominator column (which is left out)."""
    out = {}
    for name, value in means.items():
        if name.endswith(RATIO):
            continue
        den = means.get(name + RATIO)
        out[name] = value if den is None else (value / den if den else 0.0)  # Keras' divide_no_nan
    return out


class WeightedMean:
    """Keras' aggregation: sum(value_b * n_b) / sum(n_b) over the batches seen so far."""

    def __init__(self, names: Iterable[str], steps: int = 0):
        self.names = list(names)
        self.capacity = max(int(steps), 1)
        self.buffer: torch.Tensor | None = None
        self.sizes: list[int] = []

    def update(self, values: torch.Tensor, n: int, step: int) -> None:
        """`values`: 1-D tensor of this batch's means, in the order of `names` (loss first)."""
        if self.buffer is None:
            self.buffer = values.new_empty((self.capacity, len(self.names)))
        elif step >= len(self.buffer):
            self.buffer = torch.cat([self.buffer, torch.empty_like(self.buffer)])
        self.buffer[step] = values
        self.sizes.append(n)

    def weights(self) -> torch.Tensor:
        return torch.tensor(self.sizes, dtype=self.buffer.dtype, device=self.buffer.device)

    def bad_step(self) -> int | None:
        """The first step whose loss was not finite, or None. Reads the device (a sync)."""
        if self.buffer is None:
            return None
        bad = (~torch.isfinite(self.buffer[:len(self.sizes), 0])).nonzero()
        return int(bad[0, 0]) if len(bad) else None

    def running(self) -> dict[str, float]:
        """The means so far, for a progress bar (the same as `result()` in one process)."""
        return self.result()

    def result(self) -> dict[str, float]:
        if self.buffer is None:
            return {}
        w = self.weights()
        # an elementwise product and a sum, not `w @ buffer`: a GEMM could run in TF32 on a GPU
        means = (w[:, None] * self.buffer[:len(self.sizes)].detach()).sum(0) / w.sum()
        return ratios(dict(zip(self.names, means.tolist(), strict=True)))

    # -- a checkpoint taken mid-epoch stores the sums so far (CPU tensors: the file loads anywhere) --
    def state_dict(self) -> dict:
        return {"buffer": None if self.buffer is None else self.buffer.detach().cpu(), "sizes": list(self.sizes)}

    def load_state_dict(self, state: dict, device=None) -> None:
        buffer = state["buffer"]
        self.buffer = None if buffer is None else buffer.to(device).clone()
        self.sizes = list(state["sizes"])


class BatchMean(WeightedMean):
    """The PyTorch tutorial's aggregation: the unweighted mean of per-batch values."""

    def weights(self) -> torch.Tensor:
        return torch.ones(len(self.sizes), dtype=self.buffer.dtype, device=self.buffer.device)
