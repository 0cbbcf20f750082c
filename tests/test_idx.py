import gzip
import struct

import numpy as np
import pytest

from torchport.datasets.idx import find_mnist_files, parse_idx, read_idx, read_mnist, write_idx
from torchport.errors import DataError


def hand_idx(shape, payload: bytes) -> bytes:
    return bytes([0, 0, 8, len(shape)]) + b"".join(struct.pack(">I", d) for d in shape) + payload


def test_reads_hand_made_bytes_in_both_layouts():
    raw = hand_idx((2, 2, 3), bytes(range(12)))
    a = parse_idx(raw)
    assert a.dtype == np.uint8 and a.shape == (2, 2, 3) and a[1, 1, 2] == 11 and a[0, 1, 0] == 3
    labels = parse_idx(hand_idx((3,), b"\x07\x00\x09"))
    assert labels.tolist() == [7, 0, 9]


@pytest.mark.parametrize("gz", [True, False])
def test_file_round_trip_plain_and_gzip(tmp_path, gz):
    arr = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    p = str(tmp_path / ("a.idx" + (".gz" if gz else "")))
    write_idx(p, arr)
    assert (open(p, "rb").read(2) == b"\x1f\x8b") == gz
    assert np.array_equal(read_idx(p), arr)


@pytest.mark.parametrize("raw, match", [
    (b"\x00\x00", "too short"),
    (bytes([0, 0, 9, 1]) + struct.pack(">I", 1) + b"\x00", "wrong magic"),
    (bytes([1, 0, 8, 1]) + struct.pack(">I", 1) + b"\x00", "wrong magic"),
    (hand_idx((3,), b"\x00\x01"), "wrong size"),
    (hand_idx((3,), b"\x00\x01\x02\x03"), "wrong size"),
    (bytes([0, 0, 8, 3]) + b"\x00\x00", "truncated header"),
])
def test_malformed_bytes_raise_data_error(raw, match):
    with pytest.raises(DataError, match=match):
        parse_idx(raw)


def test_truncated_and_corrupt_gzip_raise_data_error(tmp_path):
    good = gzip.compress(hand_idx((100,), bytes(100)))
    (tmp_path / "trunc.gz").write_bytes(good[: len(good) // 2])
    (tmp_path / "corrupt.gz").write_bytes(good[:10] + b"\xff" * 20 + good[30:])
    for name in ("trunc.gz", "corrupt.gz"):
        with pytest.raises(DataError, match="truncated or corrupt gzip"):
            read_idx(str(tmp_path / name))


def test_finds_plain_folder_and_torchvision_layout(tmp_path_factory, mnist_dir):
    tmp_path = tmp_path_factory.mktemp("tv")
    assert find_mnist_files(str(mnist_dir))["train_images"].endswith("train-images-idx3-ubyte.gz")
    raw = tmp_path / "root" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for f in mnist_dir.iterdir():
        (raw / f.name[:-3]).write_bytes(gzip.decompress(f.read_bytes()))  # torchvision keeps them decompressed
    (x, y), (xt, yt) = read_mnist(str(tmp_path / "root"))
    assert x.shape == (120, 28, 28) and y.shape == (120,) and xt.shape == (30, 28, 28)
    assert find_mnist_files(str(tmp_path)) is None


def test_mismatched_counts_and_labels_out_of_range(mnist_dir):
    write_idx(str(mnist_dir / "train-labels-idx1-ubyte.gz"), np.zeros(119, np.uint8))
    with pytest.raises(DataError, match="120 images but 119 labels"):
        read_mnist(str(mnist_dir))
    write_idx(str(mnist_dir / "train-labels-idx1-ubyte.gz"), np.full(120, 10, np.uint8))
    with pytest.raises(DataError, match="label 10 outside 0-9"):
        read_mnist(str(mnist_dir))
