"""A Keras model file -> a checked plan -> a torch module: `plan_file(path)` and `load_keras(path)`.

Reads `.keras` (Keras 3) and legacy `.h5` (Keras 3 and tf.keras 2) files with h5py, json and zipfile:
nothing here needs TensorFlow, and nothing here knows how a model is trained or checked.
"""
from __future__ import annotations

import torch

from ..errors import ModelFileError, TorchportError, described
from . import codegen
from .build import Plan, load_weights, plan_model
from .files import open_model_file
from .summary import summary_text
from .user import load_converters


def plan_file(path: str, dtype: str | None = None, converters=None) -> Plan:
    """Read, check and plan a model file: the plan holds the source, the weights and the summary.
    `dtype` ("float32" / "float64") overrides the file's dtype policy; `converters` are the user's converters
    files (README: Your own layers)."""
    load_converters(converters)
    with open_model_file(path) as kfile:
        try:
            plan = plan_model(kfile, dtype)
            load_weights(plan, kfile)
            plan.model_config, plan.compile_config = kfile.config, kfile.compile_config
            plan.lr_dtype = kfile.learning_rate_dtype()
        except TorchportError:
            raise
        except (KeyError, TypeError, ValueError, IndexError, AttributeError, RecursionError, OverflowError,
                ZeroDivisionError, OSError, RuntimeError) as e:
            # h5py's OSError/RuntimeError: a damaged HDF5 structure (a node, a message, a heap); the rest: a
            # config of the wrong shape somewhere we read it (RecursionError is a RuntimeError, but a config's)
            hdf5 = isinstance(e, (OSError, RuntimeError)) and not isinstance(e, RecursionError)
            what = "corrupt HDF5" if hdf5 else "malformed model config"
            raise ModelFileError(f"{path}: {what} ({described(e, 160)})") from None
    plan.source = codegen.source(plan)
    plan.summary = summary_text(plan)
    return plan


def load_keras(path: str, converters=None) -> torch.nn.Module:
    """The Keras model in `path` as a torch module with its weights, in inference mode; writes nothing.
    `converters`: the files of the user's converters for the model's own layer classes."""
    return plan_file(path, converters=converters).module()
