"""Keras 3 weight files without TensorFlow: a hand-made file in Keras' layout, and our own round trip."""
import h5py
import numpy as np
import pytest
import torch

from torchport.cifar10 import SimpleCNN
from torchport.errors import DataError
from torchport.keras_io import load_keras_weights, save_keras_weights
from torchport.mnist import MnistModel


def test_hand_made_keras_file_loads_with_the_layout_conversion(tmp_path):
    rng = np.random.default_rng(0)
    k1, b1 = rng.normal(size=(784, 32)).astype("f4"), rng.normal(size=32).astype("f4")
    k2, b2 = rng.normal(size=(32, 10)).astype("f4"), rng.normal(size=10).astype("f4")
    with h5py.File(tmp_path / "m.weights.h5", "w") as f:  # what keras' save_weights writes
        for name, arrs in (("dense", (k1, b1)), ("dense_1", (k2, b2)), ("flatten", ())):
            g = f.create_group(f"layers/{name}/vars")
            for i, a in enumerate(arrs):
                g.create_dataset(str(i), data=a)
    m = load_keras_weights(MnistModel(), str(tmp_path / "m.weights.h5"))
    x = rng.uniform(size=(3, 28, 28)).astype("f4")
    want = np.maximum(x.reshape(3, -1) @ k1 + b1, 0) @ k2 + b2  # Keras' Dense math, by hand
    with torch.no_grad():
        np.testing.assert_allclose(m(torch.from_numpy(x)).numpy(), want, rtol=1e-5, atol=1e-5)


def test_save_then_load_is_exact_and_conv_layout_is_keras(tmp_path):
    torch.manual_seed(0)
    a = SimpleCNN()
    save_keras_weights(a, str(tmp_path / "c.weights.h5"))
    with h5py.File(tmp_path / "c.weights.h5") as f:
        kernel = f["layers/conv2d/vars/0"][()]
        assert kernel.shape == (3, 3, 3, 32) and f["layers/dense/vars/0"].shape == (8192, 512)
        assert kernel[1, 2, 0, 5] == a.conv2d.weight[5, 0, 1, 2].item()  # (kh, kw, in, out)
    b = load_keras_weights(SimpleCNN(), str(tmp_path / "c.weights.h5"))
    for k, v in a.state_dict().items():
        assert torch.equal(b.state_dict()[k], v)


def test_unreadable_and_mismatched_files(tmp_path):
    (tmp_path / "junk.weights.h5").write_bytes(b"nope")
    with pytest.raises(DataError, match="not a readable Keras weights file"):
        load_keras_weights(MnistModel(), str(tmp_path / "junk.weights.h5"))
    save_keras_weights(MnistModel(hidden_size=16), str(tmp_path / "small.weights.h5"))
    with pytest.raises(DataError, match=r"no layer matches the model's dense \(kernel \(784, 32\)"):
        load_keras_weights(MnistModel(), str(tmp_path / "small.weights.h5"))
