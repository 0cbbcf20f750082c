"""What every parity check shares: a result row, the difference measures, the table."""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from ..errors import first_line


@dataclass
class Result:
    check: str
    metric: str
    diff: float
    tol: float
    not_run: str | None = None  # why the reference could not run this check here (then neither pass nor fail)
    sensitivity: float | None = None  # how far Keras moves from itself when moved by one rounding unit

    @property
    def passed(self) -> bool:
        return self.not_run is not None or bool(self.diff <= self.tol)


class KerasCannotRun(Exception):
    """Keras (TensorFlow) itself fails on this check here: e.g. channels_first convolutions in float64 on a
    CPU, which TensorFlow's CPU kernels refuse (NHWC only)."""


def in_keras(fn, what: str):
    """`fn()`, a call into Keras; its failure becomes KerasCannotRun (the check is then not run, and says so)."""
    try:
        return fn()
    except Exception as e:
        raise KerasCannotRun(f"Keras cannot run {what} on this machine: {first_line(e)}") from None


def summary_line(results: list[Result]) -> str:
    skipped = [r for r in results if r.not_run is not None]
    failed = [r for r in results if not r.passed]
    line = f"{len(results) - len(failed) - len(skipped)} passed, {len(failed)} failed"
    return line + (f", {len(skipped)} not run (each row says why)" if skipped else "")


def worst(pairs, metric) -> float:
    """The largest `metric(a, b)` over paired lists; lists of different lengths are an error, not a pass."""
    ours, theirs = pairs
    return max((metric(a, b) for a, b in zip(ours, theirs, strict=True)), default=0.0)


def count_differing(ours: list, theirs: list) -> int:
    """Positions where two lists differ, a missing element counting as a difference."""
    return sum(a != b for a, b in itertools.zip_longest(ours, theirs, fillvalue=object()))


def max_abs(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)))) if np.size(a) else 0.0


def max_rel(a, b) -> float:
    """max |a - b| / max |b|: relative to the reference's scale (robust where b crosses zero)."""
    b = np.asarray(b, np.float64)
    return max_abs(a, b) / max(float(np.max(np.abs(b))), 1e-30)


def optimizer_gap(keras_optimizer, variable, optimizer, param, grads, every: int = 100) -> float:
    """Keras' optimizer on `variable` and ours on `param` (same start), stepped on the same gradients (one row
    per step): the largest max_rel of our weights against Keras' every `every` steps."""
    import tensorflow as tf
    import torch

    largest = 0.0
    for t, g in enumerate(grads):
        keras_optimizer.apply_gradients([(tf.constant(g), variable)])
        param.grad = torch.from_numpy(g)
        optimizer.step()
        if (t + 1) % every == 0:
            largest = max(largest, max_rel(param.detach().numpy(), np.asarray(variable)))
    return largest


def ks_statistic(a: np.ndarray, b: np.ndarray) -> float:
    """The two-sample Kolmogorov-Smirnov statistic: the largest gap between the two empirical CDFs."""
    a, b = np.sort(np.ravel(a)), np.sort(np.ravel(b))
    points = np.concatenate([a, b])
    gap = np.searchsorted(a, points, side="right") / a.size - np.searchsorted(b, points, side="right") / b.size
    return float(np.max(np.abs(gap)))


def format_table(results: list[Result]) -> str:
    rows = [("check", "metric", "max diff", "Keras vs itself", "tolerance", "result")]
    rows += [(r.check, r.metric, "-" if r.not_run else f"{r.diff:.3g}",
              "-" if r.sensitivity is None or r.not_run else f"{r.sensitivity:.3g}", f"{r.tol:.3g}",
              "not run" if r.not_run else "pass" if r.passed else "FAIL") for r in results]
    w = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [" | ".join(c.ljust(w[i]) for i, c in enumerate(r)) for r in rows]
    lines.insert(1, "-+-".join("-" * x for x in w))
    lines += [f"not run: {r.check}: {r.not_run}" for r in results if r.not_run]
    return "\n".join(lines)
