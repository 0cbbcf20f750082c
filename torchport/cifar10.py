"""The Keras CIFAR-10 CNN tutorial, ported onto torchport's engine.

`SimpleCNN` is the seed's Sequential model, layer for layer and named as Keras names them, with Keras'
initialisation and channels-last Flatten, so a Keras weight set loads by a plain layout conversion.
`forward` returns logits (the loss takes them, like Keras-on-TensorFlow does); `predict` returns the
softmax probabilities the Keras model outputs.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import distributed, engine
from .checkpoint import keras_checkpoints, run_identity
from .datasets.cifar import ARCHIVE_NAME, FOLDER, find_cifar, read_archive, read_cifar10
from .datasets.fetch import SAMPLE_DIR, locate
from .device import TensorLoader
from .fastpaths import Numerics, maybe_compile, training_warmup
from .keras_compat import KerasSGD, categorical_accuracy, categorical_crossentropy
from .keras_compat.layers import Dropout
from .keras_compat.summary import summary as keras_summary
from .keras_io import save_keras_weights
from .outputs import OutputSet, save_torch, write_json, write_plot
from .run_config import RunConfig

NUM_CLASSES = 10


class Flatten(nn.Module):
    """Keras' Flatten on channels-last data: features in (h, w, c) order, from an NCHW tensor."""

    def forward(self, x):
        return x.permute(0, 2, 3, 1).flatten(1)


class SimpleCNN(nn.Module):
    keras_layer_types = {"conv2d": "Conv2D", "dropout": "Dropout", "conv2d_1": "Conv2D",
                         "max_pooling2d": "MaxPooling2D", "flatten": "Flatten", "dense": "Dense",
                         "dropout_1": "Dropout", "dense_1": "Dense"}

    def __init__(self, num_classes: int = NUM_CLASSES):
        super().__init__()
        self.conv2d = nn.Conv2d(3, 32, kernel_size=(3, 3), padding="same")        # + relu
        self.dropout = Dropout(0.2)
        self.conv2d_1 = nn.Conv2d(32, 32, kernel_size=(3, 3), padding="same")     # + relu
        self.max_pooling2d = nn.MaxPool2d(kernel_size=(2, 2))
        self.flatten = Flatten()
        self.dense = nn.Linear(16 * 16 * 32, 512)                                 # + relu
        self.dropout_1 = Dropout(0.5)
        self.dense_1 = nn.Linear(512, num_classes)                                # + softmax (in predict)
        for layer in (self.conv2d, self.conv2d_1, self.dense, self.dense_1):
            nn.init.xavier_uniform_(layer.weight)  # glorot_uniform: the same fans for conv and dense
            nn.init.zeros_(layer.bias)

    def forward(self, x):
        x = F.relu(self.conv2d(x))
        x = self.dropout(x)
        x = F.relu(self.conv2d_1(x))
        x = self.max_pooling2d(x)
        x = self.flatten(x)
        x = F.relu(self.dense(x))
        x = self.dropout_1(x)
        return self.dense_1(x)

    @torch.no_grad()
    def predict(self, x, batch_size: int = 32) -> torch.Tensor:
        """Class probabilities in inference mode, like Keras' `model.predict`: batches go to the model's
        device and dtype, the result comes back on the CPU. `x` is NCHW, a tensor or a numpy array."""
        p = next(self.parameters())
        x = torch.as_tensor(x)
        was_training = self.training
        self.eval()
        try:
            return torch.cat([torch.softmax(self(x[i:i + batch_size].to(p.device, p.dtype)), dim=-1).cpu()
                              for i in range(0, len(x), batch_size)])
        finally:
            self.train(was_training)

    def summary(self, file=None):
        p = next(self.parameters())
        keras_summary(self, torch.zeros(1, 3, 32, 32, device=p.device, dtype=p.dtype), file=file)


def load_data(data_dir: str | None = None, log=print):
    """Keras' cifar10.load_data(): ((x_train, y_train), (x_test, y_test)), x uint8 (N, 32, 32, 3), y uint8 (N, 1)."""
    def download(root):
        from torchvision.datasets.utils import download_url
        download_url("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", root, ARCHIVE_NAME)

    folder = locate("CIFAR-10", data_dir, lambda d: find_cifar(d) is not None, download,
                    sample=f"{SAMPLE_DIR}/cifar-10-sample.tar.gz",
                    how_to_get=f"pass --data-dir with {FOLDER}/ or {ARCHIVE_NAME}", log=log)
    if folder.endswith(".tar.gz"):
        return read_archive(folder)
    return read_cifar10(folder)


def to_model_input(x: np.ndarray) -> torch.Tensor:
    """Keras' NHWC images -> a torch NCHW tensor of the same dtype (uint8 stays unscaled)."""
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def scale_images(x, y, dtype=torch.float32):
    """The script's `X / 255.0`, done per batch on the device from uint8 NHWC: the permute makes the batch
    NCHW in shape and channels-last in memory for free (the convolutions run faster so, on CPUs and on GPUs
    with tensor cores: README's speed section has the measurement)."""
    return x.permute(0, 3, 1, 2).to(dtype).div_(255), y


def make_loader(x: np.ndarray, y: np.ndarray, batch_size: int, device="cpu", shuffle: bool = False, seed=None,
                dtype=torch.float32, shard: tuple[int, int] = (0, 1)):
    """A tensor-resident loader over Keras-layout arrays (`shard`: this process' (rank, world) under torchrun).

    The images stay uint8 and NHWC, as Keras holds them, and are scaled per batch; the labels are one-hot
    once, as the script's `to_categorical` does, so a batch's targets are a row lookup."""
    xt = torch.from_numpy(np.ascontiguousarray(x)).to(device)
    labels = torch.from_numpy(np.asarray(y).reshape(-1).astype(np.int64))
    yt = F.one_hot(labels, NUM_CLASSES).to(dtype).to(device)
    transform = scale_images if dtype == torch.float32 else functools.partial(scale_images, dtype=dtype)
    return TensorLoader(xt, yt, batch_size, shuffle=shuffle, transform=transform, seed=seed, shard=shard)


# ---- the seed's script, as `torchport train cifar10` -----------------------------------------------------

@dataclass(kw_only=True)
class Cifar10Config(RunConfig):
    """The script's settings (and the run settings every port shares)."""

    epochs: int = 25
    batch_size: int = 32
    lr: float = 0.01
    momentum: float = 0.9
    legacy_decay: bool = False
    seed: int = 7
    amp: str | None = None          # the fast paths that change numerics are opt-in: --amp, --tf32, --compile
    tf32: bool = False
    compile: str | None = None
    cuda_graphs: bool = field(default=True, compare=False)  # proven equal to eager before use: not numerics
    data_dir: str | None = field(default=None, compare=False)
    out: str = field(default="runs/cifar10", compare=False)


def run(cfg: Cifar10Config) -> dict:
    """The Keras script, step for step: load, normalise, build, compile, summary, fit, evaluate."""
    group, device = distributed.setup(torch.device(cfg.device))  # one process, or one of torchrun's
    verbose = cfg.verbose if group.main else 0
    # fix random seed for reproducibility (the seed script seeds numpy only; we seed torch too)
    seed = cfg.seed
    np.random.seed(seed)
    torch.manual_seed(seed)

    # load data
    (X_train, y_train), (X_test, y_test) = load_data(cfg.data_dir)

    # normalize inputs from 0-255 to 0.0-1.0 and one hot encode outputs: per batch, on the device
    train_loader = make_loader(X_train, y_train, cfg.batch_size, device, shuffle=True, seed=seed,
                               shard=(group.rank, group.world))
    test_loader = make_loader(X_test, y_test, cfg.batch_size, device)

    # Create the model
    model = SimpleCNN(num_classes=NUM_CLASSES).to(device, memory_format=torch.channels_last)
    # Compile model
    epochs = cfg.epochs
    lrate = cfg.lr
    decay = lrate / epochs
    sgd = KerasSGD(model.parameters(), learning_rate=lrate, momentum=cfg.momentum, decay=decay,
                   nesterov=False, legacy_decay=cfg.legacy_decay)
    metrics = {"accuracy": categorical_accuracy}
    if verbose:
        print(model.summary())  # as the seed does: the table, then `None`

    # Checkpoints (torchport's addition: a Colab disconnect costs at most one epoch)
    history = engine.History()
    config = {**run_identity(cfg), "n_train": len(X_train)}
    torch.manual_seed(seed + group.rank)  # the training draws (dropout) start from the seed (per rank)...
    resume, callbacks = keras_checkpoints(cfg, config, model, sgd, train_loader, history, group)  # ...or a checkpoint's

    # Fit the model (the fast paths that break parity are opt-in: --tf32, --amp, --compile)
    trained = distributed.wrap(model, group, device)
    if cfg.compile:
        warmup = training_warmup(sgd, categorical_crossentropy, next(iter(test_loader)))
        trained = maybe_compile(trained, cfg.compile, warmup)
    numerics = Numerics(cfg.amp, cfg.tf32, cfg.cuda_graphs)
    engine.fit(trained, sgd, categorical_crossentropy, train_loader, epochs, metrics=metrics, val_loader=test_loader,
               verbose=verbose, history=history, callbacks=callbacks, resume=resume,
               aggregator=distributed.mean_for(group), numerics=numerics)
    # Final evaluation of the model
    scores = engine.evaluate(model, test_loader, categorical_crossentropy, metrics, numerics=numerics)
    if group.main:
        print("Accuracy: %.2f%%" % (scores["accuracy"] * 100))
    else:
        return {"history": history.history, "test": scores}  # rank 0 writes the outputs

    h = history.history
    with OutputSet(cfg.out) as out:
        write_json(out.path("history.json"), h)
        save_torch(out.path("model.pt"), model.state_dict())
        save_keras_weights(model, out.path("model.weights.h5"))  # loads into the Keras original
        write_plot(out.path("accuracy.png"), {"accuracy": h["accuracy"], "val_accuracy": h["val_accuracy"]},
                   "accuracy", "Accuracy vs. epochs")
        write_plot(out.path("loss.png"), {"loss": h["loss"], "val_loss": h["val_loss"]}, "loss", "Loss vs. epochs")
    return {"history": h, "test": scores}
