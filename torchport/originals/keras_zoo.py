"""A zoo of Keras tutorial models: what `torchport port` is measured on (parity_tests/, scripts/port_zoo.py).

Each builder takes the `keras` module and returns an uncompiled model; `build(keras, name, seed)` seeds
every Keras draw and randomises BatchNormalization's moving statistics (else they are 0 and 1, and a
wrong mapping of them would go unseen).
"""
from __future__ import annotations

import numpy as np

from .keras_models import keras_cifar


def mnist_convnet(keras):
    """keras.io's "Simple MNIST convnet"."""
    L = keras.layers
    return keras.Sequential([
        keras.Input(shape=(28, 28, 1)),
        L.Conv2D(32, kernel_size=(3, 3), activation="relu"),
        L.MaxPooling2D(pool_size=(2, 2)),
        L.Conv2D(64, kernel_size=(3, 3), activation="relu"),
        L.MaxPooling2D(pool_size=(2, 2)),
        L.Flatten(),
        L.Dropout(0.5),
        L.Dense(10, activation="softmax"),
    ], name="mnist_convnet")


def strided_bn(keras):
    """Strided "same" convolutions with BatchNormalization, depthwise and separable convolutions."""
    L = keras.layers
    return keras.Sequential([
        keras.Input(shape=(32, 32, 3)),
        L.Rescaling(1.0 / 255),
        L.Conv2D(16, 3, strides=2, padding="same", use_bias=False),
        L.BatchNormalization(),
        L.ReLU(),
        L.DepthwiseConv2D(3, padding="same"),
        L.BatchNormalization(),
        L.Activation("relu"),
        L.SeparableConv2D(32, 3, strides=2, padding="same", activation="relu"),
        L.AveragePooling2D(3, strides=2, padding="same"),
        L.ZeroPadding2D(1),
        L.Conv2D(32, 3, strides=2, padding="same"),
        L.LeakyReLU(),
        L.GlobalAveragePooling2D(),
        L.Dense(10, activation="softmax"),
    ], name="strided_bn")


def text_bilstm(keras):
    """Embedding(mask_zero) into two bidirectional LSTMs: keras.io's "Bidirectional LSTM on IMDB"."""
    L = keras.layers
    tokens = keras.Input(shape=(None,), dtype="int32", name="tokens")
    x = L.Embedding(1000, 16, mask_zero=True)(tokens)
    x = L.Bidirectional(L.LSTM(16, return_sequences=True))(x)
    x = L.Bidirectional(L.LSTM(8))(x)
    return keras.Model(tokens, L.Dense(1, activation="sigmoid")(x), name="text_bilstm")


def gru_model(keras):
    """Stacked GRUs (reset_after both ways), a SimpleRNN, go_backwards and pooling over time."""
    L = keras.layers
    return keras.Sequential([
        keras.Input(shape=(20, 8)),
        L.Conv1D(12, 3, padding="causal", activation="relu"),
        L.GRU(16, return_sequences=True),
        L.GRU(12, return_sequences=True, reset_after=False, go_backwards=True),
        L.SimpleRNN(8, return_sequences=True),
        L.MaxPooling1D(2),
        L.GlobalAveragePooling1D(),
        L.Dense(3, activation="softmax"),
    ], name="gru_model")


def functional_merges(keras):
    """Two inputs, branches and every merge, a Permute/Reshape and two outputs."""
    L = keras.layers
    image = keras.Input(shape=(16, 16, 3), name="image")
    meta = keras.Input(shape=(6,), name="meta")
    a = L.Conv2D(8, 3, padding="same", activation="relu")(image)
    b = L.Conv2D(8, 1, activation="tanh")(image)
    x = L.Add()([a, b])
    x = L.Concatenate()([x, L.Multiply()([a, b])])
    x = L.MaxPooling2D()(x)
    x = L.Permute((2, 1, 3))(x)
    x = L.Reshape((8, 128))(x)
    x = L.LSTM(10)(x)
    m = L.Dense(10, activation="elu")(meta)
    merged = L.Average()([x, m])
    merged = L.Maximum()([merged, L.Subtract()([x, m])])
    merged = L.LayerNormalization()(merged)
    label = L.Dense(4, activation="softmax", name="label")(merged)
    score = L.Dense(1, name="score")(L.Concatenate()([merged, meta]))
    return keras.Model([image, meta], [label, score], name="functional_merges")


def autoencoder(keras):
    """A convolutional autoencoder: strided convolutions down, Conv2DTranspose and UpSampling2D up."""
    L = keras.layers
    return keras.Sequential([
        keras.Input(shape=(28, 28, 1)),
        L.Conv2D(16, 3, strides=2, padding="same", activation="relu"),
        L.Conv2D(8, 3, strides=2, padding="same", activation="relu"),
        L.Conv2DTranspose(8, 3, strides=2, padding="same", activation="relu"),
        L.UpSampling2D(2, interpolation="bilinear"),
        L.Conv2D(8, 3, padding="same", activation="relu"),
        L.Conv2DTranspose(1, 3, padding="same", activation="sigmoid"),
    ], name="autoencoder")


def seed_cnn(keras):
    """The seed's CIFAR-10 CNN (torchport's hand port is `cifar10.SimpleCNN`)."""
    model = keras_cifar(keras)
    model.name = "sequential"
    return model


ZOO = {"mnist_convnet": mnist_convnet, "strided_bn": strided_bn, "text_bilstm": text_bilstm, "gru_model": gru_model,
       "functional_merges": functional_merges, "autoencoder": autoencoder, "seed_cnn": seed_cnn}


def build(keras, name: str, seed: int = 0):
    """The zoo model `name` with seeded weights and randomised moving statistics."""
    keras.utils.clear_session()
    keras.utils.set_random_seed(seed)
    model = ZOO[name](keras)
    randomize_statistics(model, seed)
    return model


def randomize_statistics(model, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if type(layer).__name__ == "BatchNormalization":
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape).astype(gamma.dtype),
                               rng.normal(0, 0.2, beta.shape).astype(beta.dtype),
                               rng.normal(0, 0.5, mean.shape).astype(mean.dtype),
                               rng.uniform(0.5, 2.0, var.shape).astype(var.dtype)])
