"""keras.callbacks.CSVLogger: one row per epoch, `epoch` then the History's keys in sorted order (fixed at
the first epoch; without validation data the `val_` columns are added and read "NA"), written and flushed
as each epoch ends. A resumed run keeps the rows of the epochs it had finished and appends the rest."""
from __future__ import annotations

import csv
import os

from ...callbacks import Callback


class CSVLogger(Callback):
    def __init__(self, filename: str, separator: str = ",", append: bool = False):
        self.filename, self.sep, self.append = filename, separator, append
        self.keys = None
        self.file = self.writer = None
        self.resume_epoch: int | None = None

    def on_train_begin(self, logs=None):
        header = True
        if self.resume_epoch is not None and os.path.exists(self.filename):
            with open(self.filename, newline="") as f:  # the rows of the epochs the checkpoint had finished
                rows = list(csv.reader(f, delimiter=self.sep))
            kept = [r for r in rows[1:] if r and int(r[0]) < self.resume_epoch]
            with open(self.filename, "w", newline="") as f:
                w = csv.writer(f, dialect=self._dialect())
                if rows:
                    w.writerow(rows[0])
                    self.keys = rows[0][1:]
                w.writerows(kept)
            header, mode = not rows, "a"
        elif self.append and os.path.exists(self.filename):
            with open(self.filename) as f:
                header = not f.readline()
            mode = "a"
        else:
            mode = "w"
        self.header = header
        os.makedirs(os.path.dirname(self.filename) or ".", exist_ok=True)
        self.file = open(self.filename, mode, newline="")

    def _dialect(self):
        class Dialect(csv.excel):
            delimiter = self.sep
        return Dialect

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.keys is None:
            self.keys = sorted(logs)
            if not any(k.startswith("val_") for k in self.keys):
                self.keys += [f"val_{k}" for k in self.keys]
        if self.writer is None:
            self.writer = csv.DictWriter(self.file, fieldnames=["epoch", *self.keys], dialect=self._dialect())
            if self.header:
                self.writer.writeheader()
        self.writer.writerow({"epoch": epoch, **{k: logs.get(k, "NA") for k in self.keys}})
        self.file.flush()

    def on_train_end(self, logs=None):
        if self.file is not None and not self.file.closed:
            self.file.close()
        self.writer = None
