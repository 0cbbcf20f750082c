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
