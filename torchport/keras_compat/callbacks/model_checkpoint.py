"""keras.callbacks.ModelCheckpoint(save_best_only=True): after each epoch whose monitored value improves on
the best so far (Keras' MonitorCallback test, min_delta 0, `initial_value_threshold` as the first best),
`save(path)` writes the model there (torchport fit: Keras-loadable weights, `model.load_weights` reads them)."""
from __future__ import annotations

from collections.abc import Callable

from .monitor import MonitorCallback


class SaveBest(MonitorCallback):
    def __init__(self, save: Callable[[str], None], filepath: str, monitor: str = "val_loss", mode: str = "auto",
                 verbose: int = 0, initial_value_threshold: float | None = None):
        super().__init__(monitor, mode, initial_value_threshold, 0.0)
        self.save, self.filepath, self.verbose = save, filepath, verbose

    def on_epoch_end(self, epoch, logs=None):
        current = self.value(logs)
        if current is None or not self.is_improvement(current, self.best):
            if current is not None and self.verbose > 0:
                print(f"\nEpoch {epoch + 1}: {self.monitor} did not improve from {self.best:.5f}")
            return
        if self.verbose > 0:
            was = "inf" if self.best is None else f"{self.best:.5f}"
            print(f"\nEpoch {epoch + 1}: {self.monitor} improved from {was} to {current:.5f}, saving model to "
                  f"{self.filepath}")
        self.best = current
        self.save(self.filepath)

    def state_dict(self) -> dict:
        return {"best": self.best}

    def load_state_dict(self, state: dict) -> None:
        self.best = state["best"]
