"""The Keras originals, as their scripts build them: the reference models of `parity` and `bench`.

Each builder clears Keras' session first (so layer names read conv2d, dropout, ... as in the seed's
summary) and, given a `seed`, seeds every Keras draw after it (`keras.utils.set_random_seed`): the same
seed builds the same weights in any process, whatever ran before.
"""
from __future__ import annotations

CIFAR_SHAPE = (32, 32, 3)


def _fresh(keras, seed: int | None) -> None:
    keras.utils.clear_session()
    if seed is not None:
        keras.utils.set_random_seed(seed)


def keras_cifar(keras, dtype="float32", rates=(0.2, 0.5), seed: int | None = None):
    """The seed's CIFAR-10 model, layer for layer."""
    _fresh(keras, seed)
    L = keras.layers
    return keras.Sequential([
        keras.Input(shape=CIFAR_SHAPE, dtype=dtype),
        L.Conv2D(filters=32, kernel_size=(3, 3), padding="same", activation="relu", dtype=dtype),
        L.Dropout(rates[0], dtype=dtype),
        L.Conv2D(filters=32, kernel_size=(3, 3), activation="relu", padding="same", dtype=dtype),
        L.MaxPooling2D(pool_size=(2, 2), dtype=dtype),
        L.Flatten(dtype=dtype),
        L.Dense(512, activation="relu", dtype=dtype),
        L.Dropout(rates[1], dtype=dtype),
        L.Dense(10, activation="softmax", dtype=dtype),
    ])


def keras_mnist(keras, dtype="float32", seed: int | None = None):
    """The Keras equivalent of the tutorial's MnistModel: Flatten -> Dense(32, relu) -> Dense(10) (logits)."""
    _fresh(keras, seed)
    L = keras.layers
    return keras.Sequential([keras.Input(shape=(28, 28), dtype=dtype), L.Flatten(dtype=dtype),
                             L.Dense(32, activation="relu", dtype=dtype), L.Dense(10, dtype=dtype)])
