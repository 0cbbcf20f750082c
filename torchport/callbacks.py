"""The loop's hooks, as Keras lays them out in its own `callbacks/`: `Callback`, and `History` apart from
the loop. Logging (`keras_compat.progbar`) and checkpoints (`checkpoint.Checkpointer`) are callbacks too."""
from __future__ import annotations


class Callback:
    """Keras-style hooks. `fit` sets `self.model`, `self.optimizer` and `self.params` first.

    `on_train_end` runs however training ends (normally, on an error, on Ctrl-C), so a callback that
    installs something (a signal handler, a progress bar) takes it down there.
    """

    model = optimizer = None
    params: dict = {}
    after_history = False  # called after History (a checkpoint that stores this epoch's History)

    def on_train_begin(self, logs=None): ...
    def on_epoch_begin(self, epoch, logs=None): ...
    def on_train_batch_end(self, step, aggregator): ...
    def on_epoch_end(self, epoch, logs=None): ...
    def on_train_end(self, logs=None): ...


class History(Callback):
    """Per-epoch records plus Keras' `history` dict of lists."""

    def __init__(self):
        self.epoch: list[int] = []
        self.history: dict[str, list[float]] = {}

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(v)

    @property
    def records(self) -> list[dict[str, float]]:
        return [{k: v[i] for k, v in self.history.items()} for i in range(len(self.epoch))]

    def state_dict(self) -> dict:
        return {"epoch": list(self.epoch), "history": {k: list(v) for k, v in self.history.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.history = list(state["epoch"]), {k: list(v) for k, v in state["history"].items()}
