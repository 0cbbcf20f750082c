"""Writing results: atomic files (temp, fsync, rename) so an interrupted run leaves no partial output."""
from __future__ import annotations

import json
import os
import tempfile

import torch

from .device import to_device
from .errors import TorchportError, UsageError


class OutputError(TorchportError):
    """An output or checkpoint location that cannot be written."""


def check_writable(path: str, option: str = "--out") -> None:
    """Fail before any work if `path` (or the nearest folder that exists above it) cannot be written."""
    probe = os.path.abspath(path)
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        raise UsageError(f"{option} {path}: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UsageError(f"{option} {path}: {probe} is not writable")


def write_atomic(path: str, write) -> None:
    """`write(f)` into a temp file beside `path`, flush, fsync, then rename over `path`."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        os.unlink(tmp)
        raise OutputError(f"cannot write {path}: {e.strerror}") from None
    except BaseException:
        os.unlink(tmp)
        raise


class OutputSet:
    """All-or-nothing outputs: files written inside the `with` are removed again if it fails."""

    def __init__(self, folder: str):
        self.folder = folder
        self.created_folder = not os.path.exists(folder)
        self.written: list[str] = []

    def path(self, name: str) -> str:
        p = os.path.join(self.folder, name)
        self.written.append(p)
        return p

    def __enter__(self):
        return self

    def __exit__(self, kind, value, tb):
        if kind is not None:
            for p in self.written:
                if os.path.exists(p):
                    os.unlink(p)
            if self.created_folder and os.path.isdir(self.folder) and not os.listdir(self.folder):
                os.rmdir(self.folder)
        return False


def save_torch(path: str, obj) -> None:
    """torch.save with every tensor moved to the CPU first: a file written on a GPU loads on a laptop."""
    write_atomic(path, lambda f: torch.save(to_device(obj, "cpu"), f))


def write_json(path: str, data) -> None:
    write_atomic(path, lambda f: f.write((json.dumps(data, indent=2) + "\n").encode()))


def write_plot(path: str, series: dict[str, list[float]], ylabel: str, title: str, first_epoch: int = 1):
    """`plot_series` as a PNG file."""
    fig = plot_series(series, ylabel, title, first_epoch)
    write_atomic(path, lambda f: fig.savefig(f, format="png", dpi=100))
    return fig


def plot_series(series: dict[str, list[float]], ylabel: str, title: str, first_epoch: int = 1):
    """One line plot of each series against epochs numbered from `first_epoch`, as the log's "Epoch 1/25"
    counts them (the MNIST tutorial's history starts with the evaluation before training: epoch 0).
    Drawn on a bare Figure, not pyplot: a notebook calling this keeps its own plotting backend."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for label, values in series.items():
        ax.plot(range(first_epoch, first_epoch + len(values)), values, "-x", label=label)
    ax.set_xlabel("epoch" if first_epoch else "epoch (0: before training)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if len(series) > 1:
        ax.legend()
    return fig
