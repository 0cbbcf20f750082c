"""`torchport fit MODEL.keras --data DATA.npz`: a ported Keras model trained as Keras' `model.fit` trains it.

The module `torchport port` generates, the optimizer, loss and metrics of the file's compile settings
(`compile.py`), the data as Keras' `fit` batches it (`data.py`) and the one engine every port trains on.
Writes what a Keras user takes back: history.json, model.weights.h5 and model.keras (Keras opens both),
weights.pt, and a plot per metric.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import torch

from .. import distributed, engine
from ..checkpoint import keras_checkpoints, run_identity
from ..distributed import SINGLE
from ..errors import UnsupportedError, UsageError
from ..fastpaths import Numerics
from ..keras_compat import callbacks, sparse_rows
from ..outputs import OutputSet, save_torch, write_atomic, write_json, write_plot
from ..porting.plan import plan_file
from ..porting.writer import keras_archive_bytes, weights_h5_bytes
from ..run_config import RunConfig
from . import compile as compiling, penalties
from .callback_flags import check_monitors
from .data import check_fits_model, io_names, load_npz, make_loaders, splits


@dataclass(kw_only=True)
class FitConfig(RunConfig):
    """`torchport fit`'s settings (and the run settings every port shares)."""

    model: str
    data: str
    epochs: int = 1
    batch_size: int = 32
    shuffle: bool = True
    validation_split: float | None = None
    optimizer: str | None = None
    lr: float | None = None
    loss: str | None = None
    metrics: list[str] | None = None
    class_weight: dict | None = None  # class id -> weight (Keras' class_weight)
    validation_freq: int = 1
    stream: bool = field(default=False, compare=False)  # inputs stay on the host, a batch moved at a time
    early_stopping: dict | None = None        # Keras' keyword arguments of each callback (callback_flags.py)
    reduce_lr_on_plateau: dict | None = None
    save_best: dict | None = None
    csv_log: str | None = field(default=None, compare=False)
    tensorboard: str | None = field(default=None, compare=False)
    cuda_graphs: bool = field(default=True, compare=False)  # proven equal to eager before use: not numerics
    out: str = field(default="runs/fit", compare=False)


def compile_config_of(compiled, file_config: dict | None, cfg: FitConfig) -> dict:
    """The Keras 3 compile_config of what was trained, for model.keras: the file's own loss and metrics
    entries (with their options: from_logits, k, ...) unless a flag replaced them; the optimizer as trained
    (the file's with --lr applied, or --optimizer's). A legacy .h5's training_config is turned into this form."""
    options = dict(compiled.options)
    lr = options.pop("learning_rate", None)
    if isinstance(lr, dict):
        lr = {"module": "keras.optimizers.schedules", **lr, "registered_name": None}
    config = {"name": compiled.optimizer.lower(), **({} if lr is None else {"learning_rate": lr}),
              **{k: v for k, v in options.items() if k not in ("decay", "legacy_decay")}}
    cc = {"loss_weights": None, "weighted_metrics": None, "run_eagerly": False, "steps_per_execution": 1,
          "jit_compile": False, **{k: v for k, v in (file_config or {}).items() if k != "optimizer_config"}}
    cc["optimizer"] = {"module": "keras.optimizers", "class_name": compiled.optimizer, "config": config,
                       "registered_name": None}
    if cfg.loss is not None or "loss" not in cc:
        names = [loss.name for loss in compiled.losses]
        cc["loss"] = names[0] if len(names) == 1 else names
    if cfg.metrics is not None or "metrics" not in cc:
        cc["metrics"] = list(cfg.metrics or []) or None
    return cc


@dataclass
class Setup:
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    compiled: object
    train_loader: object
    val_loader: object


def setup(plan, arrays: dict, cfg: FitConfig, model: torch.nn.Module | None = None, group=None,
          device: torch.device | None = None) -> Setup:
    """Everything `fit` trains with, checked: the compile settings, the data against the model and loss,
    the loaders (sharded under torchrun), the module (in train mode, on the device) and its optimizer."""
    group = group or SINGLE
    masked = [t for t in plan.outputs if t.mask is not None]
    if masked:
        raise UnsupportedError(f"{cfg.model}: an output carries a mask (Keras would mask the loss); not supported")
    data = splits(arrays, plan, cfg.data or "the data", cfg.class_weight)
    device = device or torch.device(cfg.device)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    model = (model if model is not None else plan.module()).train()
    images = any(t.rank == 4 for t in plan.inputs)
    model = model.to(device, memory_format=torch.channels_last) if images else model.to(device)
    found = penalties.find(plan, model)  # regularizers (added to the loss) and constraints (after each update)
    _, names = io_names(plan)
    weighted = data["train"].sample_weight is not None or cfg.class_weight is not None
    compiled = compiling.resolve_outputs(plan.compile_config, [y.shape for y in data["train"].y],
                                         [(None, *t.shape) for t in plan.outputs], names, cfg.optimizer, cfg.lr,
                                         cfg.loss, cfg.metrics, weighted=weighted, keras2=plan.ctx.keras2,
                                         penalty=found.penalty if found.terms else None)
    check_fits_model(data, plan, compiled.losses)
    train_loader, val_loader = make_loaders(data, plan, compiled.losses, cfg, device, (group.rank, group.world),
                                            compiled.general)
    lr_dtype = plan.lr_dtype or ("float64" if plan.dtype == "float64" else "float32")
    # Keras' optimizer steps the trainable variables only: a frozen base (trainable=False) is left out
    optimizer = compiled.make_optimizer([p for p in model.parameters() if p.requires_grad], lr_dtype)
    penalties.attach(found, optimizer)
    if optimizer.uses_rows() and not group.active:  # an Embedding's gradient as Keras' optimizers see it
        sparse_rows.track(model, found.regularized())  # (under torchrun DDP all-reduces the dense gradient)
    return Setup(model, optimizer, compiled, train_loader, val_loader)


def _at_validated_epochs(values: list, freq: int, epochs: int) -> list:
    """A validation series placed at the epochs it was computed (every `freq`-th), NaN between: the plot's
    x axis is the epoch."""
    if freq == 1:
        return values
    out = [float("nan")] * epochs
    for i, v in enumerate(values):
        out[(i + 1) * freq - 1] = v
    return out


def _weights_writer(plan, model):
    """save(path): the model's weights as Keras' `model.weights.h5` (what `model.load_weights` reads)."""
    def save(path: str) -> None:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        blob = weights_h5_bytes(plan.model_config, plan.keras_arrays(state))
        write_atomic(path, lambda f: f.write(blob))
    return save


def _callbacks(cfg: FitConfig, plan, model, group) -> list:
    """The Keras callbacks the flags ask for, in Keras' order of the flags (rank 0 writes files)."""
    out = []
    if cfg.early_stopping is not None:
        out.append(callbacks.EarlyStopping(**cfg.early_stopping))
    if cfg.reduce_lr_on_plateau is not None:
        out.append(callbacks.ReduceLROnPlateau(**cfg.reduce_lr_on_plateau))
    if group.main:
        if cfg.save_best is not None:
            out.append(callbacks.SaveBest(_weights_writer(plan, model), os.path.join(cfg.out, "best.weights.h5"),
                                          **cfg.save_best))
        if cfg.csv_log:
            out.append(callbacks.CSVLogger(cfg.csv_log))
        if cfg.tensorboard:
            try:
                out.append(callbacks.TensorBoard(cfg.tensorboard))
            except ImportError:
                raise UsageError("--tensorboard writes through torch.utils.tensorboard, which needs the tensorboard "
                                 "package: pip install tensorboard") from None
    return out


def run(cfg: FitConfig) -> dict:
    group, device = distributed.setup(torch.device(cfg.device))  # one process, or one of torchrun's
    verbose = cfg.verbose if group.main else 0
    plan = plan_file(cfg.model)
    s = setup(plan, load_npz(cfg.data), cfg, group=group, device=device)
    model, optimizer, compiled, train_loader, val_loader = (s.model, s.optimizer, s.compiled, s.train_loader,
                                                            s.val_loader)
    if verbose:
        print(f"Training {plan.title} ({plan.cls}, {plan.param_count():,} parameters) on {train_loader.samples:,} "
              f"samples" + (f", validating on {val_loader.samples:,}" if val_loader else "")
              + f": {compiled.describe()}")

    history = engine.History()
    config = {**run_identity(cfg), "n_train": train_loader.samples}
    names = ["loss", *compiled.metrics]
    names += [f"val_{n}" for n in names] if val_loader is not None else []
    check_monitors(cfg, names + (["learning_rate"] if cfg.reduce_lr_on_plateau is not None else []))
    if cfg.reduce_lr_on_plateau is not None and isinstance(optimizer.param_groups[0]["lr"], dict):
        raise UsageError("--reduce-lr-on-plateau cannot change the file's learning-rate schedule (Keras fails when "
                         "it tries): give a constant rate with --lr")
    keras_callbacks = _callbacks(cfg, plan, model, group)
    torch.manual_seed(cfg.seed + group.rank)  # the training draws (dropout) start from the seed, or a checkpoint's
    resume, callbacks = keras_checkpoints(cfg, config, model, optimizer, train_loader, history, group,
                                          stateful=keras_callbacks)
    engine.fit(distributed.wrap(model, group, device), optimizer, compiled.loss, train_loader, cfg.epochs,
               metrics=compiled.metrics, val_loader=val_loader, verbose=verbose, history=history,
               callbacks=keras_callbacks + callbacks, resume=resume, numerics=Numerics(cuda_graphs=cfg.cuda_graphs),
               aggregator=distributed.mean_for(group), validation_freq=cfg.validation_freq)

    h = history.history
    if not group.main:
        return {"history": h, "model": model, "plan": plan}  # rank 0 writes the outputs
    state_dict = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    keras_arrays = plan.keras_arrays(state_dict)
    changed = any(v is not None for v in (cfg.optimizer, cfg.lr, cfg.loss, cfg.metrics))
    keras3_form = bool(plan.compile_config) and "optimizer" in plan.compile_config  # a .keras file's own
    compile_config = plan.compile_config if keras3_form and not changed else \
        compile_config_of(compiled, plan.compile_config, cfg)
    keras3 = not plan.ctx.keras2
    with OutputSet(cfg.out) as out:
        write_json(out.path("history.json"), h)
        save_torch(out.path("weights.pt"), state_dict)
        blob = weights_h5_bytes(plan.model_config, keras_arrays)
        write_atomic(out.path("model.weights.h5"), lambda f: f.write(blob))
        if keras3:  # a tf.keras 2 config is not what Keras 3's load_model reads
            archive = keras_archive_bytes(plan.model_config, keras_arrays, compile_config if keras3 else None)
            write_atomic(out.path("model.keras"), lambda f: f.write(archive))
        for name in [k for k in h if not k.startswith("val_")]:
            series = {name: h[name], **({f"val_{name}": _at_validated_epochs(h[f"val_{name}"], cfg.validation_freq,
                                                                                len(h[name]))}
                                        if f"val_{name}" in h else {})}
            write_plot(out.path(f"{name}.png"), series, name, f"{name} vs. epochs")
    if verbose:
        print(f"Wrote {cfg.out}: history.json, model.weights.h5{', model.keras' if keras3 else ''}, weights.pt, "
              f"{', '.join(f'{k}.png' for k in h if not k.startswith('val_'))}")
    return {"history": h, "model": model, "plan": plan}
