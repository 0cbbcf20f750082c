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


# ---- real models, compiled as their sources compile them: what `parity --model` is calibrated on -------------

def timeseries_fcn(keras):
    """keras.io "Timeseries classification from scratch" (FordA: 500 steps, 2 classes): 3 x (Conv1D(64, 3,
    same) -> BatchNormalization -> ReLU), GlobalAveragePooling1D, Dense softmax."""
    L = keras.layers
    inputs = keras.Input((500, 1))
    x = inputs
    for _ in range(3):
        x = L.Conv1D(filters=64, kernel_size=3, padding="same")(x)
        x = L.BatchNormalization()(x)
        x = L.ReLU()(x)
    x = L.GlobalAveragePooling1D()(x)
    return keras.Model(inputs, L.Dense(2, activation="softmax")(x), name="timeseries_fcn")


def conv_bn(keras):
    """The smallest BatchNormalization model: Conv2D(8) -> BatchNormalization -> GAP -> Dense softmax."""
    L = keras.layers
    return keras.Sequential([keras.Input((16, 16, 3)), L.Conv2D(8, 3), L.BatchNormalization(),
                             L.GlobalAveragePooling2D(), L.Dense(10, activation="softmax")], name="conv_bn")


def mobilenet_v2(keras):
    """keras.applications MobileNetV2 at alpha 0.35 on 96x96 images, 10 classes (weights=None builds offline)."""
    return keras.applications.MobileNetV2(input_shape=(96, 96, 3), alpha=0.35, weights=None, classes=10)


def resnet50(keras):
    """keras.applications ResNet50 as built: 224x224, a 1000-way softmax, 25.6M parameters."""
    return keras.applications.ResNet50(weights=None)


REAL = {"timeseries_fcn": timeseries_fcn, "conv_bn": conv_bn, "mobilenet_v2": mobilenet_v2, "resnet50": resnet50}
COMPILE = {  # (optimizer, loss, metrics) as each source compiles its model; resnet50 is ported as built
    "timeseries_fcn": (lambda k: k.optimizers.Adam(), "sparse_categorical_crossentropy",
                       ["sparse_categorical_accuracy"]),
    "conv_bn": (lambda k: k.optimizers.SGD(0.01), "sparse_categorical_crossentropy", ["accuracy"]),
    "mobilenet_v2": (lambda k: k.optimizers.SGD(0.01, momentum=0.9), "sparse_categorical_crossentropy", ["accuracy"]),
}  # (the KERAS_IO examples' entries are below them)


def build(keras, name: str, seed: int = 0):
    """The zoo model `name` with seeded weights and randomised moving statistics, or a REAL or KERAS_IO one
    with its statistics those of a batch (`calibrate_statistics`), compiled as its source compiles it."""
    keras.utils.clear_session()
    keras.utils.set_random_seed(seed)
    model = {**ZOO, **REAL, **KERAS_IO}[name](keras)
    if name in REAL or name in KERAS_IO:
        calibrate_statistics(model, seed)
    else:
        randomize_statistics(model, seed)
    if name in COMPILE:  # each entry a value or, where it is a Keras object, a function of keras making it
        optimizer, loss, metrics = (v(keras) if callable(v) else v for v in COMPILE[name])
        model.compile(optimizer=optimizer, loss=loss, metrics=metrics)
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


def calibrate_statistics(model, seed: int = 0) -> None:
    """BatchNormalization as a trained network has it: gamma and beta drawn around 1 and 0, the moving
    statistics those of one batch (images in [0, 1], other inputs standard normal) flowing through the model,
    layer after layer (one training-mode pass with momentum 0). Random moving statistics saturate a deep
    network instead: MobileNetV2's last ReLU6 sat at 6 everywhere, and every input gave the same logits,
    so no forward check could see a wrong depthwise kernel; Keras' defaults (0 and 1) vanish its activations
    to 1e-11."""
    rng = np.random.default_rng(seed)
    norms = [layer for layer in model.layers if type(layer).__name__ == "BatchNormalization"]
    for layer in norms:  # gamma and beta where the layer has them (EfficientNet's have no gamma: scale=False)
        weights = layer.get_weights()
        drawn = [rng.uniform(0.5, 1.5, weights[0].shape) if layer.scale else None,
                 rng.normal(0, 0.2, weights[0].shape) if layer.center else None]
        drawn = [d.astype(weights[0].dtype) for d in drawn if d is not None]
        layer.set_weights(drawn + weights[len(drawn):])
    shape = (16, *model.input_shape[1:])
    x = rng.uniform(0, 1, shape) if len(shape) == 4 else rng.standard_normal(shape)
    momenta = [layer.momentum for layer in norms]
    for layer in norms:
        layer.momentum = 0.0
    model(x.astype("float32"), training=True)
    for layer, momentum in zip(norms, momenta, strict=True):
        layer.momentum = momentum


# ---- keras.applications: every family (weights=None builds offline; ImageNet weights load the same way) -------

APPLICATIONS = {  # family -> (members, the smallest input side the family's first member takes)
    "Xception": (["Xception"], 71),
    "VGG": (["VGG16", "VGG19"], 32),
    "ResNet": (["ResNet50", "ResNet101", "ResNet152"], 32),
    "ResNetV2": (["ResNet50V2", "ResNet101V2", "ResNet152V2"], 32),
    "InceptionV3": (["InceptionV3"], 75),
    "InceptionResNetV2": (["InceptionResNetV2"], 75),
    "MobileNet": (["MobileNet"], 32),
    "MobileNetV2": (["MobileNetV2"], 32),
    "MobileNetV3": (["MobileNetV3Small", "MobileNetV3Large"], 32),
    "DenseNet": (["DenseNet121", "DenseNet169", "DenseNet201"], 32),
    "NASNet": (["NASNetMobile", "NASNetLarge"], 224),  # NASNet rebuilds its cells for its own input side only
    "EfficientNet": ([f"EfficientNetB{i}" for i in range(8)], 32),
    "EfficientNetV2": ([f"EfficientNetV2B{i}" for i in range(4)] + ["EfficientNetV2S", "EfficientNetV2M",
                                                                      "EfficientNetV2L"], 32),
    "ConvNeXt": ([f"ConvNeXt{s}" for s in ("Tiny", "Small", "Base", "Large", "XLarge")], 32),
}


def application(keras, member: str, size: int | None = None, classes: int = 1000, seed: int = 0, **kwargs):
    """keras.applications.<member>, weights=None, at `size` x `size` (None: its own default), seeded, its
    BatchNormalization statistics those of a batch (`calibrate_statistics`)."""
    keras.utils.clear_session()
    keras.utils.set_random_seed(seed)
    shape = None if size is None else (size, size, 3)
    model = getattr(keras.applications, member)(weights=None, input_shape=shape, classes=classes, **kwargs)
    if None in model.input_shape[1:]:  # MobileNetV3 leaves its side open by default: its ImageNet side, 224
        model = getattr(keras.applications, member)(weights=None, input_shape=(224, 224, 3), classes=classes,
                                                    **kwargs)
    calibrate_statistics(model, seed)
    return model


# ---- keras.io examples rebuilt (smaller where the original's size only costs time) ------------------------------

def image_classification_from_scratch(keras):
    """keras.io "Image classification from scratch" (cats vs dogs): augmentation in the model (RandomFlip,
    RandomRotation), Rescaling, an entry block, residual separable-conv blocks, one logit; 64x64 here."""
    L = keras.layers
    inputs = keras.Input((64, 64, 3))
    x = L.RandomFlip("horizontal")(inputs)
    x = L.RandomRotation(0.1)(x)
    x = L.Rescaling(1.0 / 255)(x)
    x = L.Conv2D(32, 3, strides=2, padding="same")(x)
    x = L.BatchNormalization()(x)
    x = L.Activation("relu")(x)
    previous = x
    for size in (64, 128):
        x = L.Activation("relu")(x)
        x = L.SeparableConv2D(size, 3, padding="same")(x)
        x = L.BatchNormalization()(x)
        x = L.Activation("relu")(x)
        x = L.SeparableConv2D(size, 3, padding="same")(x)
        x = L.BatchNormalization()(x)
        x = L.MaxPooling2D(3, strides=2, padding="same")(x)
        residual = L.Conv2D(size, 1, strides=2, padding="same")(previous)
        x = L.add([x, residual])
        previous = x
    x = L.SeparableConv2D(256, 3, padding="same")(x)
    x = L.BatchNormalization()(x)
    x = L.Activation("relu")(x)
    x = L.GlobalAveragePooling2D()(x)
    x = L.Dropout(0.25)(x)
    return keras.Model(inputs, L.Dense(1, activation=None)(x), name="image_classification_from_scratch")


def structured_regression(keras):
    """tensorflow.org's "Basic regression" (auto-MPG): Normalization adapted to the 9 features, two Dense(64)
    relu layers, one output (trained with MAE and Adam)."""
    L = keras.layers
    rng = np.random.default_rng(0)
    features = rng.normal([5.5, 195, 105, 2990, 15.6, 76, 0.6, 0.2, 0.2], [1.7, 104, 38, 843, 2.8, 3.7, 0.5, 0.4, 0.4],
                          (314, 9)).astype("float32")
    norm = L.Normalization(axis=-1)
    norm.adapt(features)
    return keras.Sequential([keras.Input((9,)), norm, L.Dense(64, activation="relu"), L.Dense(64, activation="relu"),
                             L.Dense(1)], name="structured_regression")


def mobilenet_v3_small(keras):
    """keras.applications MobileNetV3Small (its hard_swish and hard_sigmoid are recorded operations,
    `x + 3.0` and `* (1/6)`) at 96x96, alpha 0.75, 10 logits."""
    return keras.applications.MobileNetV3Small(input_shape=(96, 96, 3), alpha=0.75, weights=None, classes=10,
                                               classifier_activation=None)


def timeseries_transformer(keras, steps: int = 500, features: int = 1, head_size: int = 32, mlp: int = 128):
    """keras.io "Timeseries classification with a Transformer model" (FordA, 500 steps), 2 encoder blocks of
    head_size 32, 2 heads (the original has 4 blocks of 256 and 4 heads), and its MLP head."""
    L = keras.layers
    inputs = keras.Input((steps, features))
    x = inputs
    for _ in range(2):
        h = L.MultiHeadAttention(key_dim=head_size, num_heads=2, dropout=0.25)(x, x)
        h = L.Dropout(0.25)(h)
        h = L.LayerNormalization(epsilon=1e-6)(h)
        res = h + x
        h = L.Conv1D(filters=4, kernel_size=1, activation="relu")(res)
        h = L.Dropout(0.25)(h)
        h = L.Conv1D(filters=x.shape[-1], kernel_size=1)(h)
        h = L.LayerNormalization(epsilon=1e-6)(h)
        x = h + res
    x = L.GlobalAveragePooling1D(data_format="channels_first")(x)
    x = L.Dense(mlp, activation="relu")(x)
    x = L.Dropout(0.4)(x)
    return keras.Model(inputs, L.Dense(2, activation="softmax")(x), name="timeseries_transformer")


def transfer_learning(keras):
    """keras.io "Transfer learning & fine-tuning": a frozen keras.applications base nested in the model
    (here MobileNetV2, alpha 0.35, 96x96), augmentation, Rescaling to [-1, 1], pooling, dropout, one logit."""
    L = keras.layers
    base = keras.applications.MobileNetV2(input_shape=(96, 96, 3), alpha=0.35, weights=None, include_top=False)
    calibrate_statistics(base)
    base.trainable = False
    inputs = keras.Input((96, 96, 3))
    x = L.RandomFlip("horizontal")(inputs)
    x = L.Rescaling(1 / 127.5, offset=-1)(x)
    x = base(x, training=False)
    x = L.GlobalAveragePooling2D()(x)
    x = L.Dropout(0.2)(x)
    return keras.Model(inputs, L.Dense(1)(x), name="transfer_learning")


KERAS_IO = {"image_classification_from_scratch": image_classification_from_scratch,
            "structured_regression": structured_regression, "mobilenet_v3_small": mobilenet_v3_small,
            "timeseries_transformer": timeseries_transformer, "transfer_learning": transfer_learning}
COMPILE.update({  # as each example compiles its model
    "image_classification_from_scratch": (lambda k: k.optimizers.Adam(3e-4),
                                          lambda k: k.losses.BinaryCrossentropy(from_logits=True),
                                          lambda k: [k.metrics.BinaryAccuracy(name="acc")]),
    "structured_regression": (lambda k: k.optimizers.Adam(0.001), "mean_absolute_error", None),
    "mobilenet_v3_small": (lambda k: k.optimizers.SGD(0.01, momentum=0.9),
                           lambda k: k.losses.SparseCategoricalCrossentropy(from_logits=True), ["accuracy"]),
    "timeseries_transformer": (lambda k: k.optimizers.Adam(1e-4), "sparse_categorical_crossentropy",
                               ["sparse_categorical_accuracy"]),
    "transfer_learning": (lambda k: k.optimizers.Adam(), lambda k: k.losses.BinaryCrossentropy(from_logits=True),
                          lambda k: [k.metrics.BinaryAccuracy()]),
})
