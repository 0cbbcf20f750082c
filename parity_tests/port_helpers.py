"""Helpers of the porter's parity tests: save a Keras model, port the file, check it against Keras."""
from __future__ import annotations

import numpy as np

from torchport.parity import model as pm
from torchport.porting.plan import plan_file


def randomize(model, seed: int = 0) -> None:
    """Every weight drawn anew (BatchNormalization's moving variance positive), so a wrong mapping shows."""
    rng = np.random.default_rng(seed)
    weights = []
    for w in model.weights:  # (tf.keras 2's variables have no path, and a TensorFlow dtype)
        shape = tuple(w.shape)
        a = rng.uniform(0.5, 1.5, shape) if "variance" in getattr(w, "path", w.name) else rng.normal(0, 0.5, shape)
        weights.append(a.astype(np.dtype(getattr(w.dtype, "name", w.dtype))))
    model.set_weights(weights)


def port_checks(keras, tmp_path, model, name="m", fmt="keras", float64=True, gradients=True, seed=0):
    """Save `model`, port the file, and return the parity Results (forward float32/float64, gradients)."""
    path = str(tmp_path / f"{name}.{fmt}")
    model.save(path)
    plan = plan_file(path)
    results = pm.compare(plan, path, "float32", seed, gradients=gradients and bool(plan.weighted))
    if float64:
        results.append(pm.check_forward(plan, path, "float64", seed=seed))
    return plan, results


def assert_all(results):
    failed = [f"{r.check}: {r.metric} = {r.diff:.3g} > {r.tol:.3g}" for r in results if not r.passed]
    assert not failed, "; ".join(failed)
