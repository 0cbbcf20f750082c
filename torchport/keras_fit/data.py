"""`torchport fit`'s data: the `.npz` read and checked (no pickles, numbers only, finite, paired), laid out by
the model's input and output names, checked against the model's inputs and each output's loss, and made into
device-resident loaders as Keras' `fit` batches (shuffled each epoch, the last partial batch kept,
`validation_split` taken from the end before shuffling).

The arrays, by name: `x_train`/`y_train` for a one-input, one-output model; with several inputs (outputs)
`x_train_<input>` (`y_train_<output>`) for each, by Keras layer name. Validation data as `x_val`/`y_val` or
`x_test`/`y_test` (one of the two), named the same way. `sample_weight`: one weight per training sample
(`--class-weight` makes them from the labels instead, as Keras does).
"""
from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass

import numpy as np
import torch

from ..device import HostRows, TensorLoader
from ..errors import DataError, MissingFileError
from ..keras_compat.compile_loss import Targets, class_ids, class_weight_to_sample_weight
from ..porting.convert import NCHW
from . import arrays


@dataclass
class Split:
    """One split's arrays in the model's order: its inputs, its targets, and the sample weights (or None)."""

    x: list
    y: list
    sample_weight: np.ndarray | None = None
    x_keys: tuple = ()
    y_keys: tuple = ()

    def __len__(self) -> int:
        return len(self.x[0])

    def rows(self, a: int, b: int | None) -> Split:
        sw = None if self.sample_weight is None else self.sample_weight[a:b]
        return Split([x[a:b] for x in self.x], [y[a:b] for y in self.y], sw, self.x_keys, self.y_keys)


def io_names(plan) -> tuple[list[str], list[str]]:
    """Keras' input names (the InputLayers') and output names (the layers that make the outputs)."""
    return [ref[0] for ref in plan.graph.inputs], [ref[0] for ref in plan.graph.outputs]


def keys(plan, split: str) -> tuple[list[str], list[str]]:
    """The .npz names of a split's inputs and targets: x_<split>, or x_<split>_<input> for several inputs."""
    ins, outs = io_names(plan)
    xs = [f"x_{split}"] if len(ins) == 1 else [f"x_{split}_{n}" for n in ins]
    ys = [f"y_{split}"] if len(outs) == 1 else [f"y_{split}_{n}" for n in outs]
    return xs, ys


def load_npz(path: str) -> dict:
    """Every array of `--data` (an .npz, or a folder of .npy shards: arrays.py), memory-mapped where it can be,
    each checked (numbers, finite; read a block at a time). `splits` lays them out."""
    if not os.path.exists(path):
        raise MissingFileError(f"--data {path}: no such file")
    try:
        found = arrays.read(path)
    except ValueError as e:
        if "allow_pickle" in str(e):
            raise DataError(f"{path}: holds pickled Python objects; refused (save plain numeric arrays)") from None
        raise DataError(f"{path}: not a readable .npz ({e})") from None
    except (OSError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"{path}: not a readable .npz ({e})") from None
    for key, a in found.items():
        if a.dtype.kind not in "fiub" or a.ndim == 0:
            raise DataError(f"{path}: {key} holds {a.dtype} {a.shape}, not an array of numbers")
        if a.dtype.kind == "f":
            seen = 0
            for block in arrays.blocks(a):
                finite = np.isfinite(block.reshape(len(block), -1)).all(axis=1)
                if not finite.all():
                    raise DataError(f"{path}: {key} holds NaN or infinite values (first in sample "
                                    f"{seen + int(np.flatnonzero(~finite)[0])})")
                seen += len(block)
    return found


def splits(arrays: dict, plan, path: str = "the data", class_weight: dict | None = None) -> dict[str, Split]:
    """The training split and, if present, the validation split (`x_val`... or `x_test`...), laid out by the
    model's input and output names; a missing, unpaired or extra array, or unequal sample counts, is one line."""
    ins, outs = io_names(plan)
    for what, names in (("inputs", ins), ("outputs", outs)):
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated and len(names) > 1:
            raise DataError(f"the model's {what} include several from layer '{repeated[0]}' (a layer returning "
                            f"several tensors): their arrays cannot be named apart; not supported")
    x_train, y_train = keys(plan, "train")
    val_names = [s for s in ("val", "test") if any(k in arrays for k in sum(keys(plan, s), []))]
    if len(val_names) > 1:
        raise DataError(f"{path}: holds both x_val/y_val and x_test/y_test: keep one validation set")
    known = {*x_train, *y_train, "sample_weight", *(k for s in val_names for k in sum(keys(plan, s), []))}
    extra = sorted(set(arrays) - known)
    if extra:
        single = len(x_train) == 1 and len(y_train) == 1
        want = "x_train, y_train" if single else ", ".join([*x_train, *y_train])
        raise DataError(f"{path}: holds '{extra[0]}', which is none of the model's arrays ({want}, "
                        "optionally sample_weight and the same for x_val/y_val or x_test/y_test)")
    out = {}
    for split in ("train", *val_names):
        xs, ys = keys(plan, split)
        missing = [k for k in (*xs, *ys) if k not in arrays]
        if missing:
            if split == "train":
                raise DataError(f"{path}: no {missing[0]} (it holds {', '.join(sorted(arrays)) or 'nothing'}); "
                                f"an .npz for fit holds {', '.join([*xs, *ys])} and optionally the same for "
                                "x_val/y_val or x_test/y_test")
            raise DataError(f"{path}: {' and '.join(xs + ys)} come together (it has no {missing[0]})")
        sw = arrays.get("sample_weight") if split == "train" else None
        out["train" if split == "train" else "val"] = Split([arrays[k] for k in xs], [arrays[k] for k in ys], sw,
                                                           tuple(xs), tuple(ys))
        named = [(k, arrays[k]) for k in (*xs, *ys)] + ([("sample_weight", sw)] if sw is not None else [])
        first_key, first = named[0]
        for key, a in named[1:]:
            if len(a) != len(first):
                raise DataError(f"{path}: {first_key} has {len(first)} samples but {key} has {len(a)}")
    sw = out["train"].sample_weight
    if sw is not None:
        if sw.ndim not in (1, 2) or (sw.ndim == 2 and sw.shape[1] != 1):
            raise DataError(f"{path}: sample_weight has shape {sw.shape}: one weight per sample, (N,) or (N, 1)")
        if class_weight is not None:
            raise DataError("--class-weight and the data's sample_weight cannot both weight the samples "
                            "(Keras refuses both too)")
    if class_weight is not None:
        if len(y_train) != 1:
            raise DataError("--class-weight weights a one-output model's classes (Keras' class_weight); this model "
                            f"has {len(y_train)} outputs: give sample_weight instead")
        try:
            class_ids(out["train"].y[0])
        except ValueError as e:
            raise DataError(f"--class-weight: {e}") from None
    return out


def check_fits_model(data: dict[str, Split], plan, losses) -> None:
    """Inputs of the model's input shapes; labels that fit each output's loss (range, width, shape)."""
    for split in data.values():
        for key, x, t in zip(split.x_keys, split.x, plan.inputs, strict=True):
            _check_input(key, x, t)
        for key, y, out, loss in zip(split.y_keys, split.y, plan.outputs, losses, strict=True):
            if loss is not None:
                _check_target(key, y, out, loss)


def _check_input(key: str, x: np.ndarray, t) -> None:
    want = t.shape
    if x.ndim != len(want) + 1 or any(w is not None and w != d for w, d in zip(want, x.shape[1:], strict=True)):
        shape = "(N, " + ", ".join("?" if d is None else str(d) for d in want) + ")"
        raise DataError(f"{key}: shape {x.shape} does not fit the model's input {shape} (Keras' layout; "
                        "images channels-last)")


def _check_target(key: str, y: np.ndarray, out, loss) -> None:
    classes = out.shape[-1]
    if loss.name == "sparse_categorical_crossentropy":
        ids = tuple(out.shape[:-1])
        if tuple(y.shape[1:]) not in (ids, (*ids, 1)):
            what = f"one-hot rows of width {y.shape[-1]}" if tuple(y.shape[1:]) == tuple(out.shape) else \
                f"shape {y.shape}"
            shape = "(N" + "".join(f", {d}" for d in ids) + ")"
            raise DataError(f"{key}: {what}, but sparse_categorical_crossentropy wants one integer class id "
                            f"per sample, of shape {shape} (one-hot rows need categorical_crossentropy)")
        labels = y.reshape(len(y), -1) if y.ndim > 1 and y.shape[-1] == 1 else y
        if y.dtype.kind == "f" and not np.array_equal(y, np.round(y)):
            raise DataError(f"{key}: sparse_categorical_crossentropy needs integer class ids")
        if labels.size and (labels.min() < 0 or labels.max() >= classes):
            bad = labels.min() if labels.min() < 0 else labels.max()
            raise DataError(f"{key}: label {bad:g} outside 0-{classes - 1} for sparse_categorical_crossentropy "
                            f"over {classes} classes")
    elif loss.name == "categorical_crossentropy":
        if y.shape[1:] != tuple(d for d in out.shape):
            what = f"one-hot of width {y.shape[-1]}" if y.ndim == 2 else f"shape {y.shape}"
            raise DataError(f"{key}: {what}, but the model outputs {classes} classes "
                            "(categorical_crossentropy wants one-hot rows; integer ids need "
                            "sparse_categorical_crossentropy)")
    else:
        shape = y.shape[1:] if not (y.ndim == 1 and out.shape == (1,)) else (1,)
        if tuple(shape) != tuple(d for d in out.shape):
            raise DataError(f"{key}: shape {y.shape} does not fit the model's output (N, "
                            f"{', '.join(map(str, out.shape))}) for {loss.name}")


def _x_tensor(x, t, device) -> torch.Tensor:
    if isinstance(x, HostRows):
        x = x.read()
    if t.layout == NCHW:  # Keras' NHWC images -> torch's NCHW, in their stored dtype
        x = x.transpose(0, 3, 1, 2)
    return torch.from_numpy(np.require(x, requirements=["C", "W"])).to(device)  # (a read-only map is copied)


def _y_tensor(y: np.ndarray, loss, device) -> torch.Tensor:
    if loss is not None and loss.name == "sparse_categorical_crossentropy":
        return torch.from_numpy(np.asarray(y).astype(np.int64)).to(device)
    return torch.from_numpy(np.require(y, requirements=["C", "W"])).to(device)


def resident_budget(device: torch.device) -> int:
    """Bytes of inputs kept whole on the device: half of what is free there (the host's available memory on
    a CPU, the GPU's free memory on CUDA)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0] // 2
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2
    except (ValueError, OSError, AttributeError):
        return 4 << 30


def make_loaders(data: dict[str, Split], plan, losses, cfg, device, shard=(0, 1), general: bool = False):
    """The training loader (shuffled, sharded under torchrun) and the validation loader (or None) of a
    FitConfig `cfg`. `general`: batches carry `Targets` (several outputs, sample weights) rather than one
    plain target tensor, and a tuple of inputs for several inputs. Inputs larger than `resident_budget` (or
    `cfg.stream`) stay on the host, memory-mapped, each batch gathered there and moved: the same permutation
    and batches as the resident path."""
    dtype = torch.float64 if plan.dtype == "float64" else torch.float32
    everything = [x for split in data.values() for x in split.x]
    stream = cfg.stream or sum(arrays.nbytes(x) for x in everything) > resident_budget(device)
    # (streamed images reach the device in Keras' NHWC layout and are permuted there)
    casts = [(not t.dtype.startswith(("int", "uint")), t.layout == NCHW) for t in plan.inputs]
    sparse = [loss is not None and loss.name == "sparse_categorical_crossentropy" for loss in losses]
    n_out = len(plan.outputs)

    def cast_x(x, floating, images):  # Keras casts inputs to the input's dtype
        if stream and images:
            x = x.permute(0, 3, 1, 2)
        if floating:
            x = x.to(dtype)
            if images:
                x = x.contiguous(memory_format=torch.channels_last)
        return x

    def transform(x, y):  # per batch, on the device
        x = cast_x(x, *casts[0]) if len(casts) == 1 else tuple(cast_x(a, *c) for a, c in zip(x, casts, strict=True))
        if not general:
            return x, (y if sparse[0] else y.to(dtype))
        ys = tuple(t if s else t.to(dtype) for t, s in zip(y[:n_out], sparse, strict=True))
        return x, Targets(ys, y[n_out].to(dtype) if len(y) > n_out else None)

    train, val = Split(**vars(data["train"])), data.get("val")
    if val is None and cfg.validation_split:
        split_at = int(np.floor(len(train) * (1.0 - cfg.validation_split)))  # Keras: the last fraction, unshuffled
        if split_at in (0, len(train)):
            raise DataError(f"--validation-split {cfg.validation_split} leaves no samples to train or validate "
                            f"on ({len(train)} in {train.x_keys[0]})")
        train, val = train.rows(0, split_at), train.rows(split_at, None)
    if cfg.class_weight is not None:  # the training samples' weights (Keras: after validation_split)
        train.sample_weight = class_weight_to_sample_weight(train.y[0], cfg.class_weight,
                                                            np.float64 if plan.dtype == "float64" else np.float32)

    def tensors(split: Split):
        xs = [(x if isinstance(x, HostRows) else HostRows([x])) if stream else _x_tensor(x, t, device)
              for x, t in zip(split.x, plan.inputs, strict=True)]
        ys = [_y_tensor(y, loss, device) for y, loss in zip(split.y, losses, strict=True)]
        x = xs[0] if len(xs) == 1 else tuple(xs)  # several inputs: a tuple, the model's arguments
        if not general:
            return x, ys[0]
        if split.sample_weight is not None:
            ys.append(torch.from_numpy(np.array(split.sample_weight)).to(device))
        return x, tuple(ys)

    train_loader = TensorLoader(*tensors(train), cfg.batch_size, shuffle=cfg.shuffle, transform=transform,
                                seed=cfg.seed, shard=shard, device=device)
    val_loader = None if val is None else TensorLoader(*tensors(val), cfg.batch_size, transform=transform,
                                                       device=device)
    return train_loader, val_loader
