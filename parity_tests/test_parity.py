"""torchport against TensorFlow/Keras, same weights in: outputs, losses, gradients, updates, metrics, init.

The checks themselves live in torchport.parity (so `torchport parity` prints the same numbers); here
hypothesis draws more inputs and each check's tolerance is asserted.
"""
import sys

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

from torchport import parity

SETTINGS = settings(max_examples=12, suppress_health_check=[HealthCheck.function_scoped_fixture])


def assert_all(results):
    failed = [f"{r.check}: {r.metric} = {r.diff:.3g} > {r.tol:.3g}" for r in results if not r.passed]
    assert not failed, "; ".join(failed)


@pytest.fixture(scope="module")
def cifar32(keras):
    return parity.twins(keras, "cifar", "float32")


@pytest.fixture(scope="module")
def cifar64(keras):
    return parity.twins(keras, "cifar", "float64")


@pytest.fixture(scope="module")
def mnist32(keras):
    return parity.twins(keras, "mnist", "float32")


def images(batch, seed, lo, hi, shape=(32, 32, 3)):
    return np.random.default_rng(seed).uniform(lo, hi, (batch, *shape))


def test_structure_matches_keras_summary(keras):
    assert_all(parity.check_structure(keras))


@SETTINGS
@given(batch=st.integers(1, 64), seed=st.integers(0, 2**32 - 1), lo=st.floats(-3, 0.5), span=st.floats(0.1, 6))
def test_forward_float32(cifar32, batch, seed, lo, span):
    km, tm = cifar32
    assert parity.forward_diff(km, tm, images(batch, seed, lo, lo + span).astype("float32")) <= 1e-5


@SETTINGS
@given(batch=st.integers(1, 64), seed=st.integers(0, 2**32 - 1))
def test_forward_float64(cifar64, batch, seed):
    km, tm = cifar64
    assert parity.forward_diff(km, tm, images(batch, seed, -1.0, 2.0)) <= 1e-10


@SETTINGS
@given(batch=st.integers(1, 64), seed=st.integers(0, 2**32 - 1), scale=st.floats(0.1, 10))
def test_forward_mnist(mnist32, batch, seed, scale):
    km, tm = mnist32
    x = (images(batch, seed, -0.5, 1.5, (28, 28)) * scale).astype("float32")
    assert parity.forward_diff(km, tm, x) <= 1e-5 * max(1.0, scale)


def test_loss_logits_path_saturated_and_clipped_path(keras):
    assert_all(parity.check_loss(keras))


def test_gradients_of_every_parameter_float32(keras):
    assert_all([parity.check_gradients(keras, 16, 0)])  # the table's case: clear of float32 routing ties


@settings(max_examples=4)
@given(batch=st.integers(1, 48), seed=st.integers(0, 1000))
def test_gradients_of_every_parameter_float64(keras, batch, seed):
    assert_all([parity.check_gradients(keras, batch, seed, "float64")])


def test_train_mode_with_injected_dropout_masks(keras):
    assert_all([parity.check_train_mode(keras)])


@pytest.mark.parametrize("variant", ["momentum", "nesterov", "legacy decay"])
def test_optimizer_trajectory_1000_steps(keras, variant):
    assert_all([parity.check_optimizer(keras, variant)])


def test_short_training_run_on_real_images(keras):
    assert_all(parity.check_short_training(keras))


def test_metrics_ties_and_epoch_aggregation(keras):
    assert_all(parity.check_metrics(keras))


def test_init_distribution_and_bounds(keras):
    assert_all(parity.check_init(keras))


# ---- the checks catch a wrong port ----------------------------------------------------------------------

def test_nchw_flatten_is_caught(keras, monkeypatch):
    from torchport.cifar10 import Flatten
    monkeypatch.setattr(Flatten, "forward", lambda self, x: x.flatten(1))  # torch's natural, wrong, order
    assert not parity.check_forward(keras, "cifar", 8).passed
    assert not parity.check_gradients(keras, 8).passed


def test_torch_momentum_form_with_decay_is_caught(keras, monkeypatch):
    from torchport.keras_compat import optim

    def torch_form_step(self, closure=None):  # buf = m * buf + g; w -= lr_t * buf
        with torch.no_grad():
            for group in self.param_groups:
                lr = self.current_lr(group)
                group["iterations"] += 1
                for p in group["params"]:
                    buf = self.state[p].setdefault("velocity", torch.zeros_like(p))
                    buf.mul_(group["momentum"]).add_(p.grad)
                    p.add_(buf, alpha=-lr)

    monkeypatch.setattr(optim.KerasSGD, "step", torch_form_step)
    assert parity.check_optimizer(keras, "momentum").passed  # constant lr: the two forms agree
    assert not parity.check_optimizer(keras, "legacy decay").passed


def test_torch_default_init_is_caught(keras, monkeypatch):
    import torch.nn as nn
    monkeypatch.setattr(nn.init, "xavier_uniform_", lambda w: nn.init.kaiming_uniform_(w, a=5 ** 0.5))
    results = parity.check_init(keras)
    assert not all(r.passed for r in results if "KS" in r.check)


def test_summary_text_is_keras_own(keras):
    import io

    from torchport.cifar10 import SimpleCNN

    lines = []
    parity.keras_cifar(keras, seed=0).summary(print_fn=lambda s, **kw: lines.append(s))
    ours = io.StringIO()
    SimpleCNN().summary(file=ours)
    assert ours.getvalue().strip() == "\n".join(lines).strip()


def _disturb(keras):
    """What an earlier test might leave behind: other global seeds, Keras' generators advanced."""
    np.random.seed(12345)
    keras.utils.set_random_seed(999)
    keras.Sequential([keras.Input((3,)), keras.layers.Dense(7)])
    keras.random.normal((5,))


def test_checks_give_the_same_numbers_whatever_ran_before(keras):
    def numbers():
        results = [parity.check_forward(keras, "cifar", 8), parity.check_gradients(keras, 8),
                   *parity.check_loss(keras), *parity.check_init(keras)]
        return [(r.check, r.diff) for r in results]

    first = numbers()
    _disturb(keras)
    assert numbers() == first  # number for number, not merely within tolerance


def test_the_saturated_case_saturates_for_any_weights(keras):
    for seed in (0, 1, 2):  # three different weight draws: each reaches far beyond the clip
        results = {r.check: r for r in parity.check_loss(keras, seed=seed)}
        assert results["loss, saturated logits reach"].passed
        assert results["loss, TF logits path"].passed and results["loss, clipped path (torch backend)"].passed


def test_init_check_runs_without_scipy(keras, monkeypatch):
    monkeypatch.setitem(sys.modules, "scipy", None)        # `import scipy` now fails, as on a machine without it
    monkeypatch.setitem(sys.modules, "scipy.stats", None)
    results = parity.check_init(keras)
    assert len(results) == 8 and all(r.passed for r in results)
