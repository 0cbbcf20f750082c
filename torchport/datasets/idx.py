"""The MNIST idx format (optionally gzip-compressed): a checked reader and a writer for tests."""
from __future__ import annotations

import gzip
import math
import os
import struct
import zlib

import numpy as np

from ..errors import DataError

UBYTE = 0x08
MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def _read_bytes(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            raw = f.read()
        if raw[:2] == b"\x1f\x8b":  # gzip magic, whatever the file is called
            return gzip.decompress(raw)
        return raw
    except (OSError, EOFError, zlib.error) as e:
        reason = "truncated or corrupt gzip data" if isinstance(e, (EOFError, zlib.error, gzip.BadGzipFile)) \
            else (e.strerror or str(e))
        raise DataError(f"cannot read {path}: {reason}") from None


def parse_idx(raw: bytes, name: str = "idx data", ndim: int | None = None) -> np.ndarray:
    """Parse idx bytes: magic 0x0000 0x08 <ndim>, ndim big-endian uint32 sizes, then uint8 data."""
    if len(raw) < 4:
        raise DataError(f"{name}: too short for an idx header ({len(raw)} bytes)")
    zero, dtype, dims = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype != UBYTE or dims == 0:
        raise DataError(f"{name}: wrong magic number 0x{raw[:4].hex()} (expected 0x000008 followed by ndim)")
    if ndim is not None and dims != ndim:
        raise DataError(f"{name}: has {dims} dimensions, expected {ndim}")
    header = 4 + 4 * dims
    if len(raw) < header:
        raise DataError(f"{name}: truncated header")
    shape = struct.unpack(f">{dims}I", raw[4:header])
    expected = header + math.prod(shape)  # Python ints: a hostile header cannot overflow
    if len(raw) != expected:
        raise DataError(f"{name}: wrong size, {len(raw)} bytes for shape {shape} (expected {expected})")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def read_idx(path: str, ndim: int | None = None) -> np.ndarray:
    return parse_idx(_read_bytes(path), os.path.basename(path), ndim)


def write_idx(path: str, array: np.ndarray, compress: bool | None = None) -> None:
    """Write a uint8 array as an idx file (gzip when `compress` or the name ends in .gz)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    raw = struct.pack(">HBB", 0, UBYTE, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    if compress if compress is not None else path.endswith(".gz"):
        raw = gzip.compress(raw, mtime=0)
    with open(path, "wb") as f:
        f.write(raw)


def find_mnist_files(folder: str) -> dict[str, str] | None:
    """Paths of the four files in `folder` or `folder/MNIST/raw` (.gz or not); None if any is missing."""
    for base in (folder, os.path.join(folder, "MNIST", "raw")):
        found = {}
        for key, stem in MNIST_FILES.items():
            for cand in (stem, stem + ".gz"):
                if os.path.isfile(os.path.join(base, cand)):
                    found[key] = os.path.join(base, cand)
                    break
        if len(found) == len(MNIST_FILES):
            return found
    return None


def read_mnist(folder: str):
    """((x_train, y_train), (x_test, y_test)) as uint8 arrays (N, 28, 28) and (N,), checked."""
    files = find_mnist_files(folder)
    if files is None:
        names = ", ".join(MNIST_FILES.values())
        raise DataError(f"no MNIST data in {folder}: expected {names} (.gz or not), there or in MNIST/raw/")
    arrays = {k: read_idx(p, ndim=3 if k.endswith("images") else 1) for k, p in files.items()}
    for split in ("train", "test"):
        x, y = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if len(x) != len(y):
            raise DataError(f"{files[split + '_images']}: {len(x)} images but {len(y)} labels")
        if x.shape[1:] != (28, 28):
            raise DataError(f"{files[split + '_images']}: images are {x.shape[1:]}, expected (28, 28)")
        if len(y) and y.max() > 9:
            raise DataError(f"{files[split + '_labels']}: label {int(y.max())} outside 0-9")
    return (arrays["train_images"], arrays["train_labels"]), (arrays["test_images"], arrays["test_labels"])
