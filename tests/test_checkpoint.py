"""Checkpoints: a run killed (SIGKILL) at random points and resumed ends bit for bit where an uninterrupted
run ends; SIGINT/SIGTERM write a mid-epoch checkpoint and exit 130/143; bad checkpoints are skipped."""
import copy
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

from torchport import TensorLoader, engine
from torchport.checkpoint import Checkpointer, load_latest
from torchport.cifar10 import SimpleCNN
from torchport.keras_compat import KerasSGD, categorical_crossentropy

ARGS = ["train", "cifar10", "--epochs", "3", "--device", "cpu", "--verbose", "0"]  # the bundled real sample


@pytest.fixture
def env(tmp_path):
    return {**os.environ, "TORCHPORT_OFFLINE": "1", "TORCHPORT_DATA": str(tmp_path / "no-cache"),
            "OMP_NUM_THREADS": str(torch.get_num_threads())}


def cli(*args):
    return [sys.executable, "-m", "torchport", *ARGS, *args]


def outputs(folder):
    weights = torch.load(os.path.join(folder, "model.pt"))
    return weights, json.loads(open(os.path.join(folder, "history.json")).read())


def assert_identical(a, b):
    (wa, ha), (wb, hb) = outputs(a), outputs(b)
    assert ha == hb  # every float, every epoch
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.fixture
def reference(tmp_path, env):
    subprocess.run(cli("--out", str(tmp_path / "ref")), env=env, check=True, capture_output=True)
    return str(tmp_path / "ref")


def test_sigkill_at_random_points_then_resume_is_bit_identical(tmp_path, env, reference):
    ck, out = str(tmp_path / "ck"), str(tmp_path / "run")
    rng = random.Random(1234)
    kills = []
    for _ in range(3):
        p = subprocess.Popen(cli("--out", out, "--checkpoint-dir", ck, "--resume"), env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # wait for the first checkpoint of this attempt, then kill at a random moment after it
        def present():
            return set(os.listdir(ck)) if os.path.isdir(ck) else set()

        before = present()
        deadline = time.time() + 120
        while time.time() < deadline and p.poll() is None and present() <= before:
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 1.5))
        p.send_signal(signal.SIGKILL)
        p.wait()
        kills.append(sorted(os.listdir(ck)))
    subprocess.run(cli("--out", out, "--checkpoint-dir", ck, "--resume"), env=env, check=True, capture_output=True)
    print("checkpoints present at each kill:", kills)
    assert_identical(reference, out)


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_writes_a_mid_epoch_checkpoint_and_resume_is_bit_identical(tmp_path, env, reference, sig, code):
    ck, out = str(tmp_path / "ck"), str(tmp_path / "run")
    p = subprocess.Popen(cli("--out", out, "--checkpoint-dir", ck), env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (os.path.isdir(ck) and os.listdir(ck)):
        time.sleep(0.05)
    time.sleep(0.3)  # into the second epoch
    p.send_signal(sig)
    _, err = p.communicate(timeout=60)
    assert p.returncode == code
    last = err.strip().splitlines()[-1]
    assert "checkpoint written to" in last and "--resume" in last and "Traceback" not in err
    assert any("-step-" in f for f in os.listdir(ck))  # mid-epoch
    assert not os.path.exists(out)  # nothing half-written
    subprocess.run(cli("--out", out, "--checkpoint-dir", ck, "--resume"), env=env, check=True, capture_output=True)
    assert_identical(reference, out)


def test_bad_checkpoints_are_skipped_with_a_warning(tmp_path, env, reference):
    ck, out = tmp_path / "ck", str(tmp_path / "run")
    r = subprocess.run(cli("--out", out, "--checkpoint-dir", str(ck), "--epochs", "3"), env=env, capture_output=True)
    assert r.returncode == 0 and sorted(os.listdir(ck)) == ["epoch-0001.pt", "epoch-0002.pt", "epoch-0003.pt"]
    os.remove(ck / "epoch-0003.pt")
    raw = (ck / "epoch-0002.pt").read_bytes()
    (ck / "epoch-0002.pt").write_bytes(raw[: len(raw) // 2])           # truncated
    r = subprocess.run(cli("--out", out, "--checkpoint-dir", str(ck), "--resume"), env=env, capture_output=True,
                       text=True)
    assert r.returncode == 0 and "skipping checkpoint" in r.stderr and "epoch-0002.pt" in r.stderr
    assert "Resuming after epoch 1" in r.stdout
    assert_identical(reference, out)
    r = subprocess.run(cli("--out", out, "--checkpoint-dir", str(ck), "--resume", "--lr", "0.02"), env=env,
                       capture_output=True, text=True)
    assert "made by a run with different settings (lr)" in r.stderr and "starting from the beginning" in r.stdout


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
