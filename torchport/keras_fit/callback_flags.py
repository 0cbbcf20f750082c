"""`torchport fit`'s callback flags: Keras' own argument names as `key=value` pairs separated by commas
(`--early-stopping monitor=val_loss,patience=3,restore_best_weights=true`), Keras' defaults for the rest.
An unknown key or a value of the wrong kind is one line; `check_monitors` checks, before training, that
each monitored name is one this run's History will have."""
from __future__ import annotations

import argparse

from ..errors import UsageError
from ..keras_compat.callbacks.monitor import direction


def _bool(text: str) -> bool:
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise ValueError("expected true or false")


def _mode(text: str) -> str:
    if text not in ("auto", "min", "max"):
        raise ValueError("expected auto, min or max")
    return text


def _count(text: str) -> int:
    v = int(text)
    if v < 0:
        raise ValueError("expected a whole number >= 0")
    return v


KEYS = {  # each callback's keyword arguments, as Keras names them, and how their values read
    "--early-stopping": {"monitor": str, "min_delta": float, "patience": _count, "verbose": _count, "mode": _mode,
                         "baseline": float, "restore_best_weights": _bool, "start_from_epoch": _count},
    "--reduce-lr-on-plateau": {"monitor": str, "factor": float, "patience": _count, "verbose": _count,
                               "mode": _mode, "min_delta": float, "cooldown": _count, "min_lr": float},
    "--save-best": {"monitor": str, "mode": _mode, "verbose": _count, "initial_value_threshold": float},
}


def pairs(flag: str):
    """An argparse `type` reading `key=value,...` for `flag` into a dict of Keras keyword arguments."""
    keys = KEYS[flag]

    def parse(text: str) -> dict:
        out = {}
        for item in filter(None, (part.strip() for part in text.split(","))):
            key, sep, value = item.partition("=")
            key = key.strip()
            if key not in keys:
                raise argparse.ArgumentTypeError(f"unknown key {key!r} (Keras' arguments: {', '.join(keys)})")
            if not sep:
                raise argparse.ArgumentTypeError(f"{key}: expected {key}=value")
            try:
                out[key] = keys[key](value.strip())
            except ValueError as e:
                why = str(e) if "expected" in str(e) else f"not a {keys[key].__name__.strip('_')}"
                raise argparse.ArgumentTypeError(f"{key}={value}: {why}") from None
        if flag == "--reduce-lr-on-plateau" and out.get("factor", 0.1) >= 1.0:
            raise argparse.ArgumentTypeError("factor must be below 1.0 (Keras' ReduceLROnPlateau refuses it too)")
        return out
    return parse


def check_monitors(cfg, history_names: list[str]) -> None:
    """Every callback's monitored name is in this run's History, and its direction is known (mode=auto)."""
    for flag, options in (("--early-stopping", cfg.early_stopping),
                          ("--reduce-lr-on-plateau", cfg.reduce_lr_on_plateau), ("--save-best", cfg.save_best)):
        if options is None:
            continue
        monitor = options.get("monitor", "val_loss")
        if monitor not in history_names:
            raise UsageError(f"{flag} monitor={monitor}: this run's History has no {monitor} "
                             f"(it has {', '.join(history_names)})")
        try:
            direction(monitor, options.get("mode", "auto"))
        except ValueError as e:
            raise UsageError(f"{flag} {e}") from None
