"""The opt-in fast paths, exercised on CPU: bf16 autocast trains, torch.compile falls back cleanly, and
the verbose=1 bar shows running metrics."""
import io

import pytest
import torch
import torch.nn.functional as F

from torchport import TensorLoader, engine
from torchport.fastpaths import maybe_compile
from torchport.keras_compat import categorical_accuracy
from torchport.keras_compat.progbar import ProgbarLogger


def problem():
    torch.manual_seed(0)
    x = torch.randn(256, 8)
    y = (x[:, 0] > 0).long()
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2)), \
        TensorLoader(x, y, 32, shuffle=True, seed=0)


@pytest.mark.parametrize("amp", [None, "bf16"])
def test_autocast_training_learns_and_reports_float32_metrics(amp):
    model, data = problem()
    h = engine.fit(model, torch.optim.SGD(model.parameters(), 0.5), F.cross_entropy, data, 5,
                   metrics={"acc": categorical_accuracy}, verbose=0, numerics=engine.Numerics(amp))
    assert h.history["acc"][-1] > 0.9 and h.history["loss"][-1] < h.history["loss"][0]
    assert all(isinstance(v, float) for v in h.history["loss"])


def test_compile_failure_falls_back_to_eager_with_one_line(monkeypatch, capsys):
    def broken(*a, **kw):
        raise RuntimeError("Compiler: cc not found\nmore detail")

    monkeypatch.setattr(torch, "compile", broken)
    model, _ = problem()
    assert maybe_compile(model, "default", torch.zeros(2, 8)) is model
    err = capsys.readouterr().err
    assert err == "torchport: warning: torch.compile unavailable here (Compiler: cc not found); running eagerly\n"
    assert maybe_compile(model, None, torch.zeros(2, 8)) is model


def test_verbose_1_draws_a_live_bar_with_running_metrics():
    model, data = problem()
    out = io.StringIO()
    engine.fit(model, torch.optim.SGD(model.parameters(), 0.5), F.cross_entropy, data, 2,
               metrics={"acc": categorical_accuracy}, verbose=0,
               callbacks=[ProgbarLogger(1, file=out, refresh_seconds=0)])
    text = out.getvalue()
    assert "Epoch 1/2" in text and "Epoch 2/2" in text
    assert "8/8" in text and "acc: " in text and "loss: " in text
