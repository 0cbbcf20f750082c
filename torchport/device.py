"""Where tensors live: the tutorial's device helpers and a tensor-resident batch loader."""
from __future__ import annotations

from collections.abc import Callable, Iterator

import torch


def get_default_device() -> torch.device:
    """Pick GPU if available, else CPU (the tutorial's helper)."""
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def to_device(data, device):
    """Move tensors and modules, or lists, tuples and dicts of them, to `device` (other values unchanged)."""
    if isinstance(data, tuple) and hasattr(data, "_fields"):  # a namedtuple takes its fields positionally
        return type(data)(*(to_device(x, device) for x in data))
    if isinstance(data, (list, tuple)):
        return type(data)(to_device(x, device) for x in data)
    if isinstance(data, dict):
        return {k: to_device(v, device) for k, v in data.items()}
    if not hasattr(data, "to"):  # numbers, strings, None (e.g. in an optimizer's state) stay as they are
        return data
    # non_blocking only toward CUDA: a non-blocking copy to the CPU can be read before it has landed
    return data.to(device, non_blocking=torch.device(device).type == "cuda")


class DeviceDataLoader:
    """Wrap a dataloader to move each batch to a device (the tutorial's class)."""

    def __init__(self, dl, device):
        self.dl = dl
        self.device = device

    def __iter__(self):
        for b in self.dl:
            yield to_device(b, self.device)

    def __len__(self):
        return len(self.dl)


def shard_bounds(n: int, rank: int, world: int) -> tuple[int, int]:
    """[start, end) of a rank's contiguous part of a global batch of n samples (sizes differ by <= 1)."""
    base, extra = divmod(n, world)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


class TensorLoader:
    """Batches from tensors that already sit on the target device.

    The whole dataset is one tensor (kept in its storage dtype, e.g. uint8), or a tuple of them (a model's
    several inputs; several targets and their sample weights). Each epoch draws one permutation from its own
    generator (so a checkpoint can restore it), slices batches by index and applies `transform(x, y)` to the
    batch on the device. The last partial batch is kept, as Keras and torch's DataLoader(drop_last=False) do.
    """

    def __init__(self, x, y, batch_size: int, shuffle: bool = False,
                 transform: Callable | None = None, seed: int | None = None, shard: tuple[int, int] = (0, 1)):
        if _samples(x) != _samples(y):
            raise ValueError(f"x has {_samples(x)} samples but y has {_samples(y)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.x, self.y = x, y
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.transform = transform
        # Under torchrun: (rank, world). `batch_size` stays the global batch; this rank takes its slice of
        # each, and `grad_scale` weights its mean by its share (exact when a last batch splits unevenly).
        self.rank, self.world = shard
        self.grad_scale = 1.0
        last = _samples(x) % batch_size or batch_size
        if self.world > 1 and last < self.world:
            raise ValueError(f"the last batch of {last} samples cannot be split over {self.world} processes: "
                             "choose a batch size or sample count whose last batch has as many samples")
        self.generator = torch.Generator()
        self.generator.manual_seed(torch.initial_seed() if seed is None else seed)

    @property
    def device(self) -> torch.device:
        return _first(self.x).device

    @property
    def samples(self) -> int:
        return _samples(self.x)

    def __len__(self) -> int:
        return -(-self.samples // self.batch_size)

    def state_dict(self) -> dict:
        """The permutation generator's state: loaded before an epoch, it redraws that epoch's order."""
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = self.samples
        if self.shuffle:
            order = torch.randperm(n, generator=self.generator).to(self.device, non_blocking=True)
        for start in range(0, n, self.batch_size):
            end = min(start + self.batch_size, n)
            if self.world > 1:
                lo, hi = shard_bounds(end - start, self.rank, self.world)
                self.grad_scale = (hi - lo) * self.world / (end - start)
                start, end = start + lo, start + hi
            if self.shuffle:
                idx = order[start:end]
                x, y = _take(self.x, idx), _take(self.y, idx)
            else:
                x, y = _slice(self.x, start, end), _slice(self.y, start, end)
            yield self.transform(x, y) if self.transform else (x, y)


def _first(t) -> torch.Tensor:
    return t[0] if isinstance(t, tuple) else t


def _samples(t) -> int:
    return len(_first(t))


def _take(t, idx: torch.Tensor):
    """Rows `idx` of a tensor or of each tensor of a tuple (index_select: 4x faster than t[idx])."""
    return tuple(a.index_select(0, idx) for a in t) if isinstance(t, tuple) else t.index_select(0, idx)


def _slice(t, start: int, end: int):
    return tuple(a[start:end] for a in t) if isinstance(t, tuple) else t[start:end]
