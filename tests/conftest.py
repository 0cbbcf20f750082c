import os

import numpy as np
import pytest

# Tests never try the network: with no --data-dir, the bundled sample is used at once.
os.environ.setdefault("TORCHPORT_OFFLINE", "1")


@pytest.fixture
def mnist_dir(tmp_path):
    """A folder with the four MNIST idx files (gzip), small and hand-made, in the real format."""
    from torchport.datasets.idx import MNIST_FILES, write_idx

    rng = np.random.default_rng(0)
    sizes = {"train": 120, "test": 30}
    for key, stem in MNIST_FILES.items():
        n = sizes[key.split("_")[0]]
        arr = rng.integers(0, 256, (n, 28, 28)) if key.endswith("images") else rng.integers(0, 10, n)
        write_idx(str(tmp_path / (stem + ".gz")), arr.astype(np.uint8))
    return tmp_path


@pytest.fixture
def cifar_dir(tmp_path):
    """A folder holding cifar-10-batches-py/ with small hand-made batches in the real pickle format."""
    import pickle

    from torchport.datasets.cifar import TEST_BATCH, TRAIN_BATCHES

    folder = tmp_path / "data" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [*TRAIN_BATCHES, TEST_BATCH]:
        n = 13 if name != TEST_BATCH else 10
        d = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": rng.integers(0, 10, n).tolist()}
        (folder / name).write_bytes(pickle.dumps(d, protocol=2))
    return tmp_path / "data"

