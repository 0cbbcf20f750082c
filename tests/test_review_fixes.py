"""The defects found in review (issue 9), one test each; every one of them failed before its fix."""
import copy
import re
import signal
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from torchport import TensorLoader, engine
from torchport.checkpoint import Checkpointer, load_latest
from torchport.cifar10 import SimpleCNN
from torchport.errors import NonFiniteLossError
from torchport.keras_compat import KerasSGD, categorical_crossentropy
from torchport.keras_compat.progbar import ProgbarLogger

ROOT = Path(__file__).resolve().parents[1]


# 2. `torchport bench --quick` on a machine with no data (250 bundled test images) ------------------------

def test_bench_quick_runs_offline_on_the_bundled_sample(tmp_path, monkeypatch):
    from torchport.bench import run_bench
    monkeypatch.setenv("TORCHPORT_DATA", str(tmp_path / "no-cache"))  # nothing cached, no network
    r = run_bench(None, None, "cpu", quick=True, with_keras=False)
    t = r["torchport"]
    assert t["ms_per_step"] > 0 and t["images_per_s"] > 0 and t["x_floor"] > 0


def test_inference_split_fits_small_test_sets():
    from torchport.bench import _inference_split
    assert _inference_split(10000, 32) == (256, 4096)
    assert _inference_split(250, 32) == (32, 250)        # the bundled sample: 1 batch warm-up, 218 timed
    with pytest.raises(ValueError, match="too few"):
        _inference_split(20, 32)


# 3. the KS statistic without scipy ----------------------------------------------------------------------

def test_ks_statistic_matches_hand_values_and_scipy_free():
    from torchport.parity import ks_statistic
    # empirical CDFs of {1, 2, 3} and {2.5, 4}: at 2 they are 2/3 and 0, the largest gap
    assert ks_statistic(np.array([1.0, 2, 3]), np.array([2.5, 4])) == pytest.approx(2 / 3)
    assert ks_statistic(np.arange(5.0), np.arange(5.0)) == 0.0
    assert ks_statistic(np.zeros(3), np.ones(4)) == 1.0
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert not any("scipy" in r for reqs in extra.values() for r in reqs)


# 4. portable outputs: every tensor saved on the CPU; predict like Keras' ---------------------------------

def test_saved_files_hold_cpu_tensors_moved_there_before_saving(tmp_path, monkeypatch):
    from torchport.outputs import save_torch
    moved = []
    real_to = torch.Tensor.to

    def spy(self, *args, **kw):
        moved.append(torch.device(args[0] if args else kw["device"]).type)
        return real_to(self, *args, **kw)

    model = SimpleCNN()
    opt = KerasSGD(model.parameters(), learning_rate=0.1, momentum=0.9)
    model(torch.zeros(1, 3, 32, 32)).sum().backward()
    opt.step()
    monkeypatch.setattr(torch.Tensor, "to", spy)
    save_torch(str(tmp_path / "m.pt"), {"model": model.state_dict(), "optimizer": opt.state_dict()})
    n_tensors = len(model.state_dict()) + len(opt.state_dict()["state"])
    assert moved.count("cpu") == n_tensors  # each one sent to the CPU (a no-op here, a copy from a GPU)
    loaded = torch.load(tmp_path / "m.pt", weights_only=True)
    assert all(t.device.type == "cpu" for t in loaded["model"].values())


def test_predict_takes_numpy_moves_to_the_models_dtype_and_returns_cpu_probabilities():
    torch.manual_seed(0)
    m = SimpleCNN().double()
    x = np.random.default_rng(0).uniform(size=(5, 3, 32, 32)).astype("float32")
    p = m.predict(x, batch_size=2)
    assert p.device.type == "cpu" and p.dtype == torch.float64
    m.eval()
    assert torch.allclose(torch.softmax(m(torch.from_numpy(x).double()), -1), p)


# 5. cleanup runs however training ends --------------------------------------------------------------------

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


# 6. checkpoint loading validates before it mutates --------------------------------------------------------

def test_a_checkpoint_whose_optimizer_part_fails_leaves_the_model_untouched(tmp_path):
    torch.manual_seed(0)
    trained = SimpleCNN()
    opt = KerasSGD(trained.parameters(), learning_rate=0.1, momentum=0.9)
    data = TensorLoader(torch.rand(4, 3, 32, 32), torch.eye(10)[:4], 2)
    engine.fit(trained, opt, categorical_crossentropy, data, 1, verbose=0,
               callbacks=[Checkpointer(str(tmp_path), {"run": 1}, data)])
    path = tmp_path / "epoch-0001.pt"
    state = torch.load(path, weights_only=True)
    state["optimizer"]["param_groups"][0]["params"] = [0]  # the model part is fine, the optimizer's is not
    torch.save(state, path)

    fresh = SimpleCNN()
    before = copy.deepcopy(fresh.state_dict())
    warnings = []
    assert load_latest(str(tmp_path), {"run": 1}, fresh, KerasSGD(fresh.parameters(), momentum=0.9),
                       warn=warnings.append) is None
    assert "skipping checkpoint" in warnings[0]
    assert all(torch.equal(v, fresh.state_dict()[k]) for k, v in before.items())


@pytest.mark.parametrize("part", ["resume", "rng", "history"])
def test_a_checkpoint_with_a_broken_resume_rng_or_history_part_is_skipped_before_loading(tmp_path, part):
    from torchport.checkpoint import resume_run

    torch.manual_seed(0)
    m = torch.nn.Linear(3, 2)
    opt = KerasSGD(m.parameters(), learning_rate=0.1, momentum=0.9)
    data = TensorLoader(torch.rand(4, 3), torch.eye(2)[[0, 1, 0, 1]], 2)
    history = engine.History()
    engine.fit(m, opt, categorical_crossentropy, data, 1, verbose=0, history=history,
               callbacks=[Checkpointer(str(tmp_path), {"run": 1}, data,
                                       extra=lambda: {"history": history.state_dict()})])
    path = tmp_path / "epoch-0001.pt"
    state = torch.load(path, weights_only=True)
    state[part] = {"resume": {"epoch": "one"}, "rng": {"torch": 3}, "history": [1, 2]}[part]
    torch.save(state, path)
    fresh = torch.nn.Linear(3, 2)
    before = copy.deepcopy(fresh.state_dict())
    assert resume_run(str(tmp_path), True, {"run": 1}, fresh, KerasSGD(fresh.parameters(), momentum=0.9),
                      needs={"history": lambda h: engine.History().load_state_dict(h)}) == (None, None)
    assert all(torch.equal(v, fresh.state_dict()[k]) for k, v in before.items())


# 7. a failed download says why -----------------------------------------------------------------------------

def test_a_failed_download_says_why_in_one_line(tmp_path, monkeypatch):
    from torchport.datasets.fetch import locate
    monkeypatch.delenv("TORCHPORT_OFFLINE", raising=False)
    monkeypatch.setenv("TORCHPORT_DATA", str(tmp_path))
    lines = []

    def download(root):
        raise OSError("[Errno -3] Temporary failure in name resolution\nmore")

    got = locate("MNIST", None, lambda d: False, download, sample="SAMPLE", how_to_get="pass --data-dir",
                 log=lambda msg, file=None: lines.append(msg))
    assert got == "SAMPLE"
    assert lines[0] == "MNIST download failed (OSError: [Errno -3] Temporary failure in name resolution)"
    assert "bundled" in lines[1] and len(lines) == 2


# 8. the dependency floor: fit builds torch.amp.GradScaler, which torch < 2.3 lacks ------------------------

def test_torch_floor_is_2_3():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    torch_req = next(d for d in deps if re.match(r"torch\b(?!vision)", d))
    floor = tuple(int(v) for v in re.search(r">=\s*([\d.]+)", torch_req).group(1).split(".")[:2])
    assert floor >= (2, 3), torch_req
    assert hasattr(torch.amp, "GradScaler")


# 9. strict comparisons --------------------------------------------------------------------------------------

def test_parity_comparisons_refuse_lists_of_different_lengths():
    from torchport.parity import count_differing, max_abs, worst
    with pytest.raises(ValueError):
        worst(([np.zeros(2), np.zeros(2)], [np.zeros(2)]), max_abs)
    assert count_differing([1, 2, 3], [1, 2]) == 1 and count_differing([1, 2], [1, 2]) == 0


# the house: no import cycle between the loop and its logger ---------------------------------------------

def test_engine_and_progbar_import_without_a_cycle():
    import subprocess
    code = "import torchport.keras_compat.progbar, torchport.engine"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    src = (ROOT / "torchport" / "keras_compat" / "progbar.py").read_text()
    assert "from ..engine" not in src and "from ..callbacks import Callback" in src


# house: the CLI's defaults are the config dataclasses' own ----------------------------------------------------

@pytest.mark.parametrize("argv", [["train", "mnist"], ["train", "cifar10"], ["fit", "m.keras", "--data", "d.npz"]])
def test_cli_defaults_are_the_config_dataclasses_defaults(argv):
    import dataclasses

    from torchport.cifar10 import Cifar10Config
    from torchport.cli import build_parser, config_from_args
    from torchport.keras_fit.run import FitConfig
    from torchport.mnist import MnistConfig

    cls = {"mnist": MnistConfig, "cifar10": Cifar10Config, "m.keras": FitConfig}[argv[1]]
    args = build_parser().parse_args(argv)
    got = config_from_args(cls, args)
    want = cls(**({"model": "m.keras", "data": "d.npz"} if cls is FitConfig else {}))
    differing = [f.name for f in dataclasses.fields(cls) if f.name not in ("device", "out")
                 and getattr(got, f.name) != getattr(want, f.name)]
    assert differing == []
    if cls is not FitConfig:  # fit's default folder is runs/fit/<file name>, set after parsing
        assert got.out == want.out


# plots number epochs from 1, as the log's "Epoch 1/25" does ---------------------------------------------------

@pytest.mark.parametrize("command", ["cifar10", "fit", "mnist"])
def test_every_cli_plot_numbers_its_epochs_from_1(tmp_path, monkeypatch, command):
    """Each plot the CLI draws puts epoch k at x = k (the MNIST tutorial's history has the evaluation before
    training first, at x = 0, its first trained epoch at 1)."""
    from torchport import outputs
    from torchport.cli import main

    drawn = []
    original = outputs.write_plot

    def spy(*args, **kwargs):
        fig = original(*args, **kwargs)
        drawn.append([list(line.get_xdata()) for line in fig.axes[0].lines])
        return fig

    from torchport import cifar10, mnist
    from torchport.keras_fit import run as fit_run
    for module in (outputs, cifar10, fit_run, mnist):
        monkeypatch.setattr(module, "write_plot", spy, raising=False)
    monkeypatch.setenv("TORCHPORT_OFFLINE", "1")
    monkeypatch.setenv("TORCHPORT_DATA", str(tmp_path / "none"))
    out = str(tmp_path / "out")
    if command == "cifar10":
        argv, want = ["train", "cifar10", "--epochs", "2", "--verbose", "0"], [1, 2]
    elif command == "mnist":
        argv, want = ["train", "mnist", "--epochs", "1", "1"], [0, 1, 2]
    else:
        from test_fit import compile_config, tiny_data, tiny_model
        argv = ["fit", tiny_model(tmp_path, compile_config()), "--data", tiny_data(tmp_path), "--epochs", "3",
                "--verbose", "0"]
        want = [1, 2, 3]
    assert main([*argv, "--device", "cpu", "--out", out]) == 0
    assert drawn and all(xs == want for lines in drawn for xs in lines), drawn
