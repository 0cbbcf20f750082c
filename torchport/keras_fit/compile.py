"""A model file's compile settings -> the optimizer, loss and metrics the engine trains with.

Reads Keras 3's `compile_config` (.keras) and the `training_config` of legacy .h5 files (Keras 3 and
tf.keras 2 dialects); `torchport fit`'s flags override any part. Anything that would train differently
from Keras (an unknown optimizer, EMA, loss scaling, a sample-weighted metric...) is refused by name,
with the flag that replaces it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..errors import UnsupportedError, UsageError
from ..keras_compat.compile_loss import CompileLoss, WeightedMetric, output_metric
from ..keras_compat.losses import ALIASES as LOSS_ALIASES, LOSSES, KerasLoss
from ..keras_compat.metrics import get_metric, is_binary_or_sparse, metric_values
from ..keras_compat.optim import OPTIMIZERS, SCHEDULES

OPTIMIZER_KEYS = {"learning_rate", "beta_1", "beta_2", "epsilon", "amsgrad", "momentum", "nesterov", "rho",
                  "centered", "initial_accumulator_value", "weight_decay", "clipnorm", "global_clipnorm",
                  "clipvalue"}


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


@dataclass
class Compiled:
    optimizer: str
    options: dict
    loss: KerasLoss | CompileLoss  # a CompileLoss for several outputs, sample weights or regularizers
    metrics: dict = field(default_factory=dict)   # history name -> function
    losses: list = field(default_factory=list)    # each output's KerasLoss (None: trained without a loss)
    loss_weights: list = field(default_factory=list)
    general: bool = False  # targets travel as keras_compat.compile_loss.Targets (not one plain tensor)

    def make_optimizer(self, params, lr_dtype: str):
        return OPTIMIZERS[self.optimizer](params, lr_dtype=lr_dtype, **self.options)

    def describe(self) -> str:
        lr = self.options.get("learning_rate")
        lr = lr["class_name"] if isinstance(lr, dict) else lr
        return (f"optimizer {self.optimizer} (learning_rate {lr}), loss {self.loss.name}, "
                f"metrics {', '.join(self.metrics) or 'none'}")


def _unsupported(what: str, flag: str) -> UnsupportedError:
    return UnsupportedError(f"{what} in the file's compile config is not supported; override it with {flag}")


def _optimizer(cfg: dict | None, name: str | None, lr: float | None) -> tuple[str, dict]:
    if name is not None:  # the flag replaces the file's optimizer (defaults as Keras' constructor has them)
        key = {k.lower(): k for k in OPTIMIZERS}.get(name.lower())
        if key is None:
            raise UsageError(f"--optimizer {name}: not one of {', '.join(OPTIMIZERS)}")
        options = {} if lr is None else {"learning_rate": lr}
        return key, options
    if cfg is None:
        raise UsageError("the model file was saved without compile(): pass --optimizer and --loss (and --metrics)")
    if isinstance(cfg, str):
        cfg = {"class_name": cfg, "config": {}}
    cls = str(cfg.get("class_name", "")).removeprefix("Custom>")
    conf = dict(cfg.get("config") or {})
    if cls not in OPTIMIZERS:
        raise _unsupported(f"optimizer '{cls}' (supported: {', '.join(OPTIMIZERS)})", "--optimizer")
    if conf.get("use_ema"):
        raise _unsupported(f"optimizer '{cls}' with use_ema=True", "--optimizer")
    if conf.get("loss_scale_factor") is not None:
        raise _unsupported(f"optimizer '{cls}' with loss_scale_factor", "--optimizer")
    if conf.get("gradient_accumulation_steps") not in (None, 1):
        raise _unsupported(f"optimizer '{cls}' with gradient_accumulation_steps", "--optimizer")
    options = {k: v for k, v in conf.items() if k in OPTIMIZER_KEYS and v is not None}
    if conf.get("is_legacy_optimizer") or "decay" in conf:  # tf.keras 2's optimizer_v2
        if cls != "SGD":
            raise _unsupported(f"legacy (Keras 2 optimizer_v2) optimizer '{cls}'", "--optimizer")
        if conf.get("decay"):
            options.update(decay=conf["decay"], legacy_decay=True)
    schedule = options.get("learning_rate")
    if isinstance(schedule, dict):
        kind = schedule.get("class_name")
        if kind not in SCHEDULES:
            raise _unsupported(f"learning-rate schedule '{kind}' (supported: {', '.join(SCHEDULES)})", "--lr")
        options["learning_rate"] = {"class_name": kind, "config": dict(schedule.get("config") or {})}
    if lr is not None:
        options["learning_rate"] = lr
    return cls, options


def _loss(cfg, name: str | None, y_shape: tuple, out_shape: tuple) -> KerasLoss:
    options, flag = {}, name
    if name is None:
        if cfg is None:
            raise UsageError("the model file was saved without compile(): pass --optimizer and --loss "
                             "(and --metrics)")
        if isinstance(cfg, (list, dict)) and not (isinstance(cfg, dict) and "class_name" in cfg):
            raise _unsupported("a loss per output", "--loss")
        if isinstance(cfg, dict):
            conf = dict(cfg.get("config") or {})
            name = conf.get("fn") or cfg.get("class_name")
            if conf.get("reduction", "sum_over_batch_size") not in ("sum_over_batch_size", "auto"):
                raise _unsupported(f"loss reduction {conf.get('reduction')!r}", "--loss")
            if conf.get("ignore_class") is not None or conf.get("axis", -1) != -1:
                raise _unsupported("a loss with ignore_class or an axis other than -1", "--loss")
            options = {k: conf[k] for k in ("from_logits", "label_smoothing", "delta") if k in conf}
        else:
            name = cfg
    key = str(name).lower()
    key = LOSS_ALIASES.get(key, key)
    if key in ("crossentropy", "ce"):
        is_binary, is_sparse = is_binary_or_sparse(y_shape, out_shape)
        key = "binary_crossentropy" if is_binary else "sparse_categorical_crossentropy" if is_sparse \
            else "categorical_crossentropy"
    try:
        return KerasLoss(key, **options)
    except ValueError:
        if flag is not None:
            raise UsageError(f"--loss {flag}: not supported (supported: {', '.join(sorted(LOSSES))})") from None
        raise _unsupported(f"loss '{name}'", "--loss") from None


def _metric_entries(cfg) -> list[tuple[str, str, dict]]:
    """(history label, Keras function name, options) of one output's metrics config (a list, or one)."""
    entries = []
    flat = cfg if isinstance(cfg, list) else [cfg]
    while len(flat) == 1 and isinstance(flat[0], list):  # tf.keras 2 nests a single output's list
        flat = flat[0]
    for m in flat:
        if m is None:
            continue
        if isinstance(m, str):
            entries.append((m, m, {}))
        elif isinstance(m, dict):
            conf = dict(m.get("config") or {})
            cls = str(m.get("class_name", ""))
            # keras.metrics.Accuracy() is exact equality, unlike the string "accuracy" Keras resolves by shape
            fn = conf.get("fn") or ("exact_accuracy" if cls == "Accuracy" else _snake(cls))
            entries.append((conf.get("name", fn), fn, {k: conf[k] for k in ("k", "threshold") if k in conf}))
        else:
            raise _unsupported(f"metric {m!r}", "--metrics")
    return entries


def _per_output(cfg, names: list[str], what: str, flag: str) -> list:
    """A compile entry given per output (a list in output order, a dict by output name, or one value for a
    one-output model) as one entry per output."""
    if isinstance(cfg, dict) and "class_name" not in cfg:
        unknown = sorted(set(cfg) - set(names))
        if unknown:
            raise _unsupported(f"{what} for '{unknown[0]}', which is not an output ({', '.join(names)})", flag)
        return [cfg.get(n) for n in names]
    if len(names) == 1:
        return [cfg]
    if isinstance(cfg, list) and len(cfg) == len(names):
        return list(cfg)
    raise _unsupported(f"{what} that is not one per output ({len(names)} outputs: {', '.join(names)})", flag)


def _single(cfg, names: list[str]):
    """A one-output model's loss (or loss weight) given as a list of one: that one."""
    return cfg[0] if len(names) == 1 and isinstance(cfg, list) and len(cfg) == 1 else cfg


def _metrics(cfg, flags: list[str] | None, y_shapes: list, out_shapes: list, names: list[str],
             weighted_cfg=None) -> dict:
    """History label -> metric (a weighted one) or (metric function, output index), labelled and ordered as
    Keras 3 reports them: each output's metrics
    (`<output>_<metric>` when there are several outputs), then the weighted ones; a repeated label numbered
    `_1`, `_2` (a weighted one first tries `weighted_<metric>`)."""
    several = len(names) > 1
    if flags is not None:  # --metrics: the same metrics for every output
        plain = [[(n, n, {}) for n in flags] for _ in names]
        weighted = [[] for _ in names]
    else:
        plain = [_metric_entries(c) for c in _per_output(cfg, names, "metrics", "--metrics")] if cfg else \
            [[] for _ in names]
        weighted = [_metric_entries(c) for c in _per_output(weighted_cfg, names, "weighted_metrics", "--metrics")] \
            if weighted_cfg else [[] for _ in names]
    out, seen = {}, {}

    def label_for(label: str, i: int, is_weighted: bool) -> str:
        name = f"{names[i]}_{label}" if several else label
        if name not in seen:
            seen[name] = 1
            return name
        if is_weighted:
            name = f"{names[i]}_weighted_{label}" if several else f"weighted_{label}"
            if name not in seen:
                seen[name] = 1
                return name
        seen[name] += 1
        return f"{name}_{seen[name] - 1}"

    for is_weighted, groups in ((False, plain), (True, weighted)):
        for i, entries in enumerate(groups):
            for label, fn, conf in entries:
                name = label_for(label, i, is_weighted)
                try:
                    if is_weighted:
                        out[name] = WeightedMetric(metric_values(fn, y_shapes[i], out_shapes[i], **conf), i)
                    else:
                        out[name] = (get_metric(fn, y_shapes[i], out_shapes[i], **conf), i)  # of output i
                except ValueError:
                    raise (UsageError(f"--metrics {label}: not supported") if flags is not None
                           else _unsupported(f"metric '{label}'", "--metrics")) from None
    return out


def resolve(compile_config: dict | None, y_shape: tuple, out_shape: tuple, optimizer: str | None = None,
            lr: float | None = None, loss: str | None = None, metrics: list[str] | None = None) -> Compiled:
    """The training setup of a one-output model from the file's compile settings and the flags; `y_shape`
    and `out_shape` (batch included) resolve "accuracy" and "crossentropy" as Keras does."""
    return resolve_outputs(compile_config, [y_shape], [out_shape], ["output"], optimizer, lr, loss, metrics)


def resolve_outputs(compile_config: dict | None, y_shapes: list, out_shapes: list, names: list[str],
                    optimizer: str | None = None, lr: float | None = None, loss: str | None = None,
                    metrics: list[str] | None = None, weighted: bool = False, penalty=None,
                    keras2: bool = False) -> Compiled:
    """The training setup of a model with outputs `names` (Keras' output names: the layers that make them).
    `weighted`: the data carries sample weights; `penalty`: the regularizers' sum, added to the loss; `keras2`:
    the file is tf.keras 2's (its History weights the outputs' losses by batch size). Either of the first two,
    or several outputs, makes the loss a CompileLoss (targets as `Targets`); else the plain one-output path."""
    cc = compile_config or {}
    several = len(names) > 1
    if loss is not None:  # --loss: the same loss for every output
        loss_cfgs = [None] * len(names)
    elif cc.get("loss") is None:
        raise UsageError("the model file was saved without compile(): pass --optimizer and --loss (and --metrics)")
    else:
        loss_cfgs = [cc["loss"]] * len(names) if isinstance(cc["loss"], str) or (
            isinstance(cc["loss"], dict) and "class_name" in cc["loss"]) else \
            _per_output(_single(cc["loss"], names), names, "losses", "--loss")
    losses = [None if (c is None and loss is None) else _loss(c, loss, y, o)
              for c, y, o in zip(loss_cfgs, y_shapes, out_shapes, strict=True)]
    if all(x is None for x in losses):
        raise _unsupported("no loss for any output", "--loss")
    lw = cc.get("loss_weights")
    if lw in (None, [], {}):
        loss_weights = [None] * len(names)
    elif isinstance(lw, (int, float)) and not isinstance(lw, bool):
        loss_weights = [float(lw)] * len(names)
    else:
        loss_weights = _per_output(_single(lw, names), names, "loss_weights", "--loss")
        if not all(w is None or (isinstance(w, (int, float)) and not isinstance(w, bool)) for w in loss_weights):
            raise _unsupported(f"loss_weights {lw!r}", "--loss")
    opt_cfg = cc.get("optimizer", cc.get("optimizer_config"))
    name, options = _optimizer(opt_cfg, optimizer, lr)
    found = _metrics(cc.get("metrics"), metrics, y_shapes, out_shapes, names,
                     None if metrics is not None else cc.get("weighted_metrics"))
    general = several or weighted or penalty is not None or any(w is not None for w in loss_weights) or \
        any(getattr(m, "ratio", False) for m in found.values())
    if not general:
        return Compiled(name, options, losses[0], {k: f for k, (f, _) in found.items()}, losses, loss_weights)
    found = {k: output_metric(*m) if isinstance(m, tuple) else m for k, m in found.items()}
    compiled_loss = CompileLoss(losses, loss_weights, penalty)
    if sum(loss is not None for loss in losses) > 1:  # Keras reports each output's own loss (unweighted by
        # loss_weights) before the metrics, where more than one output has a loss
        found = {**{f"{n}_loss": compiled_loss.output_loss(i, per_batch=not keras2)
                    for i, n in enumerate(names) if losses[i] is not None}, **found}
    return Compiled(name, options, compiled_loss, found, losses, loss_weights, general=True)
