"""CUDA checks (`pytest -m cuda`): skipped where no GPU is present, run by scripts/gpu_check.py's functions
where one is. Each holds the promise the CPU suite cannot: no host sync in the hot loop, GPU = CPU with TF32
off, bit-identical repeats and resumes, files written on a GPU that load on a laptop."""
import importlib.util
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.cuda
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def gc():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "scripts" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def cuda():
    return torch.device("cuda")


def test_no_host_sync_in_100_training_steps(gc, cuda):
    assert gc.sync_audit(cuda).startswith("no synchronisation")  # the CUDA-graph step
    assert gc.sync_audit(cuda, cuda_graphs=False).startswith("no synchronisation")
    if torch.cuda.get_device_capability(cuda)[0] >= 8:
        assert gc.sync_audit(cuda, "bf16").startswith("no synchronisation")


def test_gpu_computes_what_the_cpu_computes_with_tf32_off(gc, cuda):
    assert all(v <= 1e-5 for v in gc.parity(cuda).values())


def test_tf32_is_off_inside_fit_and_the_users_flags_come_back(cuda):
    from torchport import TensorLoader, engine
    from torchport.callbacks import Callback
    from torchport.fastpaths import _flags

    seen = []

    class Probe(Callback):
        def on_train_batch_end(self, step, aggregator):
            seen.append(_flags())

    before = _flags()
    model = torch.nn.Linear(4, 2).to(cuda)
    data = TensorLoader(torch.randn(8, 4, device=cuda), torch.zeros(8, dtype=torch.long, device=cuda), 4)
    engine.fit(model, torch.optim.SGD(model.parameters(), 0.1), torch.nn.functional.cross_entropy, data, 1,
               callbacks=[Probe()], verbose=0)
    assert all(f["conv"] in ("ieee", False) and f["deterministic"] for f in seen)
    assert _flags() == before


def test_two_runs_are_bit_identical_and_the_cuda_graph_is_eager_bit_for_bit(gc, cuda):
    assert gc.determinism(cuda, 100) == {"two runs": True, "CUDA graph vs eager": True}


def test_the_seed_step_is_graphed_on_cuda(gc, cuda, monkeypatch):
    from torchport import cuda_graphs, engine
    from torchport.keras_compat import categorical_crossentropy

    made, init = [], cuda_graphs.GraphedStep.__init__
    monkeypatch.setattr(cuda_graphs.GraphedStep, "__init__", lambda self, *a, **kw: (init(self, *a, **kw),
                                                                                     made.append(self))[0])
    model, opt, loader = gc._setup(cuda, 20)
    engine.fit(model, opt, categorical_crossentropy, loader, 1, verbose=0)
    assert len(made) == 1 and not made[0].disabled and len(made[0].graphs) == 1


def test_resume_after_sigint_and_sigkill_and_a_gpu_file_on_a_cpu(gc, cuda):
    checks = gc.resume_checks(cuda)
    assert checks == {"resume after SIGINT": "bit-identical", "resume after SIGKILL": "bit-identical",
                      "model.pt on a CPU-only process": "loads, CPU tensors"}


def test_checkpoints_keep_only_the_training_gpus_rng(cuda):
    from torchport.checkpoint import rng_state, set_rng_state
    state = rng_state(cuda)
    assert set(state) == {"torch", "python", "numpy", "cuda"}
    first = torch.rand(3, device=cuda)
    set_rng_state(state, cuda)
    assert torch.equal(torch.rand(3, device=cuda), first)


def test_a_step_that_syncs_falls_back_to_eager_and_trains_on(gc, cuda):
    from torchport import engine
    from torchport.keras_compat import categorical_crossentropy

    def syncing_loss(out, y):
        loss = categorical_crossentropy(out, y)
        float(loss)  # a host sync: refused at the warm-up, before any capture
        return loss

    runs = []
    for graphs in (True, False):
        model, opt, loader = gc._setup(cuda, 20)
        torch.manual_seed(7)
        engine.fit(model, opt, syncing_loss, loader, 1, verbose=0, numerics=engine.Numerics(cuda_graphs=graphs))
        runs.append([p.detach().cpu() for p in model.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*runs, strict=True))
