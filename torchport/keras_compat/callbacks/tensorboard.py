"""keras.callbacks.TensorBoard's epoch scalars, through `torch.utils.tensorboard`: `<log_dir>/train` gets
`epoch_<name>` for each History entry (and `epoch_learning_rate`), `<log_dir>/validation` the `val_` ones
without the prefix, at step = epoch, as Keras 3 writes them. A resumed run drops the events of the epochs
it redoes (`purge_step`)."""
from __future__ import annotations

import os

from ...callbacks import Callback


class TensorBoard(Callback):
    def __init__(self, log_dir: str = "logs"):
        from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package (TensorFlow brings it)

        self.log_dir, self._writer_class = log_dir, SummaryWriter
        self.writers = {}
        self.resume_epoch: int | None = None

    def on_train_begin(self, logs=None):
        purge = self.resume_epoch
        self.writers = {k: self._writer_class(os.path.join(self.log_dir, k), purge_step=purge)
                        for k in ("train", "validation")}

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        train = {k: v for k, v in logs.items() if not k.startswith("val_")}
        if "learning_rate" not in train and self.optimizer is not None:
            from ..optim import KerasOptimizer
            group = self.optimizer.param_groups[0]
            train["learning_rate"] = KerasOptimizer.current_lr(group) if "lr_dtype" in group else group["lr"]
        for name, value in train.items():
            self.writers["train"].add_scalar(f"epoch_{name}", value, epoch)
        for name, value in logs.items():
            if name.startswith("val_"):
                self.writers["validation"].add_scalar(f"epoch_{name[4:]}", value, epoch)
        for w in self.writers.values():
            w.flush()

    def on_train_end(self, logs=None):
        for w in self.writers.values():
            w.close()
        self.writers = {}
