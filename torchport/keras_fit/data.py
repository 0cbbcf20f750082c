"""`torchport fit`'s data: the `.npz` read and checked (no pickles, numbers only, finite, paired), checked
against the model's input and the loss's labels, and made into device-resident loaders as Keras' `fit` batches
(shuffled each epoch, the last partial batch kept, `validation_split` taken from the end before shuffling)."""
from __future__ import annotations

import os
import zipfile

import numpy as np
import torch

from ..device import TensorLoader
from ..errors import DataError, MissingFileError
from ..porting.convert import NCHW


def load_npz(path: str) -> dict[str, np.ndarray]:
    """x_train, y_train and optionally x_test, y_test from an .npz (no pickled objects), checked."""
    if not os.path.isfile(path):
        raise MissingFileError(f"--data {path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except ValueError as e:
        if "allow_pickle" in str(e):
            raise DataError(f"{path}: holds pickled Python objects; refused (save plain numeric arrays)") from None
        raise DataError(f"{path}: not a readable .npz ({e})") from None
    except (OSError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"{path}: not a readable .npz ({e})") from None
    for key in ("x_train", "y_train"):
        if key not in arrays:
            raise DataError(f"{path}: no {key} (it holds {', '.join(sorted(arrays)) or 'nothing'}); "
                            "an .npz for fit holds x_train, y_train and optionally x_test, y_test")
    if ("x_test" in arrays) != ("y_test" in arrays):
        raise DataError(f"{path}: x_test and y_test come together (it has only one of them)")
    for key, a in arrays.items():
        if key not in ("x_train", "y_train", "x_test", "y_test"):
            continue
        if a.dtype.kind not in "fiub" or a.ndim == 0:
            raise DataError(f"{path}: {key} holds {a.dtype} {a.shape}, not an array of numbers")
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            bad = np.flatnonzero(~np.isfinite(a.reshape(len(a), -1)).all(axis=1))
            raise DataError(f"{path}: {key} holds NaN or infinite values (first in sample {bad[0]})")
    for split in ("train", "test"):
        if f"x_{split}" in arrays and len(arrays[f"x_{split}"]) != len(arrays[f"y_{split}"]):
            raise DataError(f"{path}: x_{split} has {len(arrays[f'x_{split}'])} samples but y_{split} has "
                            f"{len(arrays[f'y_{split}'])}")
    return arrays


def check_fits_model(arrays: dict, plan, loss) -> None:
    """Inputs of the model's input shape; labels that fit the loss (range, width, shape)."""
    t, out = plan.inputs[0], plan.outputs[0]
    for split in ("train", "test"):
        if f"x_{split}" not in arrays:
            continue
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        want = t.shape
        if x.ndim != len(want) + 1 or any(w is not None and w != d for w, d in zip(want, x.shape[1:], strict=True)):
            shape = "(N, " + ", ".join("?" if d is None else str(d) for d in want) + ")"
            raise DataError(f"x_{split}: shape {x.shape} does not fit the model's input {shape} (Keras' layout; "
                            "images channels-last)")
        classes = out.shape[-1]
        if loss.name == "sparse_categorical_crossentropy":
            ids = tuple(out.shape[:-1])
            if tuple(y.shape[1:]) not in (ids, (*ids, 1)):
                what = f"one-hot rows of width {y.shape[-1]}" if tuple(y.shape[1:]) == tuple(out.shape) else \
                    f"shape {y.shape}"
                shape = "(N" + "".join(f", {d}" for d in ids) + ")"
                raise DataError(f"y_{split}: {what}, but sparse_categorical_crossentropy wants one integer class id "
                                f"per sample, of shape {shape} (one-hot rows need categorical_crossentropy)")
            labels = y.reshape(len(y), -1) if y.ndim > 1 and y.shape[-1] == 1 else y
            if y.dtype.kind == "f" and not np.array_equal(y, np.round(y)):
                raise DataError(f"y_{split}: sparse_categorical_crossentropy needs integer class ids")
            if labels.size and (labels.min() < 0 or labels.max() >= classes):
                bad = labels.min() if labels.min() < 0 else labels.max()
                raise DataError(f"y_{split}: label {bad:g} outside 0-{classes - 1} for sparse_categorical_crossentropy "
                                f"over {classes} classes")
        elif loss.name == "categorical_crossentropy":
            if y.shape[1:] != tuple(d for d in out.shape):
                what = f"one-hot of width {y.shape[-1]}" if y.ndim == 2 else f"shape {y.shape}"
                raise DataError(f"y_{split}: {what}, but the model outputs {classes} classes "
                                "(categorical_crossentropy wants one-hot rows; integer ids need "
                                "sparse_categorical_crossentropy)")
        else:
            shape = y.shape[1:] if not (y.ndim == 1 and out.shape == (1,)) else (1,)
            if tuple(shape) != tuple(d for d in out.shape):
                raise DataError(f"y_{split}: shape {y.shape} does not fit the model's output (N, "
                                f"{', '.join(map(str, out.shape))}) for {loss.name}")


def _tensors(x: np.ndarray, y: np.ndarray, plan, loss, device):
    if plan.inputs[0].layout == NCHW:  # Keras' NHWC images -> torch's NCHW, in their stored dtype
        x = x.transpose(0, 3, 1, 2)
    xt = torch.from_numpy(np.ascontiguousarray(x)).to(device)
    if loss.name == "sparse_categorical_crossentropy":
        yt = torch.from_numpy(np.asarray(y).reshape(len(y), *y.shape[1:]).astype(np.int64))
    else:
        yt = torch.from_numpy(np.ascontiguousarray(y))
    return xt, yt.to(device)


def make_loaders(arrays, plan, loss, cfg, device, shard=(0, 1)):
    """The training loader (shuffled, sharded under torchrun) and the validation loader (or None) of a
    FitConfig `cfg`."""
    dtype = torch.float64 if plan.dtype == "float64" else torch.float32
    images = plan.inputs[0].layout == NCHW
    sparse = loss.name == "sparse_categorical_crossentropy"
    int_input = plan.inputs[0].dtype.startswith(("int", "uint"))

    def transform(x, y):  # per batch, on the device: Keras casts inputs to the input's dtype
        if not int_input:
            x = x.to(dtype)
            if images:
                x = x.contiguous(memory_format=torch.channels_last)
        return x, (y if sparse else y.to(dtype))

    x, y = arrays["x_train"], arrays["y_train"]
    val = (arrays["x_test"], arrays["y_test"]) if "x_test" in arrays else None
    if val is None and cfg.validation_split:
        split_at = int(np.floor(len(x) * (1.0 - cfg.validation_split)))  # Keras: the last fraction, unshuffled
        if split_at in (0, len(x)):
            raise DataError(f"--validation-split {cfg.validation_split} leaves no samples to train or validate "
                            f"on ({len(x)} in x_train)")
        val, x, y = (x[split_at:], y[split_at:]), x[:split_at], y[:split_at]
    train = TensorLoader(*_tensors(x, y, plan, loss, device), cfg.batch_size, shuffle=cfg.shuffle,
                         transform=transform, seed=cfg.seed, shard=shard)
    val_loader = None if val is None else TensorLoader(*_tensors(*val, plan, loss, device), cfg.batch_size,
                                                       transform=transform)
    return train, val_loader
