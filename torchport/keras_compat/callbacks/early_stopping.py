"""keras.callbacks.EarlyStopping, as Keras 3.15 writes it: `wait` counts epochs since the last improvement
(`patience` of them stop the run, never at the first epoch), `baseline` must be beaten for an improvement
to reset the count, epochs before `start_from_epoch` are not looked at, and `restore_best_weights` puts
back the best epoch's weights at the end (the first looked-at epoch's when none improved)."""
from __future__ import annotations

import copy

from .monitor import MonitorCallback


class EarlyStopping(MonitorCallback):
    def __init__(self, monitor: str = "val_loss", min_delta: float = 0.0, patience: int = 0, verbose: int = 0,
                 mode: str = "auto", baseline: float | None = None, restore_best_weights: bool = False,
                 start_from_epoch: int = 0):
        super().__init__(monitor, mode, None, min_delta)
        self.patience, self.verbose, self.baseline = patience, verbose, baseline
        self.restore_best_weights, self.start_from_epoch = restore_best_weights, start_from_epoch
        self.wait = self.stopped_epoch = self.best_epoch = 0
        self.best_weights = None
        self.resumed = False

    def on_train_begin(self, logs=None):
        if self.resumed:  # the state came from a checkpoint: a run it had stopped stays stopped
            self.model.stop_training = self.stopped_epoch > 0
            return
        self.wait = self.stopped_epoch = self.best_epoch = 0
        self.best = self.best_weights = None

    def on_epoch_end(self, epoch, logs=None):
        current = self.value(logs)
        if current is None or epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights, self.best_epoch = self._weights(), epoch
        self.wait += 1
        if self.is_improvement(current, self.best):
            self.best, self.best_epoch = current, epoch
            if self.restore_best_weights:
                self.best_weights = self._weights()
            if self.baseline is None or self.is_improvement(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose > 0:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose > 0:
                print(f"Restoring model weights from the end of the best epoch: {self.best_epoch + 1}.")
            self.model.load_state_dict(self.best_weights)

    def _weights(self) -> dict:
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def state_dict(self) -> dict:
        return {"wait": self.wait, "stopped_epoch": self.stopped_epoch, "best_epoch": self.best_epoch,
                "best": self.best, "best_weights": copy.copy(self.best_weights)}

    def load_state_dict(self, state: dict) -> None:
        self.wait, self.stopped_epoch, self.best_epoch = state["wait"], state["stopped_epoch"], state["best_epoch"]
        self.best, self.best_weights = state["best"], state["best_weights"]
        self.resumed = True
