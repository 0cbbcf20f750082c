"""More than one process: torchrun's environment -> DistributedDataParallel on torchport's one engine.

`torchrun --nproc_per_node N -m torchport train cifar10|mnist ...` (or `... fit ...`) starts N processes;
`setup()` joins them (NCCL on CUDA, gloo on CPU; each process its own GPU). The run is the single-process
run, shared out: every rank draws the epoch's one global permutation from the same seeded generator and
takes a disjoint slice of each global batch (`--batch-size` stays the global batch: an epoch has the same
steps), DDP averages the gradients, each rank's loss is weighted by its share of the global batch (exact
when a last batch splits unevenly), and `SyncedMean` sums the epoch's metrics over all ranks into Keras'
batch-size-weighted means. Rank 0 alone logs, writes outputs and checkpoints; all ranks stop together on
Ctrl-C/SIGTERM. Validation runs whole on every rank (the same numbers everywhere).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from .means import WeightedMean, ratios


@dataclass
class Group:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


SINGLE = Group()
_control = None  # a gloo group for the small host-side agreements (stop flags), whatever the main backend


def is_main() -> bool:
    """Rank 0, or the only process: the one that prints and writes."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def launched() -> bool:
    """Started by torchrun (or any launcher setting WORLD_SIZE > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup(device: torch.device) -> tuple[Group, torch.device]:
    """Join the process group when launched by torchrun; returns the group and this rank's device."""
    global _control
    if not launched():
        return SINGLE, device

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    _control = dist.new_group(backend="gloo")
    return Group(rank, world, local), device


def wrap(model: torch.nn.Module, group: Group, device: torch.device) -> torch.nn.Module:
    if not group.active:
        return model
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module under DDP and torch.compile wrappers (what checkpoints and outputs save)."""
    while True:
        if isinstance(model, DistributedDataParallel):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), torch.nn.Module):  # torch.compile's wrapper
            model = model._orig_mod
        else:
            return model


def any_rank(flag: bool) -> bool:
    """True on every rank if `flag` is true on any (a stop request must stop all ranks at the same step)."""
    if _control is None:
        return flag
    t = torch.tensor([1 if flag else 0])
    dist.all_reduce(t, op=dist.ReduceOp.MAX, group=_control)
    return bool(t.item())


def gather_to_main(obj) -> list | None:
    """Every rank's `obj` (small, picklable: RNG states) as a list on rank 0, None on the others; over the
    gloo control group, so CPU tensors travel whatever the main backend."""
    gathered = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
    dist.gather_object(obj, gathered, dst=0, group=_control)
    return gathered


class SyncedMean(WeightedMean):
    """Keras' weighted mean over every rank's batches: sums and counts all-reduced when read (epoch ends).
    A progress bar reads `running()`: this rank's own means, without a collective only rank 0 would join."""

    def result(self) -> dict[str, float]:
        if self.buffer is None:
            return {}
        w = self.weights()
        totals = torch.cat([(w[:, None] * self.buffer[:len(self.sizes)].detach()).sum(0), w.sum().reshape(1)])
        dist.all_reduce(totals)
        return ratios(dict(zip(self.names, (totals[:-1] / totals[-1]).tolist(), strict=True)))

    def running(self) -> dict[str, float]:
        return super().result()

    # A mid-epoch checkpoint holds the global per-step means (every rank's batches combined); on resume
    # rank 0 carries them and the other ranks start their sums from nothing: the totals are the same.
    def state_dict(self) -> dict:
        if self.buffer is None:
            return super().state_dict()
        w = self.weights()
        sums = w[:, None] * self.buffer[:len(self.sizes)].detach()
        dist.all_reduce(sums)
        dist.all_reduce(w)
        return {"buffer": (sums / w[:, None]).cpu(), "sizes": [int(n) for n in w.tolist()]}

    def load_state_dict(self, state: dict, device=None) -> None:
        super().load_state_dict(state, device)
        if dist.get_rank() != 0 and self.buffer is not None:
            self.buffer.zero_()
            self.sizes = [0] * len(self.sizes)

    def bad_step(self) -> int | None:
        local = super().bad_step()
        return (local if local is not None else 0) if any_rank(local is not None) else None


def mean_for(group: Group) -> type[WeightedMean]:
    """The epoch's aggregator: Keras' weighted mean, summed over every rank under torchrun."""
    return SyncedMean if group.active else WeightedMean


def cleanup() -> None:
    global _control
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    _control = None
