"""fit / evaluate against a hand computation (numpy, float64) on a tiny softmax-regression model."""
import signal

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from torchport import History, TensorLoader, callbacks, engine, means
from torchport.checkpoint import Checkpointer
from torchport.errors import NonFiniteLossError
from torchport.keras_compat.progbar import ProgbarLogger


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def hand_step(W, b, x, y, lr):
    """Loss, accuracy (before the update) and the updated weights for one SGD step on mean CE."""
    p = softmax(x @ W.T + b)
    onehot = np.eye(W.shape[0])[y]
    loss = -np.log(p[np.arange(len(y)), y]).mean()
    acc = (p.argmax(1) == y).mean()
    g = (p - onehot) / len(y)
    return loss, acc, W - lr * g.T @ x, b - lr * g.sum(0)


def hand_eval(W, b, x, y, batch, weighted):
    losses, accs, ns = [], [], []
    for s in range(0, len(x), batch):
        p = softmax(x[s:s + batch] @ W.T + b)
        yy = y[s:s + batch]
        losses.append(-np.log(p[np.arange(len(yy)), yy]).mean())
        accs.append((p.argmax(1) == yy).mean())
        ns.append(len(yy))
    w = np.array(ns if weighted else [1] * len(ns), dtype=float)
    return (np.array(losses) @ w / w.sum(), np.array(accs) @ w / w.sum())


def acc_metric(out, y):
    return (out.argmax(1) == y).double().mean()


@pytest.fixture
def problem():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(7, 3))
    y = rng.integers(0, 3, 7)
    xv = rng.normal(size=(5, 3))
    yv = rng.integers(0, 3, 5)
    model = torch.nn.Linear(3, 3).double()
    return x, y, xv, yv, model


def test_fit_matches_hand_computed_sgd_and_keras_weighted_running_means(problem):
    x, y, xv, yv, model = problem
    W, b = model.weight.detach().numpy().copy(), model.bias.detach().numpy().copy()
    lr, batch, epochs = 0.3, 3, 2
    train = TensorLoader(torch.from_numpy(x), torch.from_numpy(y), batch)  # 3, 3, 1: a partial last batch
    val = TensorLoader(torch.from_numpy(xv), torch.from_numpy(yv), 2)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    hist = engine.fit(model, opt, F.cross_entropy, train, epochs, metrics={"acc": acc_metric}, val_loader=val,
                      verbose=0)

    for epoch in range(epochs):
        sums = np.zeros(2)
        for s in range(0, 7, batch):
            loss, acc, W, b = hand_step(W, b, x[s:s + batch], y[s:s + batch], lr)
            sums += np.array([loss, acc]) * len(y[s:s + batch])
        vl, va = hand_eval(W, b, xv, yv, 2, weighted=True)
        rec = hist.records[epoch]
        assert rec["loss"] == pytest.approx(sums[0] / 7, abs=1e-12)
        assert rec["acc"] == pytest.approx(sums[1] / 7, abs=1e-12)
        assert rec["val_loss"] == pytest.approx(vl, abs=1e-12)
        assert rec["val_acc"] == pytest.approx(va, abs=1e-12)
    np.testing.assert_allclose(model.weight.detach().numpy(), W, atol=1e-12)
    np.testing.assert_allclose(model.bias.detach().numpy(), b, atol=1e-12)
    assert hist.epoch == [0, 1] and list(hist.history) == ["loss", "acc", "val_loss", "val_acc"]


def test_evaluate_weighted_and_unweighted_means_differ_exactly_as_computed(problem):
    x, y, xv, yv, model = problem
    W, b = model.weight.detach().numpy(), model.bias.detach().numpy()
    loader = TensorLoader(torch.from_numpy(x), torch.from_numpy(y), 3)
    for agg, weighted in ((means.WeightedMean, True), (means.BatchMean, False)):
        got = engine.evaluate(model, loader, F.cross_entropy, {"acc": acc_metric}, aggregator=agg)
        want = hand_eval(W, b, x, y, 3, weighted)
        assert got["loss"] == pytest.approx(want[0], abs=1e-12) and got["acc"] == pytest.approx(want[1], abs=1e-12)


def test_train_mode_for_fit_eval_mode_and_no_grad_for_evaluate():
    modes = []

    class Probe(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(1, 2)

        def forward(self, x):
            modes.append((self.training, torch.is_grad_enabled()))
            return self.lin(x)

    m = Probe()
    data = TensorLoader(torch.zeros(4, 1), torch.zeros(4, dtype=torch.long), 2)
    engine.fit(m, torch.optim.SGD(m.parameters(), 0.1), F.cross_entropy, data, 1, val_loader=data, verbose=0)
    assert modes == [(True, True)] * 2 + [(False, False)] * 2
    assert m.training  # evaluate restores the mode it found


def test_callbacks_see_every_hook_in_order_and_can_stop_training():
    events = []

    class Spy(callbacks.Callback):
        def on_train_begin(self, logs=None): events.append("begin")
        def on_epoch_begin(self, epoch, logs=None): events.append(f"e{epoch}")
        def on_train_batch_end(self, step, aggregator): events.append(f"b{step}")
        def on_epoch_end(self, epoch, logs=None):
            events.append(f"end{epoch}")
            self.model.stop_training = epoch == 1
        def on_train_end(self, logs=None): events.append("done")

    m = torch.nn.Linear(1, 2)
    data = TensorLoader(torch.zeros(3, 1), torch.zeros(3, dtype=torch.long), 2)
    h = engine.fit(m, torch.optim.SGD(m.parameters(), 0.1), F.cross_entropy, data, 5, callbacks=[Spy()], verbose=0)
    assert events == ["begin", "e0", "b0", "b1", "end0", "e1", "b0", "b1", "end1", "done"]
    assert isinstance(h, History) and h.epoch == [0, 1]


def test_non_finite_loss_stops_with_epoch_and_step():
    m = torch.nn.Linear(1, 2)
    x = torch.tensor([[0.0], [1.0], [float("nan")], [1.0]])
    data = TensorLoader(x, torch.zeros(4, dtype=torch.long), 1)
    with pytest.raises(NonFiniteLossError, match="epoch 1, step 3"):
        engine.fit(m, torch.optim.SGD(m.parameters(), 0.1), F.cross_entropy, data, 2, verbose=0)


def test_a_failed_fit_restores_signal_handlers_mode_and_closes_the_bar(tmp_path):
    import io
    m = torch.nn.Linear(1, 2)
    x = torch.tensor([[0.0], [float("nan")]])
    data = TensorLoader(x, torch.zeros(2, dtype=torch.long), 1)
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    bar = ProgbarLogger(1, file=io.StringIO())
    m.eval()
    with pytest.raises(NonFiniteLossError):
        engine.fit(m, torch.optim.SGD(m.parameters(), 0.1), F.cross_entropy, data, 2, verbose=0,
                   callbacks=[Checkpointer(str(tmp_path), {}, data), bar])
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before  # Ctrl-C works again
    assert m.training is False  # the mode it had
    assert bar.bar is None      # closed


def test_a_callback_failing_at_train_end_does_not_keep_the_others_from_cleaning_up(tmp_path):
    class Broken(engine.Callback):
        def on_train_end(self, logs=None):
            raise RuntimeError("callback broke")

    m = torch.nn.Linear(1, 2)
    data = TensorLoader(torch.zeros(2, 1), torch.zeros(2, dtype=torch.long), 1)
    before = signal.getsignal(signal.SIGINT)
    m.eval()
    with pytest.raises(RuntimeError, match="callback broke"):  # the loop itself finished: the callback's error
        engine.fit(m, torch.optim.SGD(m.parameters(), 0.1), F.cross_entropy, data, 1, verbose=0,
                   callbacks=[Broken(), Checkpointer(str(tmp_path), {}, data)])
    assert signal.getsignal(signal.SIGINT) == before and m.training is False
    bad = TensorLoader(torch.tensor([[float("nan")]]), torch.zeros(1, dtype=torch.long), 1)
    with pytest.raises(NonFiniteLossError):  # the loop failed: its own error, not the callback's
        engine.fit(m, torch.optim.SGD(m.parameters(), 0.1), F.cross_entropy, bad, 1, verbose=0,
                   callbacks=[Broken(), Checkpointer(str(tmp_path), {}, bad)])
    assert signal.getsignal(signal.SIGINT) == before and m.training is False


def test_a_failed_evaluate_restores_the_mode():
    class Broken(torch.nn.Module):
        def forward(self, x):
            raise RuntimeError("boom")

    m = Broken().train()
    with pytest.raises(RuntimeError):
        engine.evaluate(m, [(torch.zeros(1), torch.zeros(1))], F.mse_loss)
    assert m.training
