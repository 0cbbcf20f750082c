"""A Keras model file -> its config and its weights, with h5py, json and zipfile alone (no TensorFlow).

Two formats, as Keras 3.15 and tf.keras 2.21 write them:
- Keras 3 `.keras`: a zip of `config.json`, `metadata.json` and `model.weights.h5`, read in memory (nothing
  is extracted). A layer's variables sit at `layers/<snake_case(class)>[_k]/<sub-object>/vars/<i>`, the
  counter running over the model's layers in order: Keras' own storage rule, not the layer's name.
- Legacy HDF5 `.h5` (Keras 3 and tf.keras 2): the config in the root attribute `model_config`, each layer's
  arrays in `model_weights/<layer name>` in the order of its `weight_names` attribute.

Hostile input gets `ModelFileError`: sizes are checked before anything is read, HDF5 links and external
storage that would reach outside the file are refused, and only numeric arrays are accepted.
"""
from __future__ import annotations

import io
import json
import os
import re
import signal
import time
import zipfile
import zlib
from dataclasses import dataclass, field

import numpy as np

from ..errors import MissingFileError, ModelFileError, WeightsOnlyError, first_line

MAX_CONFIG_BYTES = 64 * 2**20     # a config.json of 64 MiB would describe ~100k layers: more is not a model
MAX_WEIGHTS_BYTES = 16 * 2**30    # read into memory: refuse before trying rather than exhaust it


def snake_case(name: str) -> str:
    """Keras' `naming.to_snake_case`: CamelCase -> camel_case (the stem of a layer's weight path)."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    name = re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()
    return name


@dataclass
class KerasFile:
    """What a model file holds: the model config, the compile settings and a weight lookup."""

    path: str
    format: str                     # "keras" (Keras 3 zip) or "h5" (legacy HDF5)
    keras_version: str
    config: dict                    # {"class_name": "Sequential" | "Functional" | "Model", "config": {...}}
    compile_config: dict | None     # `compile_config` (.keras) or `training_config` (.h5), as stored
    h5: object = field(repr=False, default=None)   # the open h5py.File holding the weights

    def close(self) -> None:
        if self.h5 is not None:
            self.h5.close()
            self.h5 = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def learning_rate_dtype(self) -> str | None:
        """The dtype of the saved optimizer's learning-rate variable (Keras' floatx when it was saved)."""
        try:
            if self.format == "keras":
                ds = self.h5.get("optimizer/vars/1")
            else:
                group = self.h5.get("optimizer_weights")
                names = [_text(n) for n in np.atleast_1d(group.attrs.get("weight_names", []))] if group else []
                name = next((n for n in names if "learning_rate" in n), None)
                ds = group.get(name) if name else None
            return str(ds.dtype) if ds is not None and ds.dtype.kind == "f" else None
        except Exception:
            return None

    # -- weights -------------------------------------------------------------------------------------------
    def layer_arrays(self, storage_key: str, path: tuple, slots: list[str]) -> list:
        """The h5py datasets of one layer, in Keras' variable order (shapes are known before reading).

        `storage_key` is the layer's `.keras` path (`layers/dense_1`); `slots` its sub-objects holding
        variables (`""` for the layer itself, `"cell"` for an RNN, `"forward_layer/cell"`, ...).
        Legacy `.h5` files list the same arrays in `weight_names` under the layer's name. `path` is the
        layer's Keras name from the outer model: ("dense_1",), or ("base", "conv1") inside a nested model,
        whose legacy group `model_weights/base` lists all its layers' arrays (`base/conv1/kernel` from a
        Sequential base, `conv1/kernel` from a Functional one).
        """
        layer_name = "/".join(path)
        try:
            return self._layer_arrays(storage_key, tuple(path), slots)
        except ModelFileError:
            raise
        except (OSError, RuntimeError, KeyError, ValueError, TypeError) as e:  # h5py on damaged metadata
            raise ModelFileError(f"weights of layer '{layer_name}': corrupt weights file ({first_line(e)})") from None

    def _layer_arrays(self, storage_key: str, path: tuple, slots: list[str]) -> list:
        layer_name = "/".join(path)
        if self.format == "keras":
            found = []
            for slot in slots:
                path = "/".join(p for p in (storage_key, slot, "vars") if p)
                group = _get(self.h5, path, f"weights of layer '{layer_name}'")
                keys = sorted(group.keys(), key=_vars_index)
                found += [_dataset(group, k, f"{path}/{k}") for k in keys]
            return found
        group = _get(self.h5, f"model_weights/{path[0]}", f"weights of layer '{layer_name}'")
        names = [_text(n) for n in np.atleast_1d(group.attrs.get("weight_names", []))]
        if len(path) > 1:  # a nested model's layer: its share of the model's list, in order
            inner = list(path[1:])

            def ours(name):
                parts = name.split("/")[:-1]
                return parts[:len(inner)] == inner or (parts[:1] == [path[0]] and parts[1:len(inner) + 1] == inner)
            names = [n for n in names if ours(n)]
        return [_dataset(group, n, f"model_weights/{path[0]}/{n}") for n in names]


def _vars_index(key: str) -> int:
    if not key.isdigit():
        raise ModelFileError(f"unexpected entry '{key}' among a layer's variables")
    return int(key)


def _text(v) -> str:
    """An attribute as text; bytes that are not UTF-8 (h5py hands them over as lone surrogates) become U+FFFD."""
    if isinstance(v, str):
        v = v.encode("utf-8", "surrogateescape")
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


def _valid_text(obj):
    """JSON strings without lone surrogates (json.loads accepts "\\udc80"; no source file can hold one)."""
    if isinstance(obj, str):
        return obj.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    if isinstance(obj, list):
        return [_valid_text(v) for v in obj]
    if isinstance(obj, dict):
        return {_valid_text(k): _valid_text(v) for k, v in obj.items()}
    return obj


def _get(h5, path: str, what: str):
    """A group or dataset by path, refusing links (soft or external) that could point outside the file."""
    import h5py

    node = h5
    for part in path.split("/"):
        if not part:
            continue
        if not isinstance(node, h5py.Group):
            raise ModelFileError(f"{what}: '{path}' is not a group in the weights file")
        link = node.get(part, getlink=True)
        if link is None:
            raise ModelFileError(f"{what}: '{path}' is missing from the weights file")
        if not isinstance(link, h5py.HardLink):
            raise ModelFileError(f"{what}: '{path}' is a link ({type(link).__name__}); refused")
        node = node[part]
    return node


def _dataset(group, key: str, where: str):
    import h5py

    ds = _get(group, key, where)
    if not isinstance(ds, h5py.Dataset):
        raise ModelFileError(f"{where} is not an array")
    if ds.is_virtual or ds.external:
        raise ModelFileError(f"{where} stores its data outside the file; refused")
    if ds.dtype.kind not in "fiub":
        raise ModelFileError(f"{where} holds {ds.dtype}, not numbers")
    return ds


def read_array(ds, where: str) -> np.ndarray:
    """Read one dataset (after its shape was checked against the config)."""
    try:
        return np.asarray(ds[()])
    except Exception as e:  # truncated or corrupt chunks
        raise ModelFileError(f"{where}: cannot read the array ({first_line(e)})") from None


def _json(raw: bytes | str, what: str) -> dict:
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as e:
        raise ModelFileError(f"{what} is not valid JSON ({first_line(e)})") from None
    if not isinstance(data, dict):
        raise ModelFileError(f"{what} is not a JSON object")
    try:
        return _valid_text(data)
    except RecursionError:
        raise ModelFileError(f"{what} is nested too deeply to be a model config") from None


# ---- libhdf5 on hostile bytes -----------------------------------------------------------------------------

PROBE_SECONDS = 20.0  # reading the attributes of a real Keras file takes milliseconds


def _read_metadata(h5) -> None:
    """Every attribute value and every object's metadata: what torchport reads from the file besides the
    weights' data (whose sizes are checked before they are read)."""
    def visit(name, obj):
        dict(obj.attrs)
        if hasattr(obj, "shape"):
            obj.shape, obj.dtype  # noqa: B018 (reading them is the point)

    dict(h5.attrs)
    h5.visititems(visit)


def _libhdf5_survives(open_file, path: str) -> None:
    """libhdf5 can loop forever or crash on corrupt bytes (a fuzzed .h5 with 4 bytes changed made reading its
    `model_config` attribute spin for good: no Python error, no timeout). So the metadata is read first in a
    forked child: if the child hangs or dies, the file is refused in one line; if it finishes, the same reads
    are safe here. Without fork (Windows) the reads happen here directly."""
    if not hasattr(os, "fork"):
        return
    pid = os.fork()
    if pid == 0:  # the child: read, then leave without running any of the parent's cleanup
        code = 0
        try:
            with open_file() as h5:
                _read_metadata(h5)
        except BaseException:
            code = 3  # a Python-level error: the parent meets it too, and says it
        os._exit(code)
    deadline = time.monotonic() + PROBE_SECONDS
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise ModelFileError(f"{path}: corrupt HDF5 (the HDF5 library did not finish reading its metadata "
                                 f"in {PROBE_SECONDS:.0f} s); refused")
        time.sleep(0.002)
    if os.WIFSIGNALED(status):
        name = signal.Signals(os.WTERMSIG(status)).name
        raise ModelFileError(f"{path}: corrupt HDF5 (the HDF5 library crashed reading it: {name}); refused")


# ---- the two formats ----------------------------------------------------------------------------------------

def _open_keras_zip(path: str) -> KerasFile:
    import h5py

    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            if "config.json" not in names:
                raise ModelFileError(f"{path}: a zip without config.json is not a Keras model file")
            if "model.weights.h5" not in names:
                hint = " (model.weights.npz is not supported)" if "model.weights.npz" in names else ""
                raise ModelFileError(f"{path}: the archive holds no model.weights.h5{hint}")
            for name, limit in (("config.json", MAX_CONFIG_BYTES), ("model.weights.h5", MAX_WEIGHTS_BYTES)):
                if z.getinfo(name).file_size > limit:
                    raise ModelFileError(f"{path}: {name} declares {z.getinfo(name).file_size:,} bytes "
                                         f"(more than {limit:,}); refused")
            config = _json(z.read("config.json"), f"{path}: config.json")
            meta = _json(z.read("metadata.json"), f"{path}: metadata.json") if "metadata.json" in names else {}
            blob = z.read("model.weights.h5")
    except ModelFileError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError, NotImplementedError, ValueError) as e:
        raise ModelFileError(f"{path}: truncated or corrupt .keras archive ({first_line(e)})") from None
    _libhdf5_survives(lambda: h5py.File(io.BytesIO(blob), "r"), path)
    try:
        h5 = h5py.File(io.BytesIO(blob), "r")
    except Exception as e:
        raise ModelFileError(f"{path}: model.weights.h5 is not a readable HDF5 file ({first_line(e)})") from None
    try:
        has_layers = "layers" in h5
    except Exception as e:
        h5.close()
        raise ModelFileError(f"{path}: model.weights.h5 is corrupt ({first_line(e)})") from None
    if not has_layers:
        h5.close()
        raise ModelFileError(f"{path}: model.weights.h5 holds no 'layers' group")
    return KerasFile(path, "keras", str(meta.get("keras_version", "unknown")), config,
                     config.get("compile_config"), h5)


def _open_legacy_h5(path: str) -> KerasFile:
    import h5py

    _libhdf5_survives(lambda: h5py.File(path, "r"), path)
    try:
        h5 = h5py.File(path, "r")
    except Exception as e:
        raise ModelFileError(f"{path}: not a readable HDF5 file ({first_line(e)})") from None
    try:
        if "model_config" not in h5.attrs:
            weights_only = "layers" in h5 or "model_weights" in h5 or "layer_names" in h5.attrs
            what = "holds weights only (a .weights.h5 file), no model config" if weights_only \
                else "is an HDF5 file without a Keras model config"
            raise (WeightsOnlyError if weights_only else ModelFileError)(
                f"{path}: {what}; pass the .keras or full .h5 file saved by model.save()")
        raw = h5.attrs["model_config"]
        if len(raw) > MAX_CONFIG_BYTES:
            raise ModelFileError(f"{path}: model_config is larger than {MAX_CONFIG_BYTES:,} bytes; refused")
        config = _json(_text(raw), f"{path}: model_config")
        training = h5.attrs.get("training_config")
        compile_config = _json(_text(training), f"{path}: training_config") if training is not None else None
        if "model_weights" not in h5:
            raise ModelFileError(f"{path}: no model_weights group (saved without weights?)")
        version = _text(h5.attrs.get("keras_version", h5["model_weights"].attrs.get("keras_version", "unknown")))
    except ModelFileError:
        h5.close()
        raise
    except (OSError, RuntimeError, KeyError, ValueError, TypeError) as e:  # h5py's errors on damaged structures
        h5.close()
        raise ModelFileError(f"{path}: corrupt HDF5 ({first_line(e)})") from None
    except BaseException:
        h5.close()
        raise
    return KerasFile(path, "h5", version, config, compile_config, h5)


def read_weights_file(path: str) -> list[tuple[str, list[np.ndarray]]]:
    """A Keras 3 `.weights.h5` (what `model.save_weights` writes: no config) as [(storage key, [arrays in Keras'
    variable order])] for each layer that holds variables, in Keras' counting order (`dense` before `dense_1`
    before `dense_10`). The same refusals as for a model file: links, external storage, non-numeric data."""
    import h5py

    if not os.path.isfile(path):
        raise MissingFileError(f"{path}: no such file")
    _libhdf5_survives(lambda: h5py.File(path, "r"), path)
    try:
        with h5py.File(path, "r") as h5:
            layers = _get(h5, "layers", "a Keras 3 weights file")
            found = []
            for key in sorted(layers.keys(), key=_natural):
                layer = _get(layers, key, f"layer '{key}'")
                group = _get(layer, "vars", f"layer '{key}'") if "vars" in layer else None
                names = sorted(group.keys(), key=_vars_index) if group is not None else []
                arrays = [read_array(_dataset(group, n, f"layers/{key}/vars/{n}"), f"layers/{key}") for n in names]
                if arrays:
                    found.append((key, arrays))
            return found
    except ModelFileError:
        raise
    except (OSError, RuntimeError, KeyError, ValueError, TypeError) as e:
        raise ModelFileError(f"{path}: not a readable Keras weights file ({first_line(e)})") from None


def _natural(name: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def open_model_file(path: str) -> KerasFile:
    """Open a `.keras` or legacy `.h5` model file; `ModelFileError` for anything else."""
    import h5py

    if not os.path.exists(path):
        raise MissingFileError(f"{path}: no such file")
    if os.path.isdir(path):
        raise MissingFileError(f"{path}: is a folder, not a Keras model file (a SavedModel folder is not supported)")
    try:
        if zipfile.is_zipfile(path):
            return _open_keras_zip(path)
        if h5py.is_hdf5(path):
            return _open_legacy_h5(path)
    except OSError as e:
        raise ModelFileError(f"{path}: cannot read ({first_line(e)})") from None
    raise ModelFileError(f"{path}: not a Keras model file (neither a .keras zip nor an HDF5 .h5)")
