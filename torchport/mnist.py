"""The PyTorch MNIST feed-forward tutorial (784-32-10), ported onto torchport's engine.

The model and the function API (`accuracy`, `evaluate`, `fit`, the device trio) keep the tutorial's names
and signatures, so the notebook's driver runs unchanged after `from torchport.mnist import ...`.
`evaluate` and `fit` are a face over `torchport.engine`; they keep the tutorial's metric: the *unweighted*
mean of per-batch values (a last batch of 16 counts as much as one of 256). The engine itself reports
Keras' sample-weighted mean; the two agree whenever every batch has the same size.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import distributed, engine
from .callbacks import Callback
from .checkpoint import Checkpointer, resume_run, run_identity
from .datasets.fetch import SAMPLE_DIR, locate
from .datasets.idx import find_mnist_files, read_mnist
from .device import DeviceDataLoader, TensorLoader, get_default_device, to_device
from .distributed import is_main, unwrap
from .means import BatchMean, WeightedMean
from .outputs import OutputSet, save_torch, write_json, write_plot
from .run_config import RunConfig

__all__ = ["MnistModel", "accuracy", "evaluate", "fit", "get_default_device", "to_device",
           "DeviceDataLoader", "load_mnist", "split_train_val", "make_loader"]


def accuracy(outputs, labels):
    _, preds = torch.max(outputs, dim=1)
    return torch.sum(preds == labels) / len(preds)  # the tutorial's .item() removed: no host sync


class MnistModel(nn.Module):
    """Feedforward neural network with 1 hidden layer"""

    def __init__(self, in_size=784, hidden_size=32, out_size=10):
        super().__init__()
        # hidden layer
        self.linear1 = nn.Linear(in_size, hidden_size)
        # output layer
        self.linear2 = nn.Linear(hidden_size, out_size)

    def forward(self, xb):
        # Flatten the image tensors
        xb = xb.view(xb.size(0), -1)
        # Get intermediate outputs using hidden layer
        out = self.linear1(xb)
        # Apply activation function
        out = F.relu(out)
        # Get predictions using output layer
        out = self.linear2(out)
        return out

    def training_step(self, batch):
        images, labels = batch
        out = self(images)                  # Generate predictions
        loss = F.cross_entropy(out, labels) # Calculate loss
        return loss

    def validation_step(self, batch):
        images, labels = batch
        out = self(images)                    # Generate predictions
        loss = F.cross_entropy(out, labels)   # Calculate loss
        acc = accuracy(out, labels)           # Calculate accuracy
        return {'val_loss': loss, 'val_acc': acc}

    def validation_epoch_end(self, outputs):
        batch_losses = [x['val_loss'] for x in outputs]
        epoch_loss = torch.stack(batch_losses).mean()   # Combine losses
        batch_accs = [x['val_acc'] for x in outputs]
        epoch_acc = torch.stack(batch_accs).mean()      # Combine accuracies
        return {'val_loss': epoch_loss.item(), 'val_acc': epoch_acc.item()}

    def epoch_end(self, epoch, result):
        print("Epoch [{}], val_loss: {:.4f}, val_acc: {:.4f}".format(epoch, result['val_loss'], result['val_acc']))


# ---- the tutorial's training functions: a face over the engine ------------------------------------------

class _TutorialEpochEnd(Callback):
    """Calls the model's `epoch_end(epoch, result)` with the tutorial's result dict."""

    def on_epoch_end(self, epoch, logs=None):
        model = unwrap(self.model)  # the tutorial's module under a DDP wrapper (torchrun)
        if hasattr(model, "epoch_end") and is_main():
            model.epoch_end(epoch, _tutorial_result(logs))


def _tutorial_result(logs: dict) -> dict:
    return {"val_loss": logs["val_loss"], "val_acc": logs["val_acc"]}


def evaluate(model, val_loader):
    """The tutorial's evaluate: per-batch val_loss and val_acc, combined by their unweighted mean."""
    result = engine.evaluate(model, val_loader, F.cross_entropy, {"acc": accuracy}, aggregator=BatchMean)
    return {"val_loss": result["loss"], "val_acc": result["acc"]}


def fit(epochs, lr, model, train_loader, val_loader, opt_func=torch.optim.SGD, *, callbacks=(), resume=None,
        aggregator=WeightedMean, verbose=1):
    """The tutorial's fit: a fresh `opt_func(model.parameters(), lr)`, then `epochs` epochs on the engine.

    Returns the list of per-epoch result dicts (`val_loss`, `val_acc`), printing each with `epoch_end`.
    Keyword-only extras (not in the tutorial): engine callbacks, an `engine.ResumePoint` to continue from a
    checkpoint, the training metrics' aggregator (torchrun: `distributed.SyncedMean`), and `verbose=0` to
    print no `epoch_end` lines.
    """
    optimizer = opt_func(model.parameters(), lr)
    history = engine.fit(model, optimizer, F.cross_entropy, train_loader, epochs, val_loader=val_loader,
                         val_metrics={"acc": accuracy}, val_aggregator=BatchMean,
                         callbacks=[*([_TutorialEpochEnd()] if verbose else []), *callbacks], verbose=0,
                         resume=resume,
                         aggregator=aggregator)
    return [_tutorial_result(r) for r in history.records]


class _AppendResult(Callback):
    """Keeps the run's history list current epoch by epoch (a checkpoint stores it)."""

    def __init__(self, history: list):
        self.history = history

    def on_epoch_end(self, epoch, logs=None):
        self.history.append(_tutorial_result(logs))


# ---- data: the tutorial's MNIST + ToTensor + random_split, as device-resident tensors --------------------

def load_mnist(data_dir=None, log=print):
    """((x_train, y_train), (x_test, y_test)) as uint8 / int64 tensors, from `data_dir` or the default."""
    def download(root):
        from torchvision.datasets import MNIST
        MNIST(root, train=True, download=True)
        MNIST(root, train=False, download=True)

    folder = locate("MNIST", data_dir, lambda d: find_mnist_files(d) is not None, download,
                    sample=f"{SAMPLE_DIR}/mnist",
                    how_to_get="pass --data-dir with the four idx files (train-images-idx3-ubyte.gz, ...)",
                    log=log)
    (xtr, ytr), (xte, yte) = read_mnist(folder)
    def as_t(a, dt):
        return torch.from_numpy(np.array(a, dtype=dt))

    return (as_t(xtr, np.uint8), as_t(ytr, np.int64)), (as_t(xte, np.uint8), as_t(yte, np.int64))


def split_train_val(n: int, seed: int, val_size: int | None = None):
    """Indices of the tutorial's random_split (50,000 / 10,000 on the full set), seeded."""
    val_size = val_size if val_size is not None else (10000 if n == 60000 else n // 6)
    train, val = torch.utils.data.random_split(range(n), [n - val_size, val_size],
                                               generator=torch.Generator().manual_seed(seed))
    return torch.tensor(train.indices), torch.tensor(val.indices)


def to_float_images(x, y):
    """ToTensor's scaling, done per batch on the device: uint8 (N, 28, 28) -> float32 (N, 1, 28, 28) in [0, 1]."""
    return x.unsqueeze(1).float().div_(255), y


def make_loader(x, y, batch_size, device, shuffle=False, seed=None, shard=(0, 1)):
    """A tensor-resident loader: the uint8 images live on `device`, scaled batch by batch (`shard`: this
    process' (rank, world) under torchrun)."""
    return TensorLoader(x.to(device), y.to(device), batch_size, shuffle=shuffle, transform=to_float_images,
                        seed=seed, shard=shard)


# ---- the notebook's driver, as `torchport train mnist` ---------------------------------------------------

@dataclass(kw_only=True)
class MnistConfig(RunConfig):
    """The notebook's settings (and the run settings every port shares; `verbose=0` prints nothing)."""

    epochs: list[int] = field(default_factory=lambda: [5, 5])  # one fit(...) call per phase
    lr: list[float] = field(default_factory=lambda: [0.5, 0.1])
    batch_size: int = 128
    val_batch_size: int = 256
    data_dir: str | None = field(default=None, compare=False)
    out: str = field(default="runs/mnist", compare=False)


def _check_history(history) -> None:
    """A checkpoint's tutorial history: a list of {"val_loss", "val_acc"} numbers (raises otherwise)."""
    if not isinstance(history, list) or not all(isinstance(r, dict) and {"val_loss", "val_acc"} <= set(r)
                                                and all(isinstance(v, float) for v in r.values()) for r in history):
        raise ValueError("not the tutorial's list of val_loss / val_acc results")


def train_tutorial(cfg: MnistConfig):
    """The notebook's run on tensor-resident loaders: evaluate, fit(5, 0.5), fit(5, 0.1), test accuracy.

    With `checkpoint_dir`, every epoch is checkpointed; `resume` continues from the newest valid one,
    in whichever phase it was taken.
    """
    group, device = distributed.setup(torch.device(cfg.device))  # one process, or one of torchrun's
    quiet = lambda *a, **k: None  # noqa: E731
    log = print if group.main else quiet  # what it says about the data
    say = log if cfg.verbose else quiet  # the tutorial's lines (verbose=0: none)
    torch.manual_seed(cfg.seed)
    (x, y), (x_test, y_test) = load_mnist(cfg.data_dir, log=log)
    train_idx, val_idx = split_train_val(len(x), cfg.seed)
    train_loader = make_loader(x[train_idx], y[train_idx], cfg.batch_size, device, shuffle=True, seed=cfg.seed,
                               shard=(group.rank, group.world))
    val_loader = make_loader(x[val_idx], y[val_idx], cfg.val_batch_size, device)
    test_loader = make_loader(x_test, y_test, cfg.val_batch_size, device)

    model = MnistModel(in_size=784, hidden_size=32, out_size=10)
    to_device(model, device)
    trained = distributed.wrap(model, group, device)

    config = {**run_identity(cfg), "n_train": len(x)}
    state, resume = resume_run(cfg.checkpoint_dir, cfg.resume, config, model, None,
                               needs={"history": _check_history}, group=group)
    done, history = (resume.epoch, state["history"]) if state else (0, None)
    if history is None:
        history = [evaluate(model, val_loader)]
        say("Before training: val_loss: {:.4f}, val_acc: {:.4f}".format(history[0]["val_loss"],
                                                                        history[0]["val_acc"]))

    offset = 0
    for n, lr in zip(cfg.epochs, cfg.lr, strict=True):
        if done < offset + n:  # this phase is not finished yet
            callbacks = [_AppendResult(history)]
            if cfg.checkpoint_dir:
                callbacks.append(Checkpointer(cfg.checkpoint_dir, config, train_loader, cfg.keep_checkpoints,
                                              epoch_offset=offset, extra=lambda: {"history": history},
                                              resume_hint=cfg.resume_hint, group=group))
            if resume is not None:  # the phase the checkpoint was taken in: its own epoch count
                resume = dataclasses.replace(resume, epoch=max(done - offset, 0))
            fit(n, lr, trained, train_loader, val_loader, callbacks=callbacks, resume=resume,
                aggregator=distributed.mean_for(group), verbose=cfg.verbose)
            resume = None
        offset += n

    result = evaluate(model, test_loader)
    say("Test accuracy: {:.4f} (val_loss on test set: {:.4f})".format(result['val_acc'], result['val_loss']))
    return model, history, result


def run(cfg: MnistConfig) -> dict:
    """`torchport train mnist`: the tutorial's run, then history.json, test.json and the two plots."""
    model, history, result = train_tutorial(cfg)
    if not is_main():
        return {"history": history, "test": result}  # rank 0 writes the outputs
    with OutputSet(cfg.out) as out:
        save_torch(out.path("model.pt"), model.state_dict())
        write_json(out.path("history.json"), history)
        write_json(out.path("test.json"), {"test_loss": result["val_loss"], "test_acc": result["val_acc"]})
        write_plot(out.path("accuracy.png"), {"val_acc": [r["val_acc"] for r in history]},
                   "accuracy", "Accuracy vs. No. of epochs", first_epoch=0)
        write_plot(out.path("loss.png"), {"val_loss": [r["val_loss"] for r in history]},
                   "loss", "Loss vs. No. of epochs", first_epoch=0)
    if cfg.verbose:
        print(f"Wrote {cfg.out}/history.json, test.json, model.pt, accuracy.png, loss.png")
    return {"history": history, "test": result}
