"""Checkpoints: a run killed (SIGKILL) at random points and resumed ends bit for bit where an uninterrupted
run ends; SIGINT/SIGTERM write a mid-epoch checkpoint and exit 130/143; bad checkpoints are skipped."""
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

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
