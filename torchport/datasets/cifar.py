"""CIFAR-10 python batches: a restricted unpickler, checked shapes, and archives read without extraction."""
from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile

import numpy as np

from ..errors import DataError

ARCHIVE_NAME = "cifar-10-python.tar.gz"
ARCHIVE_SHA256 = "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"
FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_BATCH = "test_batch"

# Everything a CIFAR batch pickle needs: numpy's array reconstruction (numpy 1 and 2 module paths) and
# the codec Python 2 pickles use for raw bytes. Anything else is refused before it can run.
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused to load {module}.{name}: not part of the CIFAR-10 format")


def parse_batch(raw: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
    """One pickled batch -> (x uint8 (N, 32, 32, 3) channels-last like Keras, y uint8 (N, 1))."""
    try:
        d = _RestrictedUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except pickle.UnpicklingError as e:
        if str(e).startswith("refused"):
            raise DataError(f"{name}: {e}") from None
        raise DataError(f"{name}: not a readable CIFAR-10 batch ({e})") from None
    except Exception as e:  # truncated or garbage bytes raise many types; all mean "not a CIFAR batch"
        raise DataError(f"{name}: not a readable CIFAR-10 batch ({type(e).__name__})") from None
    if not isinstance(d, dict) or b"data" not in d or b"labels" not in d:
        raise DataError(f"{name}: not a CIFAR-10 batch (expected a dict with b'data' and b'labels')")
    data, labels = d[b"data"], d[b"labels"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        shape = getattr(data, "shape", type(data).__name__)
        raise DataError(f"{name}: b'data' is {shape}, expected a uint8 array (N, 3072)")
    try:
        y = np.asarray(labels, dtype=np.int64).reshape(-1)
    except (TypeError, ValueError):
        raise DataError(f"{name}: b'labels' is not a list of integers") from None
    if len(y) != len(data):
        raise DataError(f"{name}: {len(data)} images but {len(y)} labels")
    if len(y) and (y.min() < 0 or y.max() > 9):
        raise DataError(f"{name}: labels outside 0-9")
    x = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(x), y.astype(np.uint8).reshape(-1, 1)


def _combine(batches: dict[str, bytes], where: str):
    missing = [n for n in [*TRAIN_BATCHES, TEST_BATCH] if n not in batches]
    if missing:
        raise DataError(f"{where}: missing CIFAR-10 batch files: {', '.join(missing)}")
    train = [parse_batch(batches[n], os.path.join(where, n)) for n in TRAIN_BATCHES]
    x_test, y_test = parse_batch(batches[TEST_BATCH], os.path.join(where, TEST_BATCH))
    x_train = np.concatenate([x for x, _ in train])
    y_train = np.concatenate([y for _, y in train])
    return (x_train, y_train), (x_test, y_test)


def read_batches_folder(folder: str):
    batches = {}
    for n in [*TRAIN_BATCHES, TEST_BATCH]:
        p = os.path.join(folder, n)
        if os.path.isfile(p):
            try:
                with open(p, "rb") as f:
                    batches[n] = f.read()
            except OSError as e:
                raise DataError(f"cannot read {p}: {e.strerror}") from None
    return _combine(batches, folder)


def sha256_of(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_archive(path: str, sha256: str | None = None):
    """Read the batches straight out of a .tar.gz, never extracting to disk.

    A member whose path is absolute or climbs out with '..' makes the whole archive refused: such an
    archive was built to write outside its folder, and nothing in it is trusted.
    """
    if sha256 is not None and sha256_of(path) != sha256:
        raise DataError(f"{path}: SHA-256 does not match the published archive (corrupt or incomplete download?)")
    batches = {}
    try:
        with tarfile.open(path, "r:*") as tar:
            for m in tar.getmembers():
                parts = m.name.replace("\\", "/").split("/")
                if m.name.startswith(("/", "\\")) or ".." in parts or (m.issym() or m.islnk()):
                    raise DataError(f"{path}: refused, member {m.name!r} points outside the archive")
                if m.isfile() and parts[-1] in (*TRAIN_BATCHES, TEST_BATCH):
                    batches[parts[-1]] = tar.extractfile(m).read()
    except (tarfile.TarError, EOFError, OSError) as e:
        raise DataError(f"{path}: not a readable .tar.gz archive ({e})") from None
    return _combine(batches, path)


def find_cifar(folder: str) -> tuple[str, str] | None:
    """('folder'|'archive', path) for CIFAR-10 data in or at `folder`, or None."""
    for cand in (folder, os.path.join(folder, FOLDER)):
        if os.path.isfile(os.path.join(cand, TEST_BATCH)) or os.path.isfile(os.path.join(cand, TRAIN_BATCHES[0])):
            return "folder", cand
    archive = os.path.join(folder, ARCHIVE_NAME)
    if os.path.isfile(archive):
        return "archive", archive
    return None


def read_cifar10(folder: str):
    """Keras' cifar10.load_data() from a folder: x uint8 (N, 32, 32, 3), y uint8 (N, 1)."""
    found = find_cifar(folder)
    if found is None:
        raise DataError(f"no CIFAR-10 data in {folder}: expected {FOLDER}/, {ARCHIVE_NAME} or the batch files")
    kind, path = found
    if kind == "folder":
        return read_batches_folder(path)
    return read_archive(path, sha256=ARCHIVE_SHA256)
