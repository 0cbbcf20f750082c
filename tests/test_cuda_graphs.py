"""The CUDA-graph step (torchport/cuda_graphs.py) around the engine, on CPU with an emulated recorder.

Everything but the recording itself runs as on CUDA: static buffers, one graph per batch shape (the full
batch and the last partial one), the proof replay, host counters, the fall-back to eager. The reference
is the same run without graphs, compared bit for bit.
"""
import contextlib
import copy

import pytest
import torch

from torchport import cuda_graphs, engine
from torchport.callbacks import Callback
from torchport.cifar10 import SimpleCNN, make_loader
from torchport.keras_compat import KerasSGD, categorical_accuracy, categorical_crossentropy
from torchport.keras_compat.optim import Adam

rng = torch.Generator().manual_seed(3)
X = torch.randint(0, 256, (100, 32, 32, 3), dtype=torch.uint8, generator=rng).numpy()  # 3 batches + 4
Y = torch.randint(0, 10, (100, 1), generator=rng).numpy()
REAL_INIT = cuda_graphs.GraphedStep.__init__


def run(monkeypatch, graphed: bool, backend=cuda_graphs.EmulatedBackend, epochs=2, callbacks=()):
    monkeypatch.setattr(cuda_graphs, "backend_for", (lambda d: backend(d)) if graphed else (lambda d: None))
    made = []

    def record(self, *a, **kw):
        REAL_INIT(self, *a, **kw)
        made.append(self)
    monkeypatch.setattr(cuda_graphs.GraphedStep, "__init__", record)
    torch.manual_seed(0)
    model = SimpleCNN().to(memory_format=torch.channels_last)
    opt = KerasSGD(model.parameters(), learning_rate=0.01, momentum=0.9)
    loader = make_loader(X, Y, 32, shuffle=True, seed=1)
    warnings = []
    monkeypatch.setattr(cuda_graphs.sys, "stderr", type("E", (), {"write": lambda s, m: warnings.append(m),
                                                                   "flush": lambda s: None})())
    h = engine.fit(model, opt, categorical_crossentropy, loader, epochs, metrics={"accuracy": categorical_accuracy},
                   val_loader=make_loader(X[:40], Y[:40], 32), verbose=0, callbacks=list(callbacks))
    return {"history": h.history, "model": copy.deepcopy(model.state_dict()), "opt": copy.deepcopy(opt.state_dict()),
            "steps": made, "warnings": "".join(warnings)}


def same(a, b):
    assert a["history"] == b["history"]
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    sa, sb = a["opt"], b["opt"]
    assert [g["iterations"] for g in sa["param_groups"]] == [g["iterations"] for g in sb["param_groups"]]
    for k in sa["state"]:
        assert torch.equal(sa["state"][k]["velocity"], sb["state"][k]["velocity"])


def test_graphed_run_is_eager_bit_for_bit(monkeypatch):
    eager = run(monkeypatch, graphed=False)
    graphed = run(monkeypatch, graphed=True)
    assert eager["steps"] == [] and len(graphed["steps"]) == 1
    assert len(graphed["steps"][0].graphs) == 2 and not graphed["steps"][0].disabled  # full and last batch
    assert graphed["warnings"] == ""
    assert graphed["opt"]["param_groups"][0]["iterations"] == 8  # 2 epochs x 4 steps
    same(eager, graphed)


def test_host_counters_advance_after_replays(monkeypatch):
    """Planted bug: replays that forget the optimizer's host counter end at the wrong iteration count."""
    eager = run(monkeypatch, graphed=False)
    monkeypatch.setattr(cuda_graphs.GraphedStep, "_set_counters", lambda self, c, plus: None)
    broken = run(monkeypatch, graphed=True)
    with pytest.raises(AssertionError):
        same(eager, broken)


class Perturbed(cuda_graphs.EmulatedBackend):
    """A recorder whose replay is wrong (one extra random draw): the proof must refuse it."""

    def capture(self, fn, host_state):
        graph, out = super().capture(fn, host_state)
        replay = graph.replay
        graph.replay = lambda: (replay(), torch.rand(1))
        return graph, out


class Failing(cuda_graphs.EmulatedBackend):
    def capture(self, fn, host_state):
        raise RuntimeError("operation not permitted when stream is capturing")


@pytest.mark.parametrize("backend, reason", [(Perturbed, "different number of random values"),
                                             (Failing, "the step cannot be captured (operation not permitted")])
def test_a_replay_that_differs_is_refused_and_the_run_stays_eager(monkeypatch, backend, reason):
    eager = run(monkeypatch, graphed=False)
    refused = run(monkeypatch, graphed=True, backend=backend)
    assert refused["steps"][0].disabled and refused["steps"][0].graphs == {}
    assert "CUDA graphs off for this run" in refused["warnings"] and reason in refused["warnings"]
    same(eager, refused)


def test_what_is_not_graphed():
    model = SimpleCNN()
    assert cuda_graphs.why_not(model, KerasSGD(model.parameters(), momentum=0.9), None) is None
    assert "host value" in cuda_graphs.why_not(model, Adam(model.parameters()), None)  # bias correction
    assert "host value" in cuda_graphs.why_not(model, KerasSGD(model.parameters(), decay=0.1, legacy_decay=True),
                                               None)
    assert "host value" in cuda_graphs.why_not(model, torch.optim.SGD(model.parameters(), lr=0.1), None)
    assert "mixed precision" in cuda_graphs.why_not(model, KerasSGD(model.parameters()), "bf16")


class SyncingWarmup(cuda_graphs.EmulatedBackend):
    """The warm-up runs under sync-debug "error" on CUDA: a step that syncs raises there, before any capture."""

    @contextlib.contextmanager
    def warmup(self):
        yield
        raise RuntimeError("called a synchronizing CUDA operation")


def test_a_step_that_syncs_is_refused_at_the_warm_up(monkeypatch):
    eager = run(monkeypatch, graphed=False)
    refused = run(monkeypatch, graphed=True, backend=SyncingWarmup)
    assert refused["steps"][0].disabled and "called a synchronizing CUDA operation" in refused["warnings"]
    same(eager, refused)


class HalveLr(Callback):
    def __init__(self, every_step=False):
        self.every_step = every_step

    def on_epoch_begin(self, epoch):
        if epoch == 1:
            self.optimizer.param_groups[0]["lr"] /= 2

    def on_train_batch_end(self, step, aggregator):
        if self.every_step:
            self.optimizer.param_groups[0]["lr"] *= 0.99


def test_a_learning_rate_changed_by_a_callback_is_not_replayed_stale(monkeypatch):
    """A graph bakes the learning rate in; a callback that changes it makes the step capture again."""
    eager = run(monkeypatch, graphed=False, callbacks=[HalveLr()])
    graphed = run(monkeypatch, graphed=True, callbacks=[HalveLr()])
    assert not graphed["steps"][0].disabled and graphed["steps"][0].recaptures == 1
    same(eager, graphed)
    monkeypatch.setattr(cuda_graphs.GraphedStep, "_host_key", lambda self: None)  # planted: no host check
    stale = run(monkeypatch, graphed=True, callbacks=[HalveLr()])
    with pytest.raises(AssertionError):
        same(eager, stale)


def test_a_learning_rate_changed_every_step_turns_graphs_off(monkeypatch):
    eager = run(monkeypatch, graphed=False, callbacks=[HalveLr(every_step=True)])
    graphed = run(monkeypatch, graphed=True, callbacks=[HalveLr(every_step=True)])
    assert graphed["steps"][0].disabled and "keep changing between steps" in graphed["warnings"]
    same(eager, graphed)
