"""CIFAR-10 batches: hand-made files in the real format, and every way one can be bad."""
import io
import os
import pickle
import tarfile

import numpy as np
import pytest

from torchport.cifar10 import load_data
from torchport.datasets.cifar import (ARCHIVE_NAME, TEST_BATCH, TRAIN_BATCHES, parse_batch, read_archive,
                                      read_cifar10)
from torchport.errors import DataError


def batch_bytes(n, seed, protocol=4, labels=None, data=None):
    rng = np.random.default_rng(seed)
    d = {b"batch_label": b"hand made", b"labels": labels if labels is not None else rng.integers(0, 10, n).tolist(),
         b"data": data if data is not None else rng.integers(0, 256, (n, 3072), dtype=np.uint8),
         b"filenames": [b"x.png"] * n}
    return pickle.dumps(d, protocol=protocol)


def make_folder(root, n=4, protocol=4):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for i, name in enumerate([*TRAIN_BATCHES, TEST_BATCH]):
        (folder / name).write_bytes(batch_bytes(n, i, protocol))
    return folder


@pytest.mark.parametrize("protocol", [2, 4])
def test_hand_made_batch_is_read_like_keras(protocol):
    data = np.arange(2 * 3072, dtype=np.int64).astype(np.uint8).reshape(2, 3072)
    x, y = parse_batch(batch_bytes(2, 0, protocol, labels=[3, 9], data=data), "b")
    assert x.shape == (2, 32, 32, 3) and x.dtype == np.uint8 and y.shape == (2, 1) and y.dtype == np.uint8
    assert y.ravel().tolist() == [3, 9]
    # pixel (h=1, w=2) of channel c sits at c*1024 + 1*32 + 2 in the CHW row
    for c in range(3):
        assert x[1, 1, 2, c] == data[1, c * 1024 + 34]


def test_folder_and_archive_give_the_same_arrays(tmp_path):
    folder = make_folder(tmp_path / "a")
    (xtr, ytr), (xte, yte) = read_cifar10(str(tmp_path / "a"))
    assert xtr.shape == (20, 32, 32, 3) and ytr.shape == (20, 1) and xte.shape == (4, 32, 32, 3)
    archive = tmp_path / "sample.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-py")
    (xtr2, ytr2), (xte2, _) = read_archive(str(archive))
    assert np.array_equal(xtr, xtr2) and np.array_equal(ytr, ytr2) and np.array_equal(xte, xte2)
    assert np.array_equal(read_cifar10(str(folder))[0][0], xtr)  # the batch folder itself works too


def test_original_archive_name_is_checked_against_the_published_sha256(tmp_path):
    folder = make_folder(tmp_path / "src")
    with tarfile.open(tmp_path / ARCHIVE_NAME, "w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-py")
    with pytest.raises(DataError, match="SHA-256 does not match"):
        read_cifar10(str(tmp_path))


def test_truncated_batch(tmp_path):
    raw = batch_bytes(4, 0)
    with pytest.raises(DataError, match="not a readable CIFAR-10 batch"):
        parse_batch(raw[: len(raw) // 2], "data_batch_1")


@pytest.mark.parametrize("kw, match", [
    (dict(data=np.zeros((4, 3000), np.uint8)), r"expected a uint8 array \(N, 3072\)"),
    (dict(data=np.zeros((4, 3072), np.float32)), r"expected a uint8 array"),
    (dict(labels=[1, 2, 3]), "4 images but 3 labels"),
    (dict(labels=[1, 2, 3, 10]), "labels outside 0-9"),
    (dict(labels=["a", "b", "c", "d"]), "not a list of integers"),
])
def test_wrong_shapes_and_labels(kw, match):
    with pytest.raises(DataError, match=match):
        parse_batch(batch_bytes(4, 0, **kw), "data_batch_1")


class Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    raw = pickle.dumps({b"data": Exploit(marker), b"labels": []})
    with pytest.raises(DataError, match=r"refused to load (posix|os)\.system"):
        parse_batch(raw, "data_batch_1")
    assert not marker.exists()
    raw = pickle.dumps(__import__("builtins").eval)  # any global outside numpy's array reconstruction
    with pytest.raises(DataError, match="refused to load builtins.eval"):
        parse_batch(raw, "x")


@pytest.mark.parametrize("member", ["../evil", "/etc/evil", "cifar-10-batches-py/../../evil"])
def test_archive_with_path_escaping_member_is_refused(tmp_path, member):
    folder = make_folder(tmp_path / "src")
    archive = tmp_path / "bad.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-py")
        info = tarfile.TarInfo(member)
        info.size = 3
        tar.addfile(info, io.BytesIO(b"bad"))
    with pytest.raises(DataError, match="points outside the archive"):
        read_archive(str(archive))
    assert not (tmp_path / "evil").exists()


def test_missing_batch_and_garbage_archive(tmp_path):
    folder = make_folder(tmp_path / "a")
    os.remove(folder / "data_batch_3")
    with pytest.raises(DataError, match="missing CIFAR-10 batch files: data_batch_3"):
        read_cifar10(str(folder))
    (tmp_path / "junk.tar.gz").write_bytes(b"not an archive")
    with pytest.raises(DataError, match="not a readable .tar.gz"):
        read_archive(str(tmp_path / "junk.tar.gz"))


def test_offline_default_is_the_bundled_real_sample(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCHPORT_DATA", str(tmp_path))
    (x, y), (xt, yt) = load_data(None)
    assert x.shape == (1000, 32, 32, 3) and xt.shape == (250, 32, 32, 3)
    assert "bundled" in capsys.readouterr().err
    assert 100 < x.mean() < 140 and set(np.unique(y)) == set(range(10))  # real images, all classes
