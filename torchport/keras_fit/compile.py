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
from ..keras_compat.losses import ALIASES as LOSS_ALIASES, LOSSES, KerasLoss
from ..keras_compat.metrics import get_metric, is_binary_or_sparse
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
    loss: KerasLoss
    metrics: dict = field(default_factory=dict)   # history name -> function

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


def _metrics(cfg, names: list[str] | None, y_shape: tuple, out_shape: tuple) -> dict:
    entries = []
    if names is not None:
        entries = [(n, n, {}) for n in names]
    elif cfg:
        flat = cfg
        while isinstance(flat, list) and len(flat) == 1 and isinstance(flat[0], list):  # tf.keras 2: per output
            flat = flat[0]
        if isinstance(flat, dict) or (isinstance(flat, list) and any(isinstance(m, list) for m in flat)):
            raise _unsupported("metrics per output", "--metrics")
        for m in flat:
            if isinstance(m, str):
                entries.append((m, m, {}))
            elif isinstance(m, dict):
                conf = dict(m.get("config") or {})
                cls = str(m.get("class_name", ""))
                # keras.metrics.Accuracy() is exact equality, unlike the string "accuracy" Keras resolves by shape
                fn = conf.get("fn") or ("exact_accuracy" if cls == "Accuracy" else _snake(cls))
                entries.append((conf.get("name", fn), fn, {k: conf[k] for k in ("k", "threshold") if k in conf}))
    out = {}
    seen: dict[str, int] = {}
    for label, fn, conf in entries:
        if label in seen:  # Keras names a second metric of the same name `name_1`, then `name_2`
            seen[label] += 1
            label = f"{label}_{seen[label] - 1}"
        seen.setdefault(label, 1)
        try:
            out[label] = get_metric(fn, y_shape, out_shape, **conf)
        except ValueError:
            raise (UsageError(f"--metrics {label}: not supported") if names is not None
                   else _unsupported(f"metric '{label}'", "--metrics")) from None
    return out


def resolve(compile_config: dict | None, y_shape: tuple, out_shape: tuple, optimizer: str | None = None,
            lr: float | None = None, loss: str | None = None, metrics: list[str] | None = None) -> Compiled:
    """The training setup from the file's compile settings and the flags; `y_shape` and `out_shape` (batch
    included) resolve "accuracy" and "crossentropy" as Keras does."""
    cc = compile_config or {}
    if cc.get("weighted_metrics"):
        raise _unsupported("weighted_metrics", "--metrics")
    if cc.get("loss_weights") not in (None, [], {}) and not isinstance(cc.get("loss_weights"), (int, float)):
        raise _unsupported("loss_weights", "--loss")
    opt_cfg = cc.get("optimizer", cc.get("optimizer_config"))
    name, options = _optimizer(opt_cfg, optimizer, lr)
    return Compiled(name, options, _loss(cc.get("loss"), loss, y_shape, out_shape),
                    _metrics(cc.get("metrics"), metrics, y_shape, out_shape))
