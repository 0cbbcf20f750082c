"""The parity suite is reproducible: every draw seeded, the saturated case constructed (issue 9)."""
import sys

import numpy as np

from torchport import parity


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


def test_bench_quick_with_keras_runs_offline_on_the_bundled_sample(tmp_path, monkeypatch, capsys):
    from torchport.cli import main
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("TORCHPORT_DATA", str(tmp_path / "no-cache"))
    monkeypatch.setenv("TORCHPORT_OFFLINE", "1")
    assert main(["bench", "--quick", "--device", "cpu", "--out", str(tmp_path / "bench")]) == 0
    out = capsys.readouterr().out
    assert "| train ms/step (median) |" in out and ("x faster" in out or "x slower" in out)
    assert (tmp_path / "bench" / "bench.json").exists()
