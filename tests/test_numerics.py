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


def test_the_legacy_allow_tf32_flags_are_set_and_restored_on_an_older_torch(monkeypatch):
    """torch before 2.9 has no `fp32_precision`: the context then uses `allow_tf32`, and restores it."""
    import warnings

    from torchport import fastpaths
    monkeypatch.setattr(fastpaths, "_precision_api", lambda: False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch 2.9+ deprecates the legacy flags it still honours
        cuda, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
        saved = cuda.allow_tf32, cudnn.allow_tf32
        try:
            cuda.allow_tf32, cudnn.allow_tf32 = True, True  # a user who turned TF32 on
            with numerics("cpu", tf32=False):
                assert (cuda.allow_tf32, cudnn.allow_tf32) == (False, False)
                assert fastpaths._flags()["matmul"] is False and fastpaths._flags()["conv"] is False
            assert (cuda.allow_tf32, cudnn.allow_tf32) == (True, True)
        finally:
            cuda.allow_tf32, cudnn.allow_tf32 = saved


@pytest.mark.parametrize("capability, want", [((7, 5), "fp16"), ((8, 0), "bf16"), ((9, 0), "bf16")])
def test_bf16_becomes_fp16_with_one_line_on_a_gpu_before_compute_capability_8(monkeypatch, capability, want):
    """Colab's T4 (7.5) emulates bf16: fp16 with loss scaling instead, said in one line (no GPU needed)."""
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    said = []
    assert resolve_amp(torch.device("cuda"), "bf16", warn=said.append) == want
    assert len(said) == (1 if want == "fp16" else 0)
    assert not said or "compute capability 7.5" in said[0]


def test_an_fp16_run_resumes_with_its_grad_scaler_state_bit_for_bit(tmp_path):
    """fp16 on the CPU (autocast + GradScaler): 3 epochs straight, and 1 epoch then a resume from its
    checkpoint, give the same weights and the same scale; the checkpoint holds the scaler's state."""
    from torchport.checkpoint import Checkpointer, resume_run

    def run(epochs, ck=None, resume=False):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
        opt = OPTIMIZERS["SGD"](model.parameters(), learning_rate=0.1, momentum=0.9)
        g = torch.Generator().manual_seed(1)
        loader = TensorLoader(torch.randn(40, 6, generator=g), torch.arange(40) % 3, 8, shuffle=True, seed=2)
        point = resume_run(str(ck), True, {"amp": "fp16"}, model, opt)[1] if resume else None
        callbacks = [Checkpointer(str(ck), {"amp": "fp16"}, loader)] if ck else []
        scaler_seen = []
        callbacks.append(type("Spy", (engine.Callback,), {"on_train_end": lambda self, logs=None: scaler_seen.append(
            self.params["grad_scaler"].state_dict())})())
        engine.fit(model, opt, F.cross_entropy, loader, epochs, verbose=0, numerics=engine.Numerics("fp16"),
                   callbacks=callbacks, resume=point)
        return model.state_dict(), scaler_seen[0]

    straight, scale = run(3)
    run(1, tmp_path)  # writes epoch-0001.pt
    state = torch.load(tmp_path / "epoch-0001.pt", weights_only=True)
    assert state["resume"]["scaler"] is not None and "scale" in state["resume"]["scaler"]
    resumed, resumed_scale = run(3, tmp_path, resume=True)
    assert scale["_growth_tracker"] == 15  # 5 unskipped steps an epoch: the state a resume must carry on
    assert resumed_scale == scale and all(torch.equal(straight[k], resumed[k]) for k in straight)


def test_a_resume_under_other_numerics_is_refused(tmp_path):
    """The run's config holds device, amp, tf32 and compile: a checkpoint made with TF32 on is skipped by a
    run with it off (and the other way round), naming the setting."""
    import dataclasses

    from torchport.checkpoint import Checkpointer, load_latest, run_identity
    from torchport.cifar10 import Cifar10Config

    model = torch.nn.Linear(3, 2)
    opt = OPTIMIZERS["SGD"](model.parameters(), learning_rate=0.1)
    loader = TensorLoader(torch.randn(4, 3), torch.arange(4) % 2, 2)
    made = run_identity(Cifar10Config(tf32=True, amp="bf16"))
    engine.fit(model, opt, F.cross_entropy, loader, 1, verbose=0, callbacks=[Checkpointer(str(tmp_path), made, loader)])
    for other in (dataclasses.replace(Cifar10Config(), amp="bf16"), dataclasses.replace(Cifar10Config(), tf32=True),
                  Cifar10Config(tf32=True, amp="bf16", device="cuda"), Cifar10Config(tf32=True, amp="bf16",
                                                                                       compile="default")):
        said = []
        assert load_latest(str(tmp_path), run_identity(other), model, opt, warn=said.append) is None
        assert "made by a run with different settings" in said[0]
    assert load_latest(str(tmp_path), made, model, opt) is not None
