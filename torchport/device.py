"""Where tensors live: the tutorial's device helpers and a tensor-resident batch loader."""
from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
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


class HostRows:
    """Rows of an array kept on the host, in one or more parts (memory-mapped shards): `take(idx)` gathers
    rows by index in the order given, across parts, as a numpy array; slicing gives a view of a row range.
    A TensorLoader over HostRows moves each batch to its device as it is drawn (data larger than memory)."""

    def __init__(self, parts: list):
        self.parts = [p for p in parts if len(p)] or list(parts[:1])
        self.offsets = np.cumsum([0, *(len(p) for p in self.parts)])
        self.shape = (int(self.offsets[-1]), *self.parts[0].shape[1:])
        self.dtype, self.ndim = self.parts[0].dtype, len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def take(self, idx) -> np.ndarray:
        idx = np.asarray(idx, np.int64)
        which = np.searchsorted(self.offsets, idx, side="right") - 1
        out = np.empty((len(idx), *self.shape[1:]), self.dtype)
        for k in np.unique(which):
            mine = which == k
            out[mine] = self.parts[k][idx[mine] - self.offsets[k]]
        return out

    def __getitem__(self, rows: slice):
        start, stop, _ = rows.indices(len(self))
        parts = []
        for k, part in enumerate(self.parts):
            lo, hi = max(start - self.offsets[k], 0), min(stop - self.offsets[k], len(part))
            if lo < hi:
                parts.append(part[lo:hi])
        return HostRows(parts or [self.parts[0][:0]])

    def read(self) -> np.ndarray:
        """All rows, in memory."""
        return np.concatenate([np.asarray(p) for p in self.parts])

    def chunks(self, rows: int = 65536):
        """The rows in order, a block at a time (checks that read everything without holding it all)."""
        for part in self.parts:
            for start in range(0, len(part), rows):
                yield np.asarray(part[start:start + rows])


class TensorLoader:
    """Batches from tensors that already sit on the target device.

    The whole dataset is one tensor (kept in its storage dtype, e.g. uint8), or a tuple of them (a model's
    several inputs; several targets and their sample weights). Each epoch draws one permutation from its own
    generator (so a checkpoint can restore it), slices batches by index and applies `transform(x, y)` to the
    batch on the device. The last partial batch is kept, as Keras and torch's DataLoader(drop_last=False) do.
    """

    def __init__(self, x, y, batch_size: int, shuffle: bool = False,
                 transform: Callable | None = None, seed: int | None = None, shard: tuple[int, int] = (0, 1),
                 device: torch.device | None = None):
        if _samples(x) != _samples(y):
            raise ValueError(f"x has {_samples(x)} samples but y has {_samples(y)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.x, self.y = x, y
        resident = [t for t in (*_flat(x), *_flat(y)) if torch.is_tensor(t)]
        self._device = device or (resident[0].device if resident else torch.device("cpu"))
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
        return self._device

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
        if self.shuffle:  # (host rows are gathered on the host: their indices stay there)
            order = torch.randperm(n, generator=self.generator)
            order = order.to(self.device, non_blocking=True) if not self._host() else order
        for start in range(0, n, self.batch_size):
            end = min(start + self.batch_size, n)
            if self.world > 1:
                lo, hi = shard_bounds(end - start, self.rank, self.world)
                self.grad_scale = (hi - lo) * self.world / (end - start)
                start, end = start + lo, start + hi
            if self.shuffle:
                idx = order[start:end]
                x, y = self._take(self.x, idx), self._take(self.y, idx)
            else:
                x, y = self._slice(self.x, start, end), self._slice(self.y, start, end)
            yield self.transform(x, y) if self.transform else (x, y)

    def _host(self) -> bool:
        return any(isinstance(t, HostRows) for t in (*_flat(self.x), *_flat(self.y)))

    def _one(self, a, rows):
        if isinstance(a, HostRows):  # gathered on the host, then moved (pinned on CUDA: an async copy)
            idx = rows.cpu() if torch.is_tensor(rows) else np.arange(*rows.indices(len(a)))
            batch = torch.from_numpy(a.take(idx))
            if self._device.type == "cuda":
                batch = batch.pin_memory()
            return batch.to(self._device, non_blocking=True)
        if torch.is_tensor(rows):
            return a.index_select(0, rows.to(a.device))  # 4x faster than a[idx]
        return a[rows]

    def _take(self, t, idx: torch.Tensor):
        """Rows `idx` of a tensor (or host rows), or of each of a tuple of them."""
        return tuple(self._one(a, idx) for a in t) if isinstance(t, tuple) else self._one(t, idx)

    def _slice(self, t, start: int, end: int):
        rows = slice(start, end)
        return tuple(self._one(a, rows) for a in t) if isinstance(t, tuple) else self._one(t, rows)


def _flat(t) -> tuple:
    return t if isinstance(t, tuple) else (t,)


def _samples(t) -> int:
    return len(_flat(t)[0])
