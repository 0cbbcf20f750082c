"""Checkpoints that survive a disconnect, and resuming from them bit for bit.

After every epoch (and when SIGINT/SIGTERM arrives, after the step in flight) the run's whole state is
written atomically (temp file, flush, fsync, rename): model, optimizer (velocities, iteration count), the
RNGs the run draws from (torch's CPU generator, the training GPU's, numpy, Python, the loader's
permutation), the epoch's running sums when mid-epoch, the history, and the run's config. Every tensor is
saved on the CPU, so a checkpoint written on a Colab GPU loads on a laptop. `--resume` loads the newest
checkpoint that is valid for this run; any that fails (truncated, another model, another config) is
skipped with a warning naming it, and leaves the model and optimizer as they were.
"""
from __future__ import annotations

import copy
import dataclasses
import glob
import os
import random
import re
import signal
import sys

import numpy as np
import torch

from .callbacks import Callback
from .device import to_device
from .distributed import SINGLE, any_rank, gather_to_main, unwrap
from .engine import ResumePoint
from .errors import CheckpointError, TorchportError, described, first_line
from .outputs import OutputError, save_torch

FORMAT = 2
_NAME = re.compile(r"epoch-(\d{4})(?:-step-(\d{6}))?\.pt$")


class Interrupted(TorchportError):
    """SIGINT / SIGTERM: a checkpoint was written; the exit code is the shell's (130 / 143)."""

    def __init__(self, signum: int, path: str, resume_hint: str):
        self.exit_code = 128 + signum
        name = signal.Signals(signum).name
        super().__init__(f"{name}: checkpoint written to {path}; resume with: {resume_hint}")


def run_identity(cfg) -> dict:
    """The settings a checkpoint must share with the run that resumes it: the config dataclass's fields
    that take part in comparison (output folders, verbosity and the like are declared `compare=False`)."""
    return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.compare}


def rng_state(device: torch.device) -> dict:
    """torch's CPU generator, numpy's, Python's, and the training GPU's (only that one: a machine with
    fewer GPUs can resume, and a CPU run never creates a CUDA context)."""
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": _numpy_state_to_plain(np.random.get_state())}
    if torch.device(device).type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(_tuples(state["python"]))
    np.random.set_state(_numpy_state_from_plain(state["numpy"]))
    if torch.device(device).type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _numpy_state_to_plain(s):  # tensors and plain values only, so torch.load(weights_only=True) reads it
    return [s[0], torch.from_numpy(s[1].astype(np.int64)), int(s[2]), int(s[3]), float(s[4])]


def _numpy_state_from_plain(s):
    return (s[0], s[1].numpy().astype(np.uint32), s[2], s[3], s[4])


def _tuples(x):
    return tuple(_tuples(v) for v in x) if isinstance(x, (list, tuple)) else x


def _loader_state(loader) -> dict | None:
    """A loader's own state (TensorLoader: its permutation generator); None for loaders without one."""
    return loader.state_dict() if hasattr(loader, "state_dict") else None


class Checkpointer(Callback):
    """Writes a checkpoint after every epoch and on SIGINT/SIGTERM; keeps the newest `keep`.

    `epoch_offset` maps the engine's epoch to the run's (the MNIST tutorial trains in phases);
    `extra()` returns run-specific state to store (e.g. the history).
    """

    after_history = True  # this epoch's History entry (and the callbacks' states) go into the checkpoint

    def __init__(self, directory: str, config: dict, loader, keep: int = 3, epoch_offset: int = 0,
                 extra=lambda: {}, resume_hint: str = "the same command with --resume", group=None):
        self.directory, self.config, self.loader, self.keep = directory, config, loader, keep
        self.epoch_offset, self.extra, self.resume_hint = epoch_offset, extra, resume_hint
        self.group = group or SINGLE  # under torchrun rank 0 writes; every rank stops at the same step
        self.signum = None
        self.epoch = 0
        self.epoch_start_loader = None
        self.previous: dict = {}

    # -- signals: finish the step in flight, then checkpoint and stop --
    def on_train_begin(self, logs=None):
        self.previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}

    def on_train_end(self, logs=None):  # runs however training ends: the user's handlers come back
        for s, h in self.previous.items():
            signal.signal(s, h)
        self.previous = {}

    def _on_signal(self, signum, frame):
        self.signum = signum

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        self.epoch_start_loader = _loader_state(self.loader)  # before the epoch draws its permutation

    def on_train_batch_end(self, step, aggregator):
        if self.group.active:
            if not any_rank(self.signum is not None):
                return
            self.signum = self.signum or signal.SIGTERM
        elif self.signum is None:
            return
        point = ResumePoint(self.epoch_offset + self.epoch, step + 1, aggregator.state_dict(),
                            self.epoch_start_loader, self._scaler_state())
        raise Interrupted(self.signum, self.save(point), self.resume_hint)

    def on_epoch_end(self, epoch, logs=None):
        self.save(ResumePoint(self.epoch_offset + epoch + 1, loader=_loader_state(self.loader),
                              scaler=self._scaler_state()))

    def _scaler_state(self) -> dict | None:
        scaler = self.params.get("grad_scaler")
        return scaler.state_dict() if scaler is not None and scaler.is_enabled() else None

    # -- files --
    def save(self, point: ResumePoint) -> str:
        name = f"epoch-{point.epoch:04d}" + (f"-step-{point.step:06d}" if point.step else "") + ".pt"
        path = os.path.join(self.directory, name)
        rng = rng_state(next(self.model.parameters()).device)
        rank_rngs = gather_to_main(rng) if self.group.active else None  # each rank draws its own dropout masks
        if not self.group.main:
            return path  # rank 0 writes it
        state = {
            "format": FORMAT, "config": self.config,
            "model": unwrap(self.model).state_dict(),  # under DDP and torch.compile wrappers
            "optimizer": self.optimizer.state_dict() if self.optimizer is not None else None,
            "rng": rng,
            **({"rank_rngs": rank_rngs} if rank_rngs is not None else {}),
            "resume": dataclasses.asdict(point),
            **self.extra(),
        }
        try:
            save_torch(path, state)
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


def _check_parts(state: dict, needs: dict) -> None:
    """The parts read after the weights are loaded (resume point, RNGs, and what the run `needs`, each with its
    validator) are checked first: a malformed one skips the checkpoint instead of failing half-loaded."""
    try:
        point = ResumePoint(**state["resume"])
        if not all(isinstance(v, int) and v >= 0 for v in (point.epoch, point.step)):
            raise ValueError("epoch and step must be whole numbers")
        rng = state["rng"]
        if not (torch.is_tensor(rng["torch"]) and rng["torch"].dtype == torch.uint8):
            raise ValueError("torch generator state")
        random.Random().setstate(_tuples(rng["python"]))
        np.random.RandomState().set_state(_numpy_state_from_plain(rng["numpy"]))
    except Exception as e:
        raise CheckpointError(f"its resume point or RNG state is malformed ({described(e)})") from None
    for name, validate in needs.items():
        try:
            validate(state[name])
        except Exception as e:
            raise CheckpointError(f"its {name} is missing or malformed ({described(e)})") from None


def _load_into(state: dict, config: dict, model, optimizer, needs: dict | None = None) -> None:
    """Check the checkpoint, then load it; on any failure the model and optimizer are left as they were."""
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError("unknown checkpoint format")
    if state["config"] != config:
        diff = sorted(k for k in set(config) | set(state["config"]) if config.get(k) != state["config"].get(k))
        raise CheckpointError(f"made by a run with different settings ({', '.join(diff)})")
    _check_parts(state, needs or {})
    before = copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict()) if optimizer else None
    try:
        model.load_state_dict(state["model"])
        if optimizer is not None:
            device = next(model.parameters()).device
            optimizer.load_state_dict(to_device(state["optimizer"], device))
    except BaseException:
        model.load_state_dict(before[0])
        if optimizer is not None:
            optimizer.load_state_dict(before[1])
        raise


def load_latest(directory: str, config: dict, model, optimizer, warn=None, needs: dict | None = None) -> dict | None:
    """Load the newest checkpoint valid for this run into `model` and `optimizer`; return its state.
    `needs` maps the run's own parts of a checkpoint (e.g. "history") to a function that raises on a bad one."""
    warn = warn or (lambda msg: print(f"torchport: warning: {msg}", file=sys.stderr))
    for path in list_checkpoints(directory):
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            _load_into(state, config, model, optimizer, needs)
            return state
        except Exception as e:  # truncated, corrupt, another model or config: try the next older one
            warn(f"skipping checkpoint {path}: {first_line(e)}")
    return None


def resume_run(directory: str | None, resume: bool, config: dict, model, optimizer, needs: dict | None = None,
               group=SINGLE):
    """`--resume`: load the newest valid checkpoint, put its RNGs back and say so in one line.

    Returns (state, ResumePoint), or (None, None) when not resuming or nothing valid was found.
    """
    if not (directory and resume):
        return None, None
    state = load_latest(directory, config, model, optimizer, needs=needs)
    if state is None:
        print(f"No valid checkpoint in {directory}: starting from the beginning")
        return None, None
    point = ResumePoint(**state["resume"])
    if group.main:
        print(f"Resuming after epoch {point.epoch} (+{point.step} steps) from {directory}")
    rng = state["rng"]
    if group.active:  # under torchrun: this rank's own generators, as they were when the checkpoint was taken
        ranks = state.get("rank_rngs") or []
        if len(ranks) == group.world:
            rng = ranks[group.rank]
        elif group.main:
            print(f"torchport: warning: the checkpoint was written by {len(ranks) or 1} process(es), this run has "
                  f"{group.world}: the training draws (dropout) will differ from the interrupted run's")
    set_rng_state(rng, next(model.parameters()).device)
    return state, point


def _states(states) -> None:
    if not isinstance(states, dict) or not all(isinstance(v, dict) for v in states.values()):
        raise ValueError("not a mapping of callback states")


def keras_checkpoints(cfg, config: dict, model, optimizer, train_loader, history, group=None, stateful=()):
    """A Keras-style run's checkpoints (`train cifar10`, `fit`): the newest valid one loaded when `cfg.resume`
    asks (its History too, and each of the `stateful` callbacks' state, by class: patience counters, best
    values; a file-writing callback learns the epoch it resumes at), and the callback writing one after every
    epoch when `cfg.checkpoint_dir` is set. Returns (the ResumePoint or None, the callbacks)."""
    stateful = list(stateful)
    needs = {"history": lambda h: type(history)().load_state_dict(h)}  # loads into a throwaway History
    if stateful:
        needs["callbacks"] = _states
    state, resume = resume_run(cfg.checkpoint_dir, cfg.resume, config, model, optimizer, needs, group or SINGLE)
    if state is not None:
        history.load_state_dict(state["history"])
        saved = state.get("callbacks", {})
        for cb in stateful:
            if type(cb).__name__ in saved and hasattr(cb, "load_state_dict"):
                cb.load_state_dict(saved[type(cb).__name__])
            if hasattr(cb, "resume_epoch"):
                cb.resume_epoch = resume.epoch  # (a CSV log keeps the rows of the finished epochs)
    callbacks = []
    if cfg.checkpoint_dir:
        callbacks.append(Checkpointer(cfg.checkpoint_dir, config, train_loader, cfg.keep_checkpoints,
                                      extra=lambda: {"history": history.state_dict(),
                                                     **({"callbacks": {type(cb).__name__: cb.state_dict()
                                                                       for cb in stateful if hasattr(cb, "state_dict")}}
                                                        if stateful else {})},
                                      resume_hint=cfg.resume_hint, group=group))
    return resume, callbacks
