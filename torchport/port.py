"""Port a Keras model file to PyTorch: `load_keras(path)` returns the module; `port(path, out)` writes
model.py, weights.pt, summary.txt and, with TensorFlow installed, parity.md.

Reads `.keras` (Keras 3) and legacy `.h5` (Keras 3 and tf.keras 2) files with h5py, json and zipfile:
TensorFlow is needed only to check the port against Keras.
"""
from __future__ import annotations

import importlib.util

import torch

from .errors import ModelFileError, TorchportError
from .outputs import OutputSet, save_torch, write_atomic
from .porting import codegen
from .porting.build import Plan, load_weights, plan_model
from .porting.files import open_model_file
from .porting.summary import summary_text


def plan_file(path: str, dtype: str | None = None) -> Plan:
    """Read, check and plan a model file: the plan holds the source, the weights and the summary.
    `dtype` ("float32" / "float64") overrides the file's dtype policy."""
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
            detail = (str(e).strip().splitlines() or [""])[0][:160]
            what = "corrupt HDF5" if hdf5 else "malformed model config"
            raise ModelFileError(f"{path}: {what} ({type(e).__name__}: {detail})") from None
    plan.source = codegen.source(plan)
    plan.summary = summary_text(plan)
    return plan


def load_keras(path: str) -> torch.nn.Module:
    """The Keras model in `path` as a torch module with its weights, in inference mode; writes nothing."""
    return plan_file(path).module()


def port(path: str, out: str, parity: bool = True, log=print) -> Plan:
    """Write DIR/model.py, weights.pt, summary.txt (and parity.md when TensorFlow is installed)."""
    plan = plan_file(path)
    with OutputSet(out) as files:
        write_atomic(files.path("model.py"), lambda f: f.write(plan.source.encode()))
        save_torch(files.path("weights.pt"), {k: torch.from_numpy(v.copy()) for k, v in plan.state.items()})
        write_atomic(files.path("summary.txt"), lambda f: f.write(plan.summary.encode()))
        if parity and importlib.util.find_spec("tensorflow") is not None:
            from .parity.model import port_report  # the TensorFlow side (parity imports port: arrows down)
            report = port_report(path, plan)
            write_atomic(files.path("parity.md"), lambda f: f.write(report.encode()))
        elif parity:
            log("torchport: parity skipped: TensorFlow is not installed (pip install 'torchport[keras]' for parity.md)")
    return plan
