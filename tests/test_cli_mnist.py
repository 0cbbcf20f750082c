"""`torchport train mnist`: outputs on success; one line, an exit code and no output on every bad input."""
import gzip
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from torchport.cli import main
from torchport.datasets.idx import write_idx


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_trains_on_given_folder_and_writes_history_and_plots(mnist_dir, tmp_path, capsys):
    out = tmp_path / "out"
    code, stdout, _ = run_cli(capsys, "train", "mnist", "--data-dir", str(mnist_dir), "--out", str(out),
                              "--epochs", "1", "1", "--lr", "0.5", "0.1", "--batch-size", "16", "--device", "cpu")
    assert code == 0
    history = json.loads((out / "history.json").read_text())
    assert len(history) == 3 and all(isinstance(h["val_loss"], float) and 0 <= h["val_acc"] <= 1 for h in history)
    assert (out / "accuracy.png").read_bytes()[:4] == b"\x89PNG" and (out / "loss.png").exists()
    assert "Epoch [0], val_loss:" in stdout and "Test accuracy:" in stdout
    # no temp files left beside the outputs
    assert sorted(os.listdir(out)) == ["accuracy.png", "history.json", "loss.png", "model.pt", "test.json"]


def test_without_data_uses_the_bundled_sample_and_says_so(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TORCHPORT_DATA", str(tmp_path / "empty-cache"))
    code, stdout, err = run_cli(capsys, "train", "mnist", "--out", str(tmp_path / "o"))  # the tutorial's run
    assert code == 0
    assert err.count("\n") == 1 and "bundled" in err and "--data-dir" in err
    assert json.loads((tmp_path / "o" / "history.json").read_text())[-1]["val_acc"] > 0.8  # real digits


def corrupt_gz(d):
    p = d / "train-images-idx3-ubyte.gz"
    raw = p.read_bytes()
    p.write_bytes(raw[:20] + bytes(b ^ 0xFF for b in raw[20:60]) + raw[60:])


def truncate_gz(d):
    p = d / "train-images-idx3-ubyte.gz"
    p.write_bytes(p.read_bytes()[:-100])


def wrong_magic(d):
    p = d / "train-labels-idx1-ubyte.gz"
    raw = bytearray(gzip.decompress(p.read_bytes()))
    raw[2] = 0x0D  # float instead of ubyte
    p.write_bytes(gzip.compress(bytes(raw)))


def wrong_size(d):
    write_idx(str(d / "t10k-labels-idx1-ubyte.gz"), np.zeros(30, np.uint8))
    p = d / "t10k-labels-idx1-ubyte.gz"
    p.write_bytes(gzip.compress(gzip.decompress(p.read_bytes()) + b"\x00"))


@pytest.mark.parametrize("damage, code, message", [
    (corrupt_gz, 1, "train-images-idx3-ubyte.gz: truncated or corrupt gzip"),
    (truncate_gz, 1, "train-images-idx3-ubyte.gz: truncated or corrupt gzip"),
    (wrong_magic, 1, "train-labels-idx1-ubyte.gz: wrong magic number"),
    (wrong_size, 1, "t10k-labels-idx1-ubyte.gz: wrong size"),
    (lambda d: os.remove(d / "t10k-images-idx3-ubyte.gz"), 2, "no MNIST data there"),
])
def test_bad_data_files(mnist_dir, tmp_path, capsys, damage, code, message):
    damage(mnist_dir)
    out = tmp_path / "out"
    got, stdout, err = run_cli(capsys, "train", "mnist", "--data-dir", str(mnist_dir), "--out", str(out))
    assert got == code
    assert err.count("\n") == 1 and message in err and err.startswith("torchport: error:")
    assert not out.exists()


@pytest.mark.parametrize("args, message", [
    (["--data-dir", "/nonexistent/mnist"], "--data-dir /nonexistent/mnist: no such folder"),
    (["--epochs", "-1"], "argument --epochs: expected a whole number >= 1, got '-1'"),
    (["--epochs", "0", "--lr", "0.1"], "argument --epochs: expected a whole number >= 1, got '0'"),
    (["--batch-size", "0"], "argument --batch-size: expected a whole number >= 1, got '0'"),
    (["--lr", "fast"], "argument --lr: expected a positive finite number, got 'fast'"),
    (["--lr", "nan"], "argument --lr: expected a positive finite number, got 'nan'"),
    (["--epochs", "5", "5", "--lr", "0.5"], "--epochs has 2 phases but --lr has 1"),
    (["--device", "tpu"], "argument --device: invalid choice: 'tpu'"),
])
def test_bad_arguments_exit_2_with_one_line(tmp_path, capsys, args, message):
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, "train", "mnist", "--out", str(out), *args)
    assert code == 2 and err.count("\n") == 1 and message in err
    assert not out.exists()


def test_real_process_exit_code_and_no_traceback(tmp_path):
    p = subprocess.run([sys.executable, "-m", "torchport", "train", "mnist", "--data-dir", str(tmp_path / "none")],
                       capture_output=True, text=True, cwd=tmp_path)
    assert p.returncode == 2 and "Traceback" not in p.stderr and p.stderr.count("\n") == 1
    assert not (tmp_path / "runs").exists()
