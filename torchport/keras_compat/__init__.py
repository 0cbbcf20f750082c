"""Keras semantics in torch: the optimizer, loss, metrics, log lines and summary table."""
from .losses import categorical_crossentropy
from .metrics import categorical_accuracy
from .optim import KerasSGD
from .progbar import ProgbarLogger, format_epoch_line
from .summary import summary

__all__ = ["KerasSGD", "categorical_crossentropy", "categorical_accuracy", "ProgbarLogger",
           "format_epoch_line", "summary"]
