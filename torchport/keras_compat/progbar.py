"""Keras 3's training log: `Epoch 1/25`, then the verbose=2 epoch line or a verbose=1 live bar."""
from __future__ import annotations

import sys
import time

from ..callbacks import Callback


def format_step_time(seconds_per_step: float, unit: str = "step") -> str:
    """Keras' Progbar._format_time: s if >= 1 s (or 0), ms if >= 1 ms, else us; no decimals."""
    if seconds_per_step >= 1 or seconds_per_step == 0:
        return f"{seconds_per_step:.0f}s/{unit}"
    if seconds_per_step >= 1e-3:
        return f"{seconds_per_step * 1e3:.0f}ms/{unit}"
    return f"{seconds_per_step * 1e6:.0f}us/{unit}"


def format_metrics(logs: dict) -> str:
    """` - name: value` for each metric sorted by name; 4 decimals above 1e-3, else `.4e`."""
    return "".join(f" - {k}: {v:.4f}" if v > 1e-3 else f" - {k}: {v:.4e}" for k, v in sorted(logs.items()))


def format_epoch_line(step: int, steps: int, elapsed: float, logs: dict) -> str:
    """`1563/1563 - 196s - 125ms/step - accuracy: 0.3834 - loss: 1.6963 - ...` (Keras 3, verbose=2)."""
    width = len(str(steps))
    per_step = elapsed / step if step else 0.0
    return f"{step:{width}d}/{steps} - {elapsed:.0f}s - {format_step_time(per_step)}{format_metrics(logs)}"


class ProgbarLogger(Callback):
    """Prints Keras' epoch header and, by verbosity, a tqdm bar (1) or one line per epoch (2)."""

    def __init__(self, verbose: int = 2, file=None, refresh_seconds: float = 0.5):
        self.verbose = verbose
        self.file = file or sys.stdout
        self.refresh_seconds = refresh_seconds
        self.bar = None

    def on_epoch_begin(self, epoch, logs=None):
        if self.params["epochs"] > 1:  # Keras prints no header for a single-epoch fit
            print(f"Epoch {epoch + 1}/{self.params['epochs']}", file=self.file, flush=True)
        self.start = self.last_refresh = time.perf_counter()
        if self.verbose == 1:
            from tqdm.auto import tqdm
            self.bar = tqdm(total=self.params["steps"], file=self.file, unit="step", leave=True,
                            dynamic_ncols=True)

    def on_train_batch_end(self, step, aggregator):
        if self.bar is None:
            return
        self.bar.update(1)
        now = time.perf_counter()
        if now - self.last_refresh >= self.refresh_seconds:  # reading the running means syncs the device
            self.last_refresh = now
            self.bar.set_postfix_str(format_metrics(aggregator.running()).lstrip(" -"), refresh=False)

    def on_epoch_end(self, epoch, logs=None):
        steps = self.params["steps"]
        elapsed = time.perf_counter() - self.start  # includes validation, as Keras' does
        if self.bar is not None:
            self.bar.set_postfix_str(format_metrics(logs).lstrip(" -"))
            self.bar.close()
            self.bar = None
        else:
            print(format_epoch_line(steps, steps, elapsed, logs), file=self.file, flush=True)

    def on_train_end(self, logs=None):
        if self.bar is not None:  # training stopped mid-epoch (an error, Ctrl-C): leave the terminal clean
            self.bar.close()
            self.bar = None
