"""THE training loop. Every port and every ported model trains and evaluates through `fit` and `evaluate`.

Keras semantics by default: the reported training loss and metrics are running means over the epoch,
weighted by batch size, of the training-mode forward pass before each update; validation runs in eval
mode under no_grad over the whole set. Sums stay on the device and are read once per epoch (or when a
progress bar refreshes), so the hot loop has no host sync.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from collections.abc import Callable, Iterable, Mapping

import torch

from . import cuda_graphs as graphing
from .callbacks import Callback, History
from .errors import NonFiniteLossError
from .fastpaths import EXACT, Numerics, autocast, grad_scaler, numerics as precision, resolve_amp
from .keras_compat.progbar import ProgbarLogger
from .means import RATIO, WeightedMean

__all__ = ["fit", "evaluate", "History", "Callback", "ResumePoint", "WeightedMean", "Numerics"]

Metric = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (outputs, targets) -> batch mean


@dataclass
class ResumePoint:
    """Where an interrupted run stopped: `epoch` epochs done, then `step` steps of the next one.

    `loader` is the loader's state at the start of the epoch to run next (mid-epoch: of the interrupted
    epoch, which redraws its permutation); mid-epoch (`step` > 0) the running sums come with it. Each
    object saves and loads its own state.
    """

    epoch: int = 0
    step: int = 0
    aggregator: dict | None = None
    loader: dict | None = None
    scaler: dict | None = None  # fp16: the GradScaler's scale and growth tracker


def _len(loader) -> int:
    try:
        return len(loader)
    except TypeError:
        return 0


def _device(model: torch.nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def batch_size(x) -> int:
    """Samples in a batch whose inputs are a tensor, or a tuple/list/dict of them (several inputs)."""
    if isinstance(x, dict):
        x = next(iter(x.values()))
    elif isinstance(x, (tuple, list)):
        x = x[0]
    return len(x)


def columns(metrics: Mapping[str, Metric]) -> list[str]:
    """The aggregator's columns: the loss, then each metric; a ratio metric (`ratio = True`: it returns its
    numerator and denominator, a sample-weighted mean) takes two (means.RATIO)."""
    return ["loss", *(c for k, m in metrics.items() for c in ((k, k + RATIO) if getattr(m, "ratio", False) else (k,)))]


def forward(model, x):
    """The model on a batch's inputs: a tuple of them (a model of several inputs) goes in as arguments."""
    return model(*x) if isinstance(x, tuple) else model(x)


def _batch_values(outputs, targets, loss, metrics: Mapping[str, Metric]) -> torch.Tensor:
    dtype = torch.promote_types(loss.dtype, torch.float32)  # bf16/fp16 losses (AMP) are summed in float32
    with torch.no_grad():
        return torch.cat([loss.detach().to(dtype).reshape(1),
                          *(m(outputs, targets).to(dtype).reshape(-1) for m in metrics.values())])


def train_step(model, optimizer, loss_fn, metrics: Mapping[str, Metric], scaler, device, amp):
    """One training step as a function of the batch, returning the batch's (loss, *metrics) on the device.

    `share` is this process' share of a global batch under torchrun (1.0 otherwise)."""
    def step(x, y, share: float = 1.0) -> torch.Tensor:
        with autocast(device, amp):
            outputs = forward(model, x)
            loss = loss_fn(outputs, y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss if share == 1.0 else loss * share).backward()
        scaler.step(optimizer)
        scaler.update()
        return _batch_values(outputs, y, loss, metrics)
    return step


def _graphed(step, model, optimizer, device, amp, cuda_graphs: bool):
    """On CUDA, the step replayed from a CUDA graph once a replay is proven equal to eager (cuda_graphs.py)."""
    backend = graphing.backend_for(device) if cuda_graphs else None
    if backend is None or graphing.why_not(model, optimizer, amp):
        return step
    return graphing.GraphedStep(step, model, optimizer, backend)


def evaluate(model: torch.nn.Module, loader, loss_fn, metrics: Mapping[str, Metric] | None = None,
             aggregator: type[WeightedMean] = WeightedMean, numerics: Numerics = EXACT) -> dict[str, float]:
    """Loss and metrics over the whole loader, in eval mode, without gradients."""
    metrics = dict(metrics or {})
    agg = aggregator(columns(metrics), _len(loader))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), precision(_device(model), numerics.tf32):
            for step, (x, y) in enumerate(loader):
                out = forward(model, x)
                agg.update(_batch_values(out, y, loss_fn(out, y), metrics), batch_size(x), step)
    finally:
        model.train(was_training)
    return agg.result()


def fit(model: torch.nn.Module, optimizer: torch.optim.Optimizer, loss_fn, train_loader, epochs: int, *,
        metrics: Mapping[str, Metric] | None = None, val_loader=None, callbacks: Iterable[Callback] = (),
        verbose: int = 2, initial_epoch: int = 0, history: History | None = None,
        val_aggregator: type[WeightedMean] = WeightedMean, val_metrics: Mapping[str, Metric] | None = None,
        resume: ResumePoint | None = None, aggregator: type[WeightedMean] = WeightedMean,
        numerics: Numerics = EXACT, validation_freq: int = 1) -> History:
    """Train `epochs` epochs (from `initial_epoch`, or from `resume`) and return the History. Keras' `fit`.

    `metrics` are reported for training and validation; `val_metrics`, when given, for validation only;
    validation runs after every `validation_freq`-th epoch.
    `aggregator` sums the epoch's metrics (under torchrun: `distributed.SyncedMean`, over every rank).
    `numerics`: mixed precision and TF32 (both off by default: they break parity; the flags are set for the
    run and restored when fit returns) and, on CUDA, the step replayed from a CUDA graph where that is
    proven to give eager's numbers.
    Callbacks' `on_train_end` and the model's train/eval mode are restored however the loop ends.
    """
    metrics = dict(metrics or {})
    history = history if history is not None else History()
    callbacks = list(callbacks)  # Keras' order: the user's callbacks (they may add to the logs), then History
    callbacks = [*(c for c in callbacks if not c.after_history), history,
                 *(c for c in callbacks if c.after_history)] + ([ProgbarLogger(verbose)] if verbose else [])
    device = _device(model)
    amp = resolve_amp(device, numerics.amp)
    scaler = grad_scaler(device, amp)
    params = {"epochs": epochs, "steps": _len(train_loader), "verbose": verbose, "grad_scaler": scaler}
    for cb in callbacks:
        cb.model, cb.optimizer, cb.params = model, optimizer, params
    model.stop_training = False
    if resume is not None:
        initial_epoch = resume.epoch
        if resume.scaler and scaler.is_enabled():
            scaler.load_state_dict(resume.scaler)
    step_fn = _graphed(train_step(model, optimizer, loss_fn, metrics, scaler, device, amp), model, optimizer,
                       device, amp, numerics.cuda_graphs)
    was_training, finished = model.training, False
    with precision(device, numerics.tf32):  # TF32 as asked; deterministic cuDNN on CUDA; the caller's flags after
        try:
            for cb in callbacks:
                cb.on_train_begin()
            for epoch in range(initial_epoch, epochs):
                if model.stop_training:  # (a resumed EarlyStopping that had stopped the run)
                    break
                agg = aggregator(columns(metrics), _len(train_loader))
                skip = 0
                if epoch == initial_epoch and resume is not None:
                    if resume.loader is not None:  # the permutation this epoch draws (mid-epoch: first steps done)
                        train_loader.load_state_dict(resume.loader)
                    if resume.step:
                        agg.load_state_dict(resume.aggregator, device)
                        skip = resume.step
                for cb in callbacks:
                    cb.on_epoch_begin(epoch)
                model.train()
                for step, (x, y) in itertools.islice(enumerate(train_loader), skip, None):
                    share = getattr(train_loader, "grad_scale", 1.0)  # torchrun: this rank's share of the batch
                    agg.update(step_fn(x, y, share), batch_size(x), step)
                    for cb in callbacks:
                        cb.on_train_batch_end(step, agg)
                bad = agg.bad_step()
                if bad is not None:
                    raise NonFiniteLossError(epoch, bad)
                logs = agg.result()
                if val_loader is not None and (epoch + 1) % validation_freq == 0:  # Keras' validation_freq
                    val = evaluate(model, val_loader, loss_fn, metrics if val_metrics is None else val_metrics,
                                   val_aggregator, numerics)
                    logs.update({f"val_{k}": v for k, v in val.items()})
                for cb in callbacks:
                    cb.on_epoch_end(epoch, logs)
                if model.stop_training:
                    break
            finished = True
        finally:
            try:
                _end_training(callbacks, raise_errors=finished)  # a failing loop's own error is the one raised
            finally:
                model.train(was_training)
    return history


def _end_training(callbacks, raise_errors: bool) -> None:
    """Every callback's `on_train_end`, even after one of them raised (the Checkpointer's signal handlers
    must come back whatever a callback before it does); then the first such error, if asked."""
    error = None
    for cb in callbacks:
        try:
            cb.on_train_end()
        except Exception as e:
            error = error or e
    if error is not None and raise_errors:
        raise error
