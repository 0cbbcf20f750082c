"""THE training loop. Both tutorial ports train and evaluate through `fit` and `evaluate` here.

Keras semantics by default: the reported training loss and metrics are running means over the epoch,
weighted by batch size, of the training-mode forward pass before each update; validation runs in eval
mode under no_grad over the whole set. Sums stay on the device and are read once per epoch (or when a
progress bar refreshes), so the hot loop has no host sync.
"""
from __future__ import annotations

import itertools
from typing import Callable, Iterable, Mapping

import torch

from .errors import NonFiniteLossError

Metric = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (outputs, targets) -> batch mean


class WeightedMean:
    """Keras' aggregation: sum(value_b * n_b) / sum(n_b) over the batches seen so far.

    Each step's batch means are copied into one preallocated device buffer (a single small copy, no
    host sync); the means are computed when `result()` is read: once per epoch, or when a bar refreshes.
    """

    def __init__(self, names: Iterable[str], steps: int = 0):
        self.names = list(names)
        self.capacity = max(int(steps), 1)
        self.buffer = None
        self.sizes: list[int] = []

    def update(self, values: torch.Tensor, n: int, step: int) -> None:
        """`values`: 1-D tensor of this batch's means, in the order of `names` (loss first)."""
        if self.buffer is None:
            self.buffer = values.new_empty((self.capacity, len(self.names)))
        elif step >= len(self.buffer):
            self.buffer = torch.cat([self.buffer, torch.empty_like(self.buffer)])
        self.buffer[step] = values
        self.sizes.append(n)

    def weights(self) -> torch.Tensor:
        return torch.tensor(self.sizes, dtype=self.buffer.dtype, device=self.buffer.device)

    def bad_step(self) -> int | None:
        """The first step whose loss was not finite, or None. Reads the device (a sync)."""
        if self.buffer is None:
            return None
        bad = (~torch.isfinite(self.buffer[:len(self.sizes), 0])).nonzero()
        return int(bad[0, 0]) if len(bad) else None

    def result(self) -> dict[str, float]:
        if self.buffer is None:
            return {}
        w = self.weights()
        means = (w @ self.buffer[:len(self.sizes)].detach()) / w.sum()
        return dict(zip(self.names, means.tolist()))


class BatchMean(WeightedMean):
    """The PyTorch tutorial's aggregation: the unweighted mean of per-batch values."""

    def weights(self) -> torch.Tensor:
        return torch.ones(len(self.sizes), dtype=self.buffer.dtype, device=self.buffer.device)


class Callback:
    """Keras-style hooks. `fit` sets `self.model`, `self.optimizer` and `self.params` first."""

    model = optimizer = None
    params: dict = {}

    def on_train_begin(self, logs=None): ...
    def on_epoch_begin(self, epoch, logs=None): ...
    def on_train_batch_end(self, step, aggregator: WeightedMean): ...
    def on_epoch_end(self, epoch, logs=None): ...
    def on_train_end(self, logs=None): ...


class History(Callback):
    """Per-epoch records plus Keras' `history` dict of lists."""

    def __init__(self):
        self.epoch: list[int] = []
        self.history: dict[str, list[float]] = {}

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(v)

    @property
    def records(self) -> list[dict[str, float]]:
        return [{k: v[i] for k, v in self.history.items()} for i in range(len(self.epoch))]


def _len(loader) -> int:
    try:
        return len(loader)
    except TypeError:
        return 0


def _batch_values(outputs, targets, loss, metrics: Mapping[str, Metric]) -> torch.Tensor:
    dtype = torch.promote_types(loss.dtype, torch.float32)  # bf16/fp16 losses (AMP) are summed in float32
    with torch.no_grad():
        return torch.stack([loss.detach().to(dtype), *(m(outputs, targets).to(dtype) for m in metrics.values())])


def evaluate(model: torch.nn.Module, loader, loss_fn, metrics: Mapping[str, Metric] | None = None,
             aggregator: type[WeightedMean] = WeightedMean) -> dict[str, float]:
    """Loss and metrics over the whole loader, in eval mode, without gradients."""
    metrics = dict(metrics or {})
    agg = aggregator(["loss", *metrics], _len(loader))
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for step, (x, y) in enumerate(loader):
            out = model(x)
            agg.update(_batch_values(out, y, loss_fn(out, y), metrics), len(x), step)
    model.train(was_training)
    return agg.result()


def fit(model: torch.nn.Module, optimizer: torch.optim.Optimizer, loss_fn, train_loader, epochs: int, *,
        metrics: Mapping[str, Metric] | None = None, val_loader=None, callbacks: Iterable[Callback] = (),
        verbose: int = 2, initial_epoch: int = 0, history: History | None = None,
        val_aggregator: type[WeightedMean] = WeightedMean, val_metrics: Mapping[str, Metric] | None = None,
        resume_step: int = 0, resume_aggregator=None, amp: str | None = None) -> History:
    """Train `epochs` epochs (from `initial_epoch`) and return the History. Keras' `fit`, in torch.

    `metrics` are reported for training and validation; `val_metrics`, when given, for validation only.
    `resume_step` and `resume_aggregator` (buffer, sizes) continue an epoch a checkpoint interrupted.
    `amp` ("bf16" / "fp16") autocasts the forward pass and loss (off by default: it breaks parity).
    """
    from .fastpaths import autocast, grad_scaler
    from .keras_compat.progbar import ProgbarLogger  # logging lives beside the other Keras semantics

    metrics = dict(metrics or {})
    history = history if history is not None else History()
    callbacks = [history, *callbacks] + ([ProgbarLogger(verbose)] if verbose else [])
    params = {"epochs": epochs, "steps": _len(train_loader), "verbose": verbose}
    for cb in callbacks:
        cb.model, cb.optimizer, cb.params = model, optimizer, params
    model.stop_training = False
    device = next(model.parameters()).device
    scaler = grad_scaler(device, amp)

    for cb in callbacks:
        cb.on_train_begin()
    for epoch in range(initial_epoch, epochs):
        for cb in callbacks:
            cb.on_epoch_begin(epoch)
        model.train()
        agg = WeightedMean(["loss", *metrics], _len(train_loader))
        batches = enumerate(train_loader)
        if epoch == initial_epoch and resume_step:  # the same permutation, its first steps already done
            batches = itertools.islice(batches, resume_step, None)
            agg.buffer, agg.sizes = resume_aggregator[0].clone(), list(resume_aggregator[1])
        for step, (x, y) in batches:
            with autocast(device, amp):
                outputs = model(x)
                loss = loss_fn(outputs, y)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            agg.update(_batch_values(outputs, y, loss, metrics), len(x), step)
            for cb in callbacks:
                cb.on_train_batch_end(step, agg)
        bad = agg.bad_step()
        if bad is not None:
            raise NonFiniteLossError(epoch, bad)
        logs = agg.result()
        if val_loader is not None:
            val = evaluate(model, val_loader, loss_fn, metrics if val_metrics is None else val_metrics,
                           val_aggregator)
            logs.update({f"val_{k}": v for k, v in val.items()})
        for cb in callbacks:
            cb.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    for cb in callbacks:
        cb.on_train_end()
    return history
