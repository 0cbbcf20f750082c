"""`--data`'s arrays, by name, without reading them: an `.npz` (each member stored uncompressed, as
`np.savez` writes it, is memory-mapped in place; a compressed one is read) or a folder of `.npy` shards
(`x_train.npy`, or `x_train-00000.npy`, `x_train-00001.npy`, ... taken in the order of their numbers, each
memory-mapped). The inputs stay mapped (`device.HostRows` for several shards) until the loader decides
whether they fit on the device; the targets and sample weights are read (one value per sample, small)."""
from __future__ import annotations

import os
import re
import struct
import zipfile

import numpy as np

from ..device import HostRows
from ..errors import DataError

SHARD = re.compile(r"^(?P<name>.+?)(?:-(?P<index>\d+))?\.npy$")


def read(path: str) -> dict:
    if os.path.isdir(path):
        return _folder(path)
    arrays = {}
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
    for info in infos:
        if not info.filename.endswith(".npy"):
            raise DataError(f"{path}: holds {info.filename!r}, not an .npy array")
        name = info.filename[:-4]
        mapped = _mapped(path, info)
        if mapped is None:  # compressed (np.savez_compressed): read
            with np.load(path, allow_pickle=False) as npz:
                mapped = npz[name]
        arrays[name] = mapped if name.startswith("x_") else np.array(mapped)  # targets: read (and writable)
    return arrays


def _header(f):
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(f)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(f)
    return None


def _mapped(path: str, info: zipfile.ZipInfo):
    """The member as a read-only memory map where it is stored as is, else None."""
    if info.compress_type != zipfile.ZIP_STORED:
        return None
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        local = f.read(30)
        if local[:4] != b"PK\x03\x04":
            return None
        name_len, extra_len = struct.unpack("<HH", local[26:30])
        f.seek(info.header_offset + 30 + name_len + extra_len)
        header = _header(f)
        if header is None:
            return None
        shape, fortran, dtype = header
        if dtype.hasobject:
            raise ValueError("Object arrays cannot be loaded when allow_pickle=False")
        offset = f.tell()
    if int(np.prod(shape)) == 0:
        return np.zeros(shape, dtype)
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran else "C")


def _folder(path: str) -> dict:
    shards: dict[str, list] = {}
    for file in sorted(os.listdir(path)):
        m = SHARD.match(file)
        if m is None:
            continue
        index = int(m["index"]) if m["index"] is not None else -1
        shards.setdefault(m["name"], []).append((index, os.path.join(path, file)))
    if not shards:
        raise DataError(f"--data {path}: a folder without .npy arrays (x_train.npy, or shards x_train-00000.npy ...)")
    arrays = {}
    for name, files in shards.items():
        indices = [i for i, _ in files]
        if len(files) > 1 and -1 in indices:
            raise DataError(f"{path}: {name}.npy beside numbered shards of {name}: keep one form")
        parts = [np.load(f, mmap_mode="r", allow_pickle=False) for _, f in sorted(files)]
        for (_, f), p in zip(sorted(files), parts, strict=True):
            if p.ndim == 0 or p.shape[1:] != parts[0].shape[1:] or p.dtype != parts[0].dtype:
                raise DataError(f"{path}: shard {os.path.basename(f)} holds {p.dtype} {p.shape}; the first shard of "
                                f"{name} holds {parts[0].dtype} {parts[0].shape} (shards differ only in rows)")
        if not name.startswith("x_"):
            arrays[name] = np.concatenate([np.asarray(p) for p in parts])
        else:
            arrays[name] = parts[0] if len(parts) == 1 else HostRows(parts)
    return arrays


def blocks(a, rows: int = 65536):
    """An array's rows a block at a time (a memory map or shards are checked without reading them whole)."""
    if isinstance(a, HostRows):
        yield from a.chunks(rows)
        return
    for start in range(0, max(len(a), 1), rows):
        yield np.asarray(a[start:start + rows])


def nbytes(a) -> int:
    return int(np.prod(a.shape)) * np.dtype(a.dtype).itemsize
