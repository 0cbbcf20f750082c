"""`torchport train cifar10` end to end on hand-made data, and its bad inputs."""
import json
import re

import pytest

from torchport.cli import main


def test_trains_writes_keras_history_and_prints_keras_lines(cifar_dir, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["train", "cifar10", "--data-dir", str(cifar_dir), "--out", str(out), "--epochs", "2",
                 "--device", "cpu"])
    stdout, err = capsys.readouterr()
    assert code == 0
    h = json.loads((out / "history.json").read_text())
    assert set(h) == {"loss", "accuracy", "val_loss", "val_accuracy"} and all(len(v) == 2 for v in h.values())
    lines = stdout.splitlines()
    assert "Epoch 1/2" in lines and "Epoch 2/2" in lines
    num = r"(\d+\.\d{4}|\d\.\d{4}e[+-]\d\d)"  # Keras: 4 decimals, or .4e at or below 1e-3
    pattern = rf"3/3 - \d+s - \d+(ms|us|s)/step - accuracy: {num} - loss: {num} - val_accuracy: {num} - val_loss: {num}"
    epoch_lines = [line for line in lines if re.fullmatch(pattern, line)]
    assert len(epoch_lines) == 2  # 65 samples at batch 32: 3 steps, the last partial
    assert "Total params: 4,210,090" in stdout
    assert re.search(r"^Accuracy: \d+\.\d\d%$", stdout, re.M)
    from torchport.keras_compat.progbar import format_metrics
    assert format_metrics({"val_accuracy": h["val_accuracy"][-1]}) in epoch_lines[-1]
    assert "no longer supported and will be ignored" in err  # Keras 3's decay warning, as the seed saw it
    assert (out / "accuracy.png").exists() and (out / "loss.png").exists()


@pytest.mark.parametrize("args, message", [
    (["--epochs", "0"], "argument --epochs: expected a whole number >= 1"),
    (["--batch-size", "-3"], "argument --batch-size: expected a whole number >= 1"),
    (["--lr", "inf"], "argument --lr: expected a positive finite number"),
    (["--momentum", "2"], "argument --momentum: expected a number in [0, 1]"),
    (["--verbose", "3"], "argument --verbose: invalid choice"),
    (["--data-dir", "/nonexistent"], "--data-dir /nonexistent: no such folder"),
])
def test_bad_arguments(tmp_path, capsys, args, message):
    out = tmp_path / "out"
    code = main(["train", "cifar10", "--out", str(out), *args])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err and not out.exists()


def test_named_folder_without_data_is_exit_2(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code = main(["train", "cifar10", "--data-dir", str(tmp_path / "empty"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "no CIFAR-10 data there" in err and not (tmp_path / "o").exists()
