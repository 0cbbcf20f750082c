"""Keras' MonitorCallback: which way a monitored quantity improves, and by how much it must."""
from __future__ import annotations

from ...callbacks import Callback

# Keras 3 reads a metric's `_direction`; these are the metrics torchport computes, by their History names
UP = ("accuracy", "acc", "auc", "precision", "recall")
DOWN = ("loss", "crossentropy", "mean_squared_error", "mean_absolute_error", "mse", "mae", "huber")


def direction(monitor: str, mode: str) -> str:
    """"min" or "max": `mode`, or for "auto" from the monitored name as Keras 3 infers it (ValueError when
    it cannot say, as Keras raises)."""
    if mode in ("min", "max"):
        return mode
    name = monitor.removeprefix("val_")
    if name == "loss" or name.endswith(DOWN):
        return "min"
    if name.endswith(UP):
        return "max"
    raise ValueError(f"monitor={monitor}: cannot tell whether it should be maximized or minimized; "
                     "pass mode=min or mode=max")


class MonitorCallback(Callback):
    def __init__(self, monitor: str = "val_loss", mode: str = "auto", baseline: float | None = None,
                 min_delta: float = 0.0):
        if mode not in ("auto", "min", "max"):
            mode = "auto"  # Keras warns and falls back to auto
        self.monitor, self.mode, self.best = monitor, mode, baseline
        self.direction = direction(monitor, mode)
        # Keras stores -|min_delta| for a quantity that goes down: improvement is `current - min_delta < best`
        self.min_delta = -abs(min_delta) if self.direction == "min" else abs(min_delta)

    def is_improvement(self, current: float, reference: float | None) -> bool:
        if reference is None:
            return True
        shifted = current - self.min_delta
        return shifted < reference if self.direction == "min" else shifted > reference

    def value(self, logs: dict) -> float | None:
        return (logs or {}).get(self.monitor)  # None: not computed this epoch (--validation-freq)
