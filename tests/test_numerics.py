"""The run's numerics on CPU: the precision/determinism context restores the user's flags, fp16 under a
GradScaler unscales and skips on the device as torch's own path does, compile's warm-up covers a failing
training step, bf16 stays bf16 off the GPU."""
import copy

import pytest
import torch
import torch.nn.functional as F

from torchport import TensorLoader, engine
from torchport.fastpaths import _flags, maybe_compile, numerics, resolve_amp, training_warmup
from torchport.keras_compat.optim import OPTIMIZERS


def test_numerics_sets_tf32_off_and_restores_the_callers_flags():
    before = _flags()
    with numerics("cpu", tf32=False):
        inside = _flags()
        assert inside["matmul"] in ("ieee", False) and inside["conv"] in ("ieee", False)
        with numerics("cpu", tf32=True):
            assert _flags()["conv"] in ("tf32", True)
        assert _flags() == inside  # nested: the outer settings come back
    assert _flags() == before


def test_numerics_makes_cuda_deterministic(monkeypatch):
    with numerics(torch.device("cuda")):  # flags only: no GPU is touched
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    assert torch.backends.cudnn.deterministic is False


def test_bf16_is_kept_off_the_gpu():
    assert resolve_amp("cpu", "bf16") == "bf16" and resolve_amp("cpu", None) is None


@pytest.mark.parametrize("name", ["SGD", "RMSprop", "Adagrad"])
def test_fp16_scaled_steps_match_torchs_unscale_path_and_skip_on_inf(name):
    """Our optimizers take GradScaler's grad_scale/found_inf (no host sync); torch's generic path unscales
    and skips with a sync. The two must produce the same weights, also across a step with an inf. (Adam and
    the others that count iterations differ after a skip: our count lives on the host and still advances.)"""
    torch.manual_seed(0)
    base = torch.nn.Linear(6, 3)
    results = []
    for supports in (True, False):
        model = copy.deepcopy(base)
        opt = OPTIMIZERS[name](model.parameters(), learning_rate=0.05)
        if not supports:
            opt._step_supports_amp_scaling = False  # torch's own unscale_ + skip path
        scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
        g = torch.Generator().manual_seed(1)
        for step in range(6):
            x = torch.randn(8, 6, generator=g)
            with torch.autocast("cpu", dtype=torch.float16):
                loss = F.cross_entropy(model(x), torch.arange(8) % 3)
            if step == 3:
                loss = loss * float("inf")  # this step must be skipped
            opt.zero_grad()
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        results.append([p.detach().clone() for p in model.parameters()])
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    assert all(torch.isfinite(t).all() for t in results[0])


@pytest.mark.parametrize("name", ["Adam", "Nadam", "Adadelta"])
def test_a_step_with_an_inf_changes_no_weight_and_no_slot(name):
    torch.manual_seed(0)
    model = torch.nn.Linear(6, 3)
    opt = OPTIMIZERS[name](model.parameters(), learning_rate=0.05)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    for step in range(3):
        with torch.autocast("cpu", dtype=torch.float16):
            loss = F.cross_entropy(model(torch.randn(8, 6)), torch.arange(8) % 3)
        if step == 2:
            loss = loss * float("nan")
            before = ([p.detach().clone() for p in model.parameters()],
                      [t.clone() for st in opt.state.values() for t in st.values()])
        opt.zero_grad()
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    after = ([p.detach() for p in model.parameters()], [t for st in opt.state.values() for t in st.values()])
    for a, b in zip(before[0] + before[1], after[0] + after[1], strict=True):
        assert torch.equal(a, b)


def test_compile_failing_at_the_training_step_falls_back_with_one_line(monkeypatch, capsys):
    class BreaksOnBackward(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            out = self.inner(x)
            if torch.is_grad_enabled():
                raise RuntimeError("backward graph: unsupported op\\ndetails")
            return out

    monkeypatch.setattr(torch, "compile", lambda m, **kw: BreaksOnBackward(m))
    model = torch.nn.Linear(4, 2)
    weights = copy.deepcopy(model.state_dict())
    opt = OPTIMIZERS["SGD"](model.parameters(), learning_rate=0.1)
    batch = (torch.randn(3, 4), torch.tensor([0, 1, 0]))
    assert maybe_compile(model, "default", training_warmup(opt, F.cross_entropy, batch)) is model
    err = capsys.readouterr().err
    assert err.startswith("torchport: warning: torch.compile unavailable here (backward graph") and err.count("\n") == 1
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in weights.items())  # the warm-up left no trace


def test_warmup_step_leaves_weights_optimizer_and_rng_untouched():
    model = torch.nn.Linear(4, 2)
    opt = OPTIMIZERS["Adam"](model.parameters(), learning_rate=0.1)
    weights, state = copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict())
    batch = (torch.randn(3, 4), torch.tensor([0, 1, 0]))
    rng = torch.get_rng_state()
    compiled = maybe_compile(model, "default", training_warmup(opt, F.cross_entropy, batch))
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in weights.items())
    assert opt.state_dict()["param_groups"][0]["iterations"] == state["param_groups"][0]["iterations"]
    assert torch.equal(torch.get_rng_state(), rng)
    data = TensorLoader(torch.randn(8, 4), torch.zeros(8, dtype=torch.long), 4)
    engine.fit(compiled, opt, F.cross_entropy, data, 1, verbose=0)  # and the compiled model trains


def test_a_cpu_run_saves_no_gpu_rng_and_creates_no_cuda_context():
    from torchport.checkpoint import rng_state
    assert set(rng_state(torch.device("cpu"))) == {"torch", "python", "numpy"}
    assert not torch.cuda.is_initialized()
