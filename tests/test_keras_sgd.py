"""KerasSGD against hand-computed steps (float64), tf-keras' own golden values, and torch's SGD."""
import warnings

import numpy as np
import pytest
import torch

from torchport import KerasSGD


def run(grads, w0, **kw):
    w = torch.tensor(w0, dtype=torch.float64, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        opt = KerasSGD([w], **kw)
    out = []
    for g in grads:
        w.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
        out.append(w.detach().clone().numpy())
    return out, opt


def test_tf_keras_legacy_golden_values():
    # tf_keras optimizer_v2 gradient_descent_test: lr 3.0, decay 0.5, grads 0.1 on [1, 2]
    out, _ = run([[0.1, 0.1], [0.1, 0.1]], [1.0, 2.0], learning_rate=3.0, decay=0.5, legacy_decay=True)
    np.testing.assert_allclose(out[0], [0.7, 1.7], atol=1e-12)
    np.testing.assert_allclose(out[1], [0.5, 1.5], atol=1e-12)  # second step uses lr 3 / (1 + 0.5) = 2


@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("legacy", [False, True])
def test_momentum_and_decay_by_hand(nesterov, legacy):
    rng = np.random.default_rng(0)
    grads = rng.normal(size=(20, 3))
    lr, m, decay = 0.1, 0.875, 0.05  # 0.875 is exact in float32 (see the momentum-rounding test)
    out, opt = run(grads, [1.0, -1.0, 0.5], learning_rate=lr, momentum=m, nesterov=nesterov, decay=decay,
                   legacy_decay=legacy)
    w, v = np.array([1.0, -1.0, 0.5]), np.zeros(3)
    for t, g in enumerate(grads):
        lr_t = lr / (1 + decay * t) if legacy else lr  # Keras 3 ignores decay
        v = m * v - lr_t * g
        w = w + (m * v - lr_t * g if nesterov else v)
        np.testing.assert_allclose(out[t], w, rtol=1e-12, atol=1e-14)
    state = opt.state_dict()
    assert state["param_groups"][0]["iterations"] == 20
    np.testing.assert_allclose(state["state"][0]["velocity"].numpy(), v, rtol=1e-12, atol=1e-14)


def test_legacy_decay_counts_batches_over_the_seed_run():
    p = torch.zeros(1, requires_grad=True)
    opt = KerasSGD([p], learning_rate=0.01, momentum=0.9, decay=0.01 / 25, legacy_decay=True)
    opt.param_groups[0]["iterations"] = 25 * 1563
    assert opt.current_lr(opt.param_groups[0]) == pytest.approx(0.01 / (1 + 0.0004 * 39075))  # ~6.0e-4
    assert opt.current_lr(opt.param_groups[0]) == pytest.approx(6.0e-4, rel=0.01)


def test_constant_lr_matches_torch_sgd_but_decay_does_not():
    rng = np.random.default_rng(1)
    grads = rng.normal(size=(10, 4))
    ours, _ = run(grads, [0.0] * 4, learning_rate=0.05, momentum=0.875)
    w = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    torch_opt = torch.optim.SGD([w], lr=0.05, momentum=0.875)
    for g in grads:
        w.grad = torch.tensor(g)
        torch_opt.step()
    np.testing.assert_allclose(ours[-1], w.detach().numpy(), rtol=1e-10)


def test_momentum_is_rounded_through_float32_as_keras_does():
    # Keras: ops.cast(self.momentum, variable.dtype) converts 0.9 to a float32 tensor first
    out, opt = run([[1.0], [0.0]], [0.0], learning_rate=1.0, momentum=0.9)
    assert opt.param_groups[0]["momentum"] == float(np.float32(0.9)) == 0.8999999761581421
    assert out[1][0] == -1.0 + -0.8999999761581421


def test_state_dict_round_trip_continues_identically():
    rng = np.random.default_rng(2)
    grads = rng.normal(size=(6, 2))
    full, _ = run(grads, [1.0, 2.0], learning_rate=0.1, momentum=0.9, decay=0.1, legacy_decay=True)
    half, opt = run(grads[:3], [1.0, 2.0], learning_rate=0.1, momentum=0.9, decay=0.1, legacy_decay=True)
    w = torch.tensor(half[-1], requires_grad=True)
    opt2 = KerasSGD([w], learning_rate=0.1, momentum=0.9, decay=0.1, legacy_decay=True)
    opt2.load_state_dict(opt.state_dict())
    for g in grads[3:]:
        w.grad = torch.tensor(g)
        opt2.step()
    np.testing.assert_array_equal(w.detach().numpy(), full[-1])


def test_keras3_mode_warns_and_ignores_decay_and_foreach_equals_loop():
    with pytest.warns(UserWarning, match="no longer supported and will be ignored"):
        KerasSGD([torch.zeros(1, requires_grad=True)], decay=0.1)
    rng = np.random.default_rng(3)
    grads = rng.normal(size=(5, 3))
    a, _ = run(grads, [0.0] * 3, learning_rate=0.1, momentum=0.5, nesterov=True, foreach=True)
    b, _ = run(grads, [0.0] * 3, learning_rate=0.1, momentum=0.5, nesterov=True, foreach=False)
    np.testing.assert_array_equal(a[-1], b[-1])


@pytest.mark.parametrize("kw", [dict(learning_rate=-1), dict(learning_rate=float("nan")), dict(momentum=1.5),
                                dict(decay=-0.1, legacy_decay=True)])
def test_invalid_hyperparameters_are_refused(kw):
    with pytest.raises(ValueError):
        KerasSGD([torch.zeros(1, requires_grad=True)], **kw)
