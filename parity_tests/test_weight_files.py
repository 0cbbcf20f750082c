"""Weights between Keras and torchport: live models and Keras 3 files, both ways."""
import numpy as np
import pytest
import torch

from torchport import parity
from torchport.cifar10 import SimpleCNN
from torchport.errors import DataError
from torchport.keras_io import keras_to_torch, load_keras_weights, save_keras_weights, torch_to_keras
from torchport.mnist import MnistModel


def state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("which", ["cifar", "mnist"])
def test_round_trip_torch_file_keras_file_torch_is_exact(keras, tmp_path, which):
    torch.manual_seed(3)
    tm = SimpleCNN() if which == "cifar" else MnistModel()
    km = parity.keras_cifar(keras, seed=1) if which == "cifar" else parity.keras_mnist(keras, seed=1)
    save_keras_weights(tm, str(tmp_path / "a.weights.h5"))
    km.load_weights(str(tmp_path / "a.weights.h5"))          # Keras reads our file
    km.save_weights(str(tmp_path / "b.weights.h5"))          # and writes its own
    back = SimpleCNN() if which == "cifar" else MnistModel()
    load_keras_weights(back, str(tmp_path / "b.weights.h5"))
    for k, v in state(tm).items():
        assert torch.equal(back.state_dict()[k], v), k
    x = np.random.default_rng(0).uniform(size=(4, 32, 32, 3) if which == "cifar" else (4, 28, 28)).astype("float32")
    assert parity.forward_diff(km, back, x) <= 1e-5


def test_keras_archive_and_live_transfer_both_ways(keras, tmp_path):
    km = parity.keras_cifar(keras, seed=2)
    km.save(str(tmp_path / "m.keras"))
    a, b = SimpleCNN(), SimpleCNN()
    load_keras_weights(a, str(tmp_path / "m.keras"))
    keras_to_torch(km, b)
    for k, v in a.state_dict().items():
        assert torch.equal(b.state_dict()[k], v)
    km2 = parity.keras_cifar(keras, seed=3)
    torch_to_keras(a, km2)
    for w1, w2 in zip(km.get_weights(), km2.get_weights(), strict=True):
        assert np.array_equal(w1, w2)


def test_layer_names_do_not_matter_only_order_and_shapes(keras, tmp_path):
    keras.utils.clear_session()
    keras.utils.set_random_seed(5)
    L = keras.layers
    km = keras.Sequential([keras.Input((28, 28)), L.Flatten(name="f"), L.Dense(32, activation="relu", name="zz_hidden"),
                           L.Dense(10, name="aa_out")])  # names sort in the wrong order
    km.save_weights(str(tmp_path / "n.weights.h5"))
    tm = load_keras_weights(MnistModel(), str(tmp_path / "n.weights.h5"))
    x = np.random.default_rng(1).uniform(size=(3, 28, 28)).astype("float32")
    assert parity.forward_diff(km, tm, x) <= 1e-5


def test_mismatched_file_is_refused_naming_the_first_mismatch(keras, tmp_path):
    km = parity.keras_mnist(keras, seed=4)
    km.save_weights(str(tmp_path / "mnist.weights.h5"))
    with pytest.raises(DataError, match="has 2 layers with weights, the model has 4"):
        load_keras_weights(SimpleCNN(), str(tmp_path / "mnist.weights.h5"))
    with pytest.raises(DataError, match=r"no layer matches the model's linear1|dense"):
        load_keras_weights(MnistModel(hidden_size=16), str(tmp_path / "mnist.weights.h5"))
