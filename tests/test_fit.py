"""`torchport fit` without TensorFlow: one engine behind two doors (the seed CNN's .keras trained with
`fit` gives `train cifar10`'s History), Keras' fit semantics, outputs, bad input, checkpoints."""
import json
import os
import signal
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest
import torch
from keras_files import write_keras_file

from torchport.cli import main



def seed_cnn_file(path, seed: int = 7) -> str:
    """The seed CNN as a .keras file holding exactly the weights `train cifar10 --seed 7` starts from."""
    from torchport.originals.seed_cnn import write_keras_file as write_seed
    return write_seed(str(path), seed)


def sample_npz(path) -> str:
    """The bundled CIFAR-10 sample as a Keras user holds it: x / 255 float32 NHWC, one-hot labels."""
    from torchport.cifar10 import load_data
    (x, y), (xt, yt) = load_data(None, log=lambda *a, **k: None)
    np.savez(path, x_train=x.astype("float32") / 255.0, y_train=np.eye(10, dtype="float32")[y.ravel()],
             x_test=xt.astype("float32") / 255.0, y_test=np.eye(10, dtype="float32")[yt.ravel()])
    return str(path)


def test_one_engine_two_doors_seed_cnn_fit_equals_train_cifar10(tmp_path, capsys):
    model, data = seed_cnn_file(tmp_path / "seed.keras"), sample_npz(tmp_path / "cifar.npz")
    assert main(["train", "cifar10", "--epochs", "2", "--seed", "7", "--device", "cpu", "--verbose", "0",
                 "--out", str(tmp_path / "train")]) == 0
    assert main(["fit", model, "--data", data, "--epochs", "2", "--seed", "7", "--device", "cpu", "--verbose", "0",
                 "--out", str(tmp_path / "fit")]) == 0
    trained = json.loads((tmp_path / "train" / "history.json").read_text())
    fitted = json.loads((tmp_path / "fit" / "history.json").read_text())
    assert fitted == trained  # every float of every epoch
    a = torch.load(tmp_path / "train" / "model.pt", weights_only=True)
    b = torch.load(tmp_path / "fit" / "weights.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)


def tiny_model(tmp_path, compile_config=None, units=3, shape=(4,), name="m.keras", dropout=None):
    policy = {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"}, "registered_name": None}
    layers = [{"module": "keras.layers", "class_name": "InputLayer", "config": {"batch_shape": [None, *shape],
                                                                                "dtype": "float32", "name": "x"}}]
    if dropout:  # the training then draws from the RNG: a resume must restore it
        layers.append({"module": "keras.layers", "class_name": "Dropout",
                       "config": {"name": "dropout", "rate": dropout, "dtype": policy}})
    layers.append({"module": "keras.layers", "class_name": "Dense", "config": {
        "name": "dense", "units": units, "activation": "softmax", "dtype": policy}})
    config = {"module": "keras", "class_name": "Sequential", "config": {"name": "tiny", "layers": layers}}
    return write_keras_file(tmp_path / name, config, compile_config=compile_config)


def compile_config(optimizer="Adam", loss="sparse_categorical_crossentropy", metrics=("accuracy",), **opt):
    return {"optimizer": {"module": "keras.optimizers", "class_name": optimizer,
                          "config": {"learning_rate": 0.01, **opt}, "registered_name": None},
            "loss": loss, "metrics": list(metrics)}


def tiny_data(tmp_path, n=50, name="d.npz", **override):
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.normal(size=(n, 4)).astype("float32"), "y_train": rng.integers(0, 3, n),
              "x_test": rng.normal(size=(10, 4)).astype("float32"), "y_test": rng.integers(0, 3, 10)}
    arrays.update(override)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    np.savez(tmp_path / name, **arrays)
    return str(tmp_path / name)


def test_fit_writes_keras_history_weights_for_keras_and_plots(tmp_path, capsys):
    model, data = tiny_model(tmp_path, compile_config()), tiny_data(tmp_path)
    out = tmp_path / "out"
    assert main(["fit", model, "--data", data, "--epochs", "3", "--out", str(out), "--device", "cpu"]) == 0
    stdout = capsys.readouterr().out
    assert "Epoch 3/3" in stdout and "2/2 - " in stdout  # 50 samples at batch 32: 2 steps, the last of 18
    h = json.loads((out / "history.json").read_text())
    assert set(h) == {"loss", "accuracy", "val_loss", "val_accuracy"} and all(len(v) == 3 for v in h.values())
    assert sorted(p.name for p in out.iterdir()) == ["accuracy.png", "history.json", "loss.png", "model.keras",
                                                      "model.weights.h5", "weights.pt"]
    with zipfile.ZipFile(out / "model.keras") as z:
        assert json.loads(z.read("config.json"))["compile_config"]["optimizer"]["class_name"] == "Adam"


def test_validation_split_takes_the_last_fraction_like_keras(tmp_path):
    from torchport.keras_fit.run import FitConfig, run
    model = tiny_model(tmp_path, compile_config(metrics=()))
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(40, 4)).astype("float32"), rng.integers(0, 3, 40)
    data = tiny_data(tmp_path, x_train=x, y_train=y, x_test=None, y_test=None)
    r = run(FitConfig(model=model, data=data, epochs=1, validation_split=0.25, verbose=0, out=str(tmp_path / "o")))
    assert r["plan"] is not None
    from torchport import engine
    from torchport.keras_compat.losses import KerasLoss
    from torchport.device import TensorLoader
    last = TensorLoader(torch.from_numpy(x[30:]), torch.from_numpy(y[30:]), 32)
    want = engine.evaluate(r["model"], last, KerasLoss("sparse_categorical_crossentropy"))["loss"]
    assert r["history"]["val_loss"][0] == pytest.approx(want, rel=1e-6)


# ---- bad input: one line, non-zero exit, nothing half-written --------------------------------------------------

def refused(capsys, tmp_path, argv, code, message):
    out = tmp_path / "out"
    got = main([*map(str, argv), "--out", str(out), "--device", "cpu"])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert got == code and len(lines) == 1 and message in lines[0] and "Traceback" not in err, err
    assert not out.exists()


@pytest.mark.parametrize("override, message", [
    ({"x_train": None}, "no x_train (it holds"),
    ({"x_train": np.zeros((50, 5), "float32")}, "x_train: shape (50, 5) does not fit the model's input (N, 4)"),
    ({"y_train": np.full(50, 3)}, "y_train: label 3 outside 0-2 for sparse_categorical_crossentropy over 3 classes"),
    ({"y_test": np.full(10, -1)}, "y_test: label -1 outside 0-2"),
    ({"x_train": np.full((50, 4), np.nan, "float32")}, "x_train holds NaN or infinite values (first in sample 0)"),
    ({"x_test": np.r_[np.zeros((3, 4)), [[0, np.inf, 0, 0]], np.zeros((6, 4))].astype("float32")},
     "x_test holds NaN or infinite values (first in sample 3)"),
    ({"y_train": np.eye(3)[np.zeros(50, int)]}, "y_train: one-hot rows of width 3, but sparse_categorical_crossentropy "
                                                "wants one integer class id per sample, of shape (N)"),
    ({"y_test": None}, "x_test and y_test come together"),
    ({"y_train": np.zeros(49, "int64")}, "x_train has 50 samples but y_train has 49"),
    ({"labels": np.zeros(50)}, "holds 'labels', which is none of the model's arrays (x_train, y_train"),
    ({"x_val": np.zeros((10, 4), "float32"), "y_val": np.zeros(10, "int64")}, "holds both x_val/y_val and x_test"),
    ({"sample_weight": np.ones((50, 3))}, "sample_weight has shape (50, 3): one weight per sample"),
    ({"sample_weight": np.ones(49)}, "x_train has 50 samples but sample_weight has 49"),
    ({"sample_weight": np.r_[np.ones(49), np.nan]}, "sample_weight holds NaN or infinite values (first in sample 49)"),
])
def test_bad_data(tmp_path, capsys, override, message):
    refused(capsys, tmp_path, ["fit", tiny_model(tmp_path, compile_config()), "--data",
                               tiny_data(tmp_path, **override)], 1, message)


@pytest.mark.parametrize("flag, code, message", [
    ('{"0": 1, "x": 2}', 2, "--class-weight: class 'x' is not a whole number"),
    ('{"0": -1}', 2, "--class-weight: class 0: weight -1 is not a finite number >= 0"),
    ("0.5", 2, "--class-weight: expected a JSON object of class id -> weight"),
])
def test_bad_class_weights(tmp_path, capsys, flag, code, message):
    refused(capsys, tmp_path, ["fit", tiny_model(tmp_path, compile_config()), "--data", tiny_data(tmp_path),
                               "--class-weight", flag], code, message)


def test_class_weights_and_sample_weights_together_are_refused_as_keras_refuses_them(tmp_path, capsys):
    data = tiny_data(tmp_path, sample_weight=np.ones(50))
    refused(capsys, tmp_path, ["fit", tiny_model(tmp_path, compile_config()), "--data", data,
                               "--class-weight", '{"1": 2}'], 1, "--class-weight and the data's sample_weight")


def test_one_hot_of_the_wrong_width(tmp_path, capsys):
    model = tiny_model(tmp_path, compile_config(loss="categorical_crossentropy"))
    data = tiny_data(tmp_path, y_train=np.eye(5, dtype="float32")[np.zeros(50, int)], y_test=None, x_test=None)
    refused(capsys, tmp_path, ["fit", model, "--data", data], 1, "y_train: one-hot of width 5, but the model outputs 3")


def test_pickled_npz_is_refused(tmp_path, capsys):
    np.savez(tmp_path / "p.npz", x_train=np.array([{"a": 1}], dtype=object), y_train=np.zeros(1))
    refused(capsys, tmp_path, ["fit", tiny_model(tmp_path, compile_config()), "--data", tmp_path / "p.npz"], 1,
            "holds pickled Python objects; refused")


@pytest.mark.parametrize("cc, message", [
    (compile_config("Lion"), "optimizer 'Lion' (supported: SGD, Adam"),
    (compile_config(loss="poisson"), "loss 'poisson' in the file's compile config is not supported; override it "
                                      "with --loss"),
    (compile_config(metrics=("auc",)), "metric 'auc' in the file's compile config is not supported; override it with "
                                        "--metrics"),
    (compile_config(learning_rate={"class_name": "CosineDecayRestarts", "config": {}}),
     "learning-rate schedule 'CosineDecayRestarts' (supported: ExponentialDecay, InverseTimeDecay, "
     "PiecewiseConstantDecay, CosineDecay) in the file's compile config is not supported; override it with --lr"),
    (compile_config(use_ema=True), "with use_ema=True"),
])
def test_unsupported_compile_settings_name_it_and_the_flag(tmp_path, capsys, cc, message):
    refused(capsys, tmp_path, ["fit", tiny_model(tmp_path, cc), "--data", tiny_data(tmp_path)], 1, message)


def test_flags_override_and_a_file_saved_without_compile_needs_them(tmp_path, capsys):
    model, data = tiny_model(tmp_path, None), tiny_data(tmp_path)
    refused(capsys, tmp_path, ["fit", model, "--data", data], 2, "saved without compile(): pass --optimizer and --loss")
    out = tmp_path / "ok"
    assert main(["fit", model, "--data", data, "--optimizer", "rmsprop", "--lr", "0.01", "--loss",
                 "sparse_categorical_crossentropy", "--metrics", "accuracy", "--out", str(out), "--verbose", "0"]) == 0
    with zipfile.ZipFile(out / "model.keras") as z:
        cc = json.loads(z.read("config.json"))["compile_config"]
    assert cc["optimizer"]["class_name"] == "RMSprop" and cc["optimizer"]["config"]["learning_rate"] == 0.01


@pytest.mark.parametrize("argv, message", [
    (["--validation-split", "0"], "argument --validation-split: expected a number in (0, 1)"),
    (["--validation-split", "1.5"], "argument --validation-split: expected a number in (0, 1)"),
    (["--optimizer", "adamw2"], "--optimizer adamw2: not one of SGD, Adam"),
    (["--loss", "poisson"], "--loss poisson: not supported (supported: binary_crossentropy, categorical_crossentropy"),
    (["--metrics", "auc"], "--metrics auc: not supported"),
    (["--epochs", "0"], "argument --epochs: expected a whole number >= 1"),
])
def test_bad_flags(tmp_path, capsys, argv, message):
    refused(capsys, tmp_path, ["fit", tiny_model(tmp_path, compile_config()), "--data", tiny_data(tmp_path), *argv],
            2, message)


def test_missing_data_file_is_a_usage_error(tmp_path, capsys):
    refused(capsys, tmp_path, ["fit", tiny_model(tmp_path, compile_config()), "--data", tmp_path / "none.npz"], 2,
            "no such file")


# ---- checkpoints: the engine's, bit-exact -------------------------------------------------------------------

def test_sigterm_mid_run_then_resume_is_bit_identical(tmp_path):
    model = tiny_model(tmp_path, compile_config(), shape=(64,), units=10, dropout=0.3)
    rng = np.random.default_rng(0)
    data = tiny_data(tmp_path, n=20000, x_train=rng.normal(size=(20000, 64)).astype("float32"),
                     y_train=rng.integers(0, 10, 20000), x_test=None, y_test=None)
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}

    def cli(out, *extra):
        return [sys.executable, "-m", "torchport", "fit", model, "--data", data, "--epochs", "3", "--device", "cpu",
                "--verbose", "0", "--out", str(out), *extra]

    subprocess.run(cli(tmp_path / "ref"), env=env, check=True, capture_output=True)
    ck = tmp_path / "ck"
    p = subprocess.Popen(cli(tmp_path / "run", "--checkpoint-dir", ck), env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (ck.is_dir() and any(ck.iterdir())):
        time.sleep(0.02)
    time.sleep(0.1)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 143 and "checkpoint written to" in err, err  # stopped mid-run, not finished
    assert any("-step-" in f.name for f in ck.iterdir())
    subprocess.run(cli(tmp_path / "run", "--checkpoint-dir", ck, "--resume"), env=env, check=True,
                   capture_output=True)
    assert (tmp_path / "run" / "history.json").read_text() == (tmp_path / "ref" / "history.json").read_text()
    a = torch.load(tmp_path / "ref" / "weights.pt", weights_only=True)
    b = torch.load(tmp_path / "run" / "weights.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_metric_objects_resolve_as_keras_resolves_them():
    """keras.metrics.Accuracy() is exact equality (not the string "accuracy", resolved by shape); a second
    metric of the same name is `name_1`, as Keras' History names it; top-k keeps its k."""
    from torchport.keras_fit.compile import resolve
    cc = compile_config(loss="binary_crossentropy", metrics=())
    cc["metrics"] = [{"module": "keras.metrics", "class_name": "Accuracy", "config": {"name": "accuracy"}},
                     "accuracy", "accuracy",
                     {"module": "keras.metrics", "class_name": "TopKCategoricalAccuracy",
                      "config": {"name": "top2", "k": 2}}]
    metrics = resolve(cc, (None, 3), (None, 3)).metrics
    assert list(metrics) == ["accuracy", "accuracy_1", "accuracy_2", "top2"]
    pred, y = torch.tensor([[1.0, 0.2, 0.6]]), torch.tensor([[1.0, 0.0, 1.0]])
    assert float(metrics["accuracy"](pred, y)) == pytest.approx(1 / 3)   # exact: only 1.0 == 1.0
    assert float(metrics["accuracy_1"](pred, y)) == pytest.approx(1.0)   # binary accuracy at 0.5
    assert float(metrics["top2"](torch.tensor([[0.1, 0.5, 0.4]]), torch.tensor([[1.0, 0, 0]]))) == 0.0


CALLBACKS = ["--early-stopping", "monitor=val_loss,patience=4,restore_best_weights=true,min_delta=0.001",
             "--reduce-lr-on-plateau", "monitor=val_loss,factor=0.5,patience=1,cooldown=1,min_lr=0.004",
             "--save-best", "monitor=val_accuracy"]


def test_callbacks_resume_from_a_checkpoint_bit_for_bit(tmp_path):
    """A run with EarlyStopping, ReduceLROnPlateau, save-best and a CSV log, resumed from its checkpoint after
    epoch 3 (patience counters, best values, the reduced learning rate, the CSV's rows): every output equals
    the uninterrupted run's, byte for byte."""
    model = tiny_model(tmp_path, compile_config(learning_rate=0.3), shape=(4,), units=3)
    data = tiny_data(tmp_path, n=60)

    def fit(out, *extra):
        assert main(["fit", model, "--data", data, "--epochs", "12", "--batch-size", "8", "--device", "cpu",
                     "--verbose", "0", "--out", str(out), "--csv-log", str(out / "log.csv"), *CALLBACKS,
                     *extra]) == 0

    ck = tmp_path / "ck"
    fit(tmp_path / "ref", "--checkpoint-dir", str(ck), "--keep-checkpoints", "20")
    history = json.loads((tmp_path / "ref" / "history.json").read_text())
    assert 4 < len(history["loss"]) < 12 and len(set(history["learning_rate"])) > 2  # stopped early, lr reduced
    for f in sorted(ck.iterdir()):
        if int(f.name.split("-")[1].split(".")[0]) > 3:
            f.unlink()  # as if the run had been interrupted in its fourth epoch
    (tmp_path / "run").mkdir()
    lines = (tmp_path / "ref" / "log.csv").read_text().splitlines()
    (tmp_path / "run" / "log.csv").write_text("\n".join(lines[:6]) + "\n")  # its log had a fifth row
    # its best weights so far (a later best is written again by the resumed run)
    (tmp_path / "run" / "best.weights.h5").write_bytes((tmp_path / "ref" / "best.weights.h5").read_bytes())
    fit(tmp_path / "run", "--checkpoint-dir", str(ck), "--resume")
    for name in ("history.json", "log.csv", "best.weights.h5"):
        assert (tmp_path / "run" / name).read_bytes() == (tmp_path / "ref" / name).read_bytes(), name
    a = torch.load(tmp_path / "ref" / "weights.pt", weights_only=True)
    b = torch.load(tmp_path / "run" / "weights.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("flags, code, message", [
    (["--early-stopping", "monitor=val_loss,patiense=3"], 2, "unknown key 'patiense' (Keras' arguments: monitor"),
    (["--early-stopping", "patience=three"], 2, "patience=three: not a count"),
    (["--reduce-lr-on-plateau", "factor=1.5"], 2, "factor must be below 1.0"),
    (["--save-best", "mode=up"], 2, "mode=up: expected auto, min or max"),
    (["--early-stopping", "monitor=val_acc"], 2, "--early-stopping monitor=val_acc: this run's History has no val_acc "
                                                  "(it has loss, accuracy, val_loss, val_accuracy)"),
    (["--reduce-lr-on-plateau", "monitor=learning_rate"], 2, "cannot tell whether it should be maximized"),
])
def test_bad_callback_flags(tmp_path, capsys, flags, code, message):
    refused(capsys, tmp_path, ["fit", tiny_model(tmp_path, compile_config()), "--data", tiny_data(tmp_path), *flags],
            code, message)


def test_shards_and_streamed_batches_train_exactly_as_the_npz(tmp_path):
    """A folder of .npy shards (x_train in three, the rest whole), its inputs streamed from the host a batch at
    a time, trains bit for bit as the .npz held on the device: one permutation over all shards, the same
    batches; so does the .npz streamed (memory-mapped in place)."""
    model = tiny_model(tmp_path, compile_config(), units=3, dropout=0.2)
    data = tiny_data(tmp_path, n=70)
    arrays = dict(np.load(data))
    folder = tmp_path / "shards"
    folder.mkdir()
    for i, rows in enumerate(np.array_split(np.arange(70), 3)):
        np.save(folder / f"x_train-{i:05d}.npy", arrays["x_train"][rows])
    for name in ("y_train", "x_test", "y_test"):
        np.save(folder / f"{name}.npy", arrays[name])

    def fit(source, out, *extra):
        assert main(["fit", model, "--data", str(source), "--epochs", "3", "--batch-size", "16", "--device", "cpu",
                     "--verbose", "0", "--out", str(tmp_path / out), *extra]) == 0
        return (tmp_path / out / "history.json").read_text(), torch.load(tmp_path / out / "weights.pt",
                                                                           weights_only=True)

    ref_history, ref_weights = fit(data, "ref")
    for source, out, extra in ((folder, "shards", ()), (data, "streamed", ("--stream",))):
        history, weights = fit(source, out, *extra)
        assert history == ref_history, out
        assert all(torch.equal(weights[k], ref_weights[k]) for k in ref_weights), out


def test_bad_shards_are_one_line(tmp_path, capsys):
    model = tiny_model(tmp_path, compile_config())
    folder = tmp_path / "shards"
    folder.mkdir()
    np.save(folder / "x_train-00000.npy", np.zeros((10, 4), "float32"))
    np.save(folder / "x_train-00001.npy", np.zeros((10, 5), "float32"))
    np.save(folder / "y_train.npy", np.zeros(20, "int64"))
    refused(capsys, tmp_path, ["fit", model, "--data", folder], 1,
            "shard x_train-00001.npy holds float32 (10, 5); the first shard of x_train holds float32 (10, 4)")
    np.save(folder / "x_train-00001.npy", np.full((10, 4), np.inf, "float32"))
    refused(capsys, tmp_path, ["fit", model, "--data", folder], 1,
            "x_train holds NaN or infinite values (first in sample 10)")
