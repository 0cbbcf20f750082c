"""Checkpoints that survive a disconnect, and resuming from them bit for bit.

After every epoch (and when SIGINT/SIGTERM arrives, after the step in flight) the run's whole state is
written atomically (temp file, flush, fsync, rename): model, optimizer (velocities, iteration count),
every RNG the run draws from (torch, CUDA, numpy, Python, the loader's permutation generator), the
epoch's running sums when mid-epoch, the history, and the run's config. `--resume` loads the newest
checkpoint that is valid for this run; any that fails (truncated, another model, another config) is
skipped with a warning naming it.
"""
from __future__ import annotations

import glob
import os
import random
import re
import signal
import sys

import numpy as np
import torch

from .engine import Callback
from .errors import CheckpointError, TorchportError
from .outputs import OutputError, write_atomic

FORMAT = 1
_NAME = re.compile(r"epoch-(\d{4})(?:-step-(\d{6}))?\.pt$")


class Interrupted(TorchportError):
    """SIGINT / SIGTERM: a checkpoint was written; the exit code is the shell's (130 / 143)."""

    def __init__(self, signum: int, path: str, resume_hint: str):
        self.exit_code = 128 + signum
        name = signal.Signals(signum).name
        super().__init__(f"{name}: checkpoint written to {path}; resume with: {resume_hint}")


def rng_state(loader_generator: torch.Generator | None) -> dict:
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": _numpy_state_to_plain(np.random.get_state())}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if loader_generator is not None:
        state["loader"] = loader_generator.get_state()
    return state


def set_rng_state(state: dict, loader_generator: torch.Generator | None) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(_tuples(state["python"]))
    np.random.set_state(_numpy_state_from_plain(state["numpy"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if loader_generator is not None and "loader" in state:
        loader_generator.set_state(state["loader"])


def _numpy_state_to_plain(s):  # tensors and plain values only, so torch.load(weights_only=True) reads it
    return [s[0], torch.from_numpy(s[1].astype(np.int64)), int(s[2]), int(s[3]), float(s[4])]


def _numpy_state_from_plain(s):
    return (s[0], s[1].numpy().astype(np.uint32), s[2], s[3], s[4])


def _tuples(x):
    return tuple(_tuples(v) for v in x) if isinstance(x, (list, tuple)) else x


class Checkpointer(Callback):
    """Writes a checkpoint after every epoch and on SIGINT/SIGTERM; keeps the newest `keep`.

    `epoch_offset` maps the engine's epoch to the run's (the MNIST tutorial trains in phases);
    `extra()` returns run-specific state to store (e.g. the tutorial's history list).
    """

    def __init__(self, directory: str, config: dict, loader, keep: int = 3, epoch_offset: int = 0,
                 extra=lambda: {}, resume_hint: str = "the same command with --resume"):
        self.directory, self.config, self.loader, self.keep = directory, config, loader, keep
        self.epoch_offset, self.extra, self.resume_hint = epoch_offset, extra, resume_hint
        self.signum = None
        self.epoch = 0
        self.epoch_start_loader_state = None

    # -- signals: finish the step in flight, then checkpoint and stop --
    def on_train_begin(self, logs=None):
        self.previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}

    def on_train_end(self, logs=None):
        self._restore_handlers()

    def _restore_handlers(self):
        for s, h in getattr(self, "previous", {}).items():
            signal.signal(s, h)
        self.previous = {}

    def _on_signal(self, signum, frame):
        self.signum = signum

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        gen = getattr(self.loader, "generator", None)  # before the epoch draws its permutation
        self.epoch_start_loader_state = gen.get_state() if gen is not None else None

    def on_train_batch_end(self, step, aggregator):
        if self.signum is None:
            return
        path = self.save(self.epoch_offset + self.epoch, step + 1, aggregator)
        self._restore_handlers()
        raise Interrupted(self.signum, path, self.resume_hint)

    def on_epoch_end(self, epoch, logs=None):
        self.save(self.epoch_offset + epoch + 1, 0, None)

    # -- files --
    def save(self, epochs_done: int, step: int, aggregator) -> str:
        """`epochs_done` complete epochs, plus `step` steps of the next one (0: at an epoch boundary)."""
        gen = getattr(self.loader, "generator", None)
        state = {
            "format": FORMAT, "config": self.config, "epochs_done": epochs_done, "step": step,
            "model": getattr(self.model, "_orig_mod", self.model).state_dict(),  # unwrap torch.compile
            "optimizer": self.optimizer.state_dict(),
            "rng": rng_state(gen),
            # mid-epoch: the loader's state when this epoch began regenerates its permutation
            "epoch_start_loader": self.epoch_start_loader_state if step else None,
            "aggregator": ({"buffer": aggregator.buffer, "sizes": aggregator.sizes} if aggregator else None),
            **self.extra(),
        }
        name = f"epoch-{epochs_done:04d}" + (f"-step-{step:06d}" if step else "") + ".pt"
        path = os.path.join(self.directory, name)
        try:
            write_atomic(path, lambda f: torch.save(state, f))
        except OutputError as e:
            raise CheckpointError(str(e)) from None
        for old in list_checkpoints(self.directory)[self.keep:]:
            os.remove(old)
        return path


def list_checkpoints(directory: str) -> list[str]:
    """Checkpoint files, newest first (by epochs done, then steps into the next epoch)."""
    found = []
    for p in glob.glob(os.path.join(directory, "epoch-*.pt")):
        m = _NAME.search(os.path.basename(p))
        if m:
            found.append(((int(m.group(1)), int(m.group(2) or 0)), p))
    return [p for _, p in sorted(found, reverse=True)]


def load_latest(directory: str, config: dict, model, optimizer, warn=None) -> dict | None:
    """Load the newest checkpoint valid for this run into `model` and `optimizer`; return its state."""
    warn = warn or (lambda msg: print(f"torchport: warning: {msg}", file=sys.stderr))
    for path in list_checkpoints(directory):
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            if state.get("format") != FORMAT:
                raise CheckpointError("unknown checkpoint format")
            if state["config"] != config:
                diff = sorted(k for k in set(config) | set(state["config"]) if config.get(k) != state["config"].get(k))
                raise CheckpointError(f"made by a run with different settings ({', '.join(diff)})")
            model.load_state_dict(state["model"])
            if optimizer is not None:
                optimizer.load_state_dict(state["optimizer"])
            return state
        except Exception as e:  # truncated, corrupt, another model or config: try the next older one
            reason = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
            warn(f"skipping checkpoint {path}: {reason}")
    return None


def restore(state: dict, loader) -> dict:
    """Put back the RNGs (and, mid-epoch, the loader's epoch-start state); return `fit`'s resume arguments."""
    gen = getattr(loader, "generator", None)
    set_rng_state(state["rng"], gen)
    resume = {"resume_step": state["step"], "resume_aggregator": None}
    if state["step"]:
        if gen is not None and state["epoch_start_loader"] is not None:
            gen.set_state(state["epoch_start_loader"])
        agg = state["aggregator"]
        resume["resume_aggregator"] = (agg["buffer"].to(getattr(loader, "device", "cpu")), list(agg["sizes"]))
    return resume


def resume_run(directory: str | None, resume: bool, config: dict, model, optimizer, loader):
    """`--resume`: load the newest valid checkpoint and say so in one line.

    Returns (state, `fit`'s resume arguments), or (None, {}) when not resuming or nothing valid was found.
    """
    if not (directory and resume):
        return None, {}
    state = load_latest(directory, config, model, optimizer)
    if state is None:
        print(f"No valid checkpoint in {directory}: starting from the beginning")
        return None, {}
    print(f"Resuming after epoch {state['epochs_done']} (+{state['step']} steps) from {directory}")
    return state, restore(state, loader)
