"""keras.callbacks.ReduceLROnPlateau, as Keras 3.15 writes it: the learning rate is logged as `learning_rate`
each epoch (before any change: it lands in the History), `wait` counts epochs without improvement outside
the cooldown, and after `patience` of them the rate becomes max(lr * factor, min_lr) if it was above
float32(min_lr), followed by `cooldown` epochs that do not count."""
from __future__ import annotations

import numpy as np

from ..optim import KerasOptimizer
from .monitor import MonitorCallback


class ReduceLROnPlateau(MonitorCallback):
    def __init__(self, monitor: str = "val_loss", factor: float = 0.1, patience: int = 10, verbose: int = 0,
                 mode: str = "auto", min_delta: float = 1e-4, cooldown: int = 0, min_lr: float = 0.0):
        if factor >= 1.0:
            raise ValueError(f"factor={factor}: ReduceLROnPlateau does not support a factor >= 1.0")
        super().__init__(monitor, mode, None, min_delta)
        self.factor, self.patience, self.verbose = factor, patience, verbose
        self.cooldown, self.min_lr = cooldown, min_lr
        self.cooldown_counter = self.wait = 0
        self.resumed = False

    def on_train_begin(self, logs=None):
        if not self.resumed:
            self.best, self.cooldown_counter, self.wait = None, 0, 0

    def _lr(self) -> float:
        return KerasOptimizer.current_lr(self.optimizer.param_groups[0])

    def on_epoch_end(self, epoch, logs=None):
        logs["learning_rate"] = self._lr()
        current = self.value(logs)
        if current is None:
            return
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self.is_improvement(current, self.best):
            self.best, self.wait = current, 0
        elif self.cooldown_counter <= 0:
            self.wait += 1
            if self.wait >= self.patience:
                old = self._lr()
                if old > np.float32(self.min_lr):
                    new = max(old * self.factor, self.min_lr)
                    for group in self.optimizer.param_groups:
                        group["lr"] = new
                    if self.verbose > 0:
                        print(f"\nEpoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to {new}.")
                    self.cooldown_counter, self.wait = self.cooldown, 0

    def state_dict(self) -> dict:
        return {"best": self.best, "cooldown_counter": self.cooldown_counter, "wait": self.wait}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.cooldown_counter, self.wait = state["best"], state["cooldown_counter"], state["wait"]
        self.resumed = True
