"""More than one process (torchrun's environment, gloo on CPU): 2 ranks x batch 16 train exactly as one
process at batch 32, an uneven last batch included; the CLI under torchrun end to end."""
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from torchport import TensorLoader, distributed, engine
from torchport.keras_compat import KerasSGD, categorical_accuracy


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _problem(n: int):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 12, generator=g, dtype=torch.float64)
    y = (x[:, :3].sum(1) > 0).long() + (x[:, 3] > 1).long()
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(12, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3)).double()
    return x, y, model


def _train(model, x, y, shard=(0, 1), aggregator=engine.WeightedMean):
    loader = TensorLoader(x, y, 32, shuffle=True, seed=5, shard=shard)
    opt = KerasSGD(model.parameters(), learning_rate=0.05, momentum=0.9, nesterov=True)
    h = engine.fit(model, opt, F.cross_entropy, loader, 2, metrics={"acc": categorical_accuracy}, verbose=0,
                   aggregator=aggregator)
    return h.history


def _rank(rank: int, world: int, port: int, n: int, out: str):
    os.environ.update({"RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    torch.set_num_threads(1)
    group, device = distributed.setup(torch.device("cpu"))
    x, y, model = _problem(n)
    history = _train(distributed.wrap(model, group, device), x, y, (group.rank, group.world),
                     distributed.SyncedMean)
    if group.main:
        torch.save({"history": history, "weights": model.state_dict()}, out)
    distributed.cleanup()


@pytest.mark.parametrize("n", [20 * 32, 20 * 32 + 9])  # 20 steps an epoch; then a last batch of 9 split 5 / 4
def test_two_ranks_at_16_train_as_one_process_at_32(tmp_path, n):
    out = str(tmp_path / "rank0.pt")
    torch.multiprocessing.spawn(_rank, args=(2, _free_port(), n, out), nprocs=2, join=True)
    x, y, model = _problem(n)
    want = _train(model, x, y)
    got = torch.load(out, weights_only=False)
    for key, values in want.items():
        np.testing.assert_allclose(got["history"][key], values, rtol=0, atol=1e-12, err_msg=key)
    for key, w in model.state_dict().items():
        torch.testing.assert_close(got["weights"][key], w, rtol=0, atol=1e-12)


def test_shards_cover_each_global_batch_once():
    from torchport.device import shard_bounds
    for n in (32, 9, 17):
        for world in (2, 3):
            if n < world:
                continue
            parts = [shard_bounds(n, r, world) for r in range(world)]
            assert parts[0][0] == 0 and parts[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(parts, parts[1:], strict=False))
            assert max(e - s for s, e in parts) - min(e - s for s, e in parts) <= 1
    with pytest.raises(ValueError, match="cannot be split over 4 processes"):
        TensorLoader(torch.zeros(33, 2), torch.zeros(33), 32, shard=(0, 4))


def test_cli_under_torchrun_two_processes(tmp_path):
    env = {**os.environ, "TORCHPORT_OFFLINE": "1", "TORCHPORT_DATA": str(tmp_path / "none"), "OMP_NUM_THREADS": "1"}
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                        "-m", "torchport", "train", "mnist", "--epochs", "1", "1", "--device", "cpu",
                        "--out", str(out), "--checkpoint-dir", str(tmp_path / "ck")],
                       env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("Before training") == 1 and r.stdout.count("Epoch [0]") == 2  # rank 0 alone prints
    history = json.loads((out / "history.json").read_text())
    assert len(history) == 3 and history[-1]["val_acc"] > 0.8
    assert sorted(os.listdir(tmp_path / "ck")) == ["epoch-0001.pt", "epoch-0002.pt"]


def test_fit_under_torchrun_resumes_bit_exact_with_each_ranks_own_dropout_draws(tmp_path):
    """`torchport fit` of a model with Dropout under `torchrun --nproc_per_node 2`: 2 epochs straight, and 1
    epoch then `--resume` for the second (the newest checkpoint removed). Each rank draws its own dropout
    masks from its own generator, so the checkpoint must hold every rank's (before: rank 0's went to all)."""
    from torchport.originals import __file__ as originals
    model = os.path.join(os.path.dirname(originals), "small_mnist_cnn.keras")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x_train=rng.uniform(size=(96, 28, 28, 1)).astype("float32"),
             y_train=rng.integers(0, 10, 96))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def fit(out, *extra):
        r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                            "-m", "torchport", "fit", model, "--data", str(tmp_path / "d.npz"), "--epochs", "2",
                            "--device", "cpu", "--verbose", "0", "--out", str(tmp_path / out), *extra],
                           env=env, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-3000:]
        return torch.load(tmp_path / out / "weights.pt", weights_only=True)

    straight = fit("straight")
    ck = tmp_path / "ck"
    fit("first", "--checkpoint-dir", str(ck))
    os.remove(ck / "epoch-0002.pt")  # as if the run had stopped after its first epoch
    resumed = fit("resumed", "--checkpoint-dir", str(ck), "--resume")
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
