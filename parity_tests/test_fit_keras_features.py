"""`torchport fit` on what Keras users train beyond one input and one output, each run against Keras' own
`fit` step by step in float64 (losses, every weight, the History; <= 1e-9): several inputs and outputs
(the loss per output as a list or a dict, loss_weights, metrics per output, weighted metrics), sample weights,
class weights, regularizers and constraints."""
import json

import numpy as np
import pytest
import torch
from port_helpers import assert_all

from torchport.cli import main
from torchport.keras_compat import compile_loss, regularizers
from torchport.parity import model as pm
from torchport.porting.plan import plan_file


def _saved(keras, tmp_path, name, build, dtype="float64"):
    """`build(keras)` -> a compiled model, built and saved under set_floatx(dtype)."""
    keras.config.set_floatx(dtype)
    try:
        keras.utils.clear_session()
        keras.utils.set_random_seed(0)
        model = build(keras)
        path = str(tmp_path / f"{name}.keras")
        model.save(path)
    finally:
        keras.config.set_floatx("float32")
    return path


def ticket_model(keras, form: str):
    """The Functional API guide's ticket model, small: title and body (token ids, an LSTM each) and tags in;
    priority (sigmoid) and department (softmax) out."""
    L = keras.layers
    title = keras.Input((5,), name="title", dtype="int32")
    body = keras.Input((7,), name="body", dtype="int32")
    tags = keras.Input((4,), name="tags")
    x = L.Concatenate()([L.LSTM(6)(L.Embedding(20, 4)(title)), L.LSTM(5)(L.Embedding(20, 4)(body)), tags])
    priority = L.Dense(1, activation="sigmoid", name="priority")(x)
    department = L.Dense(3, activation="softmax", name="department")(x)
    model = keras.Model([title, body, tags], [priority, department])
    if form == "list":
        model.compile(keras.optimizers.RMSprop(0.01), loss=["binary_crossentropy", "sparse_categorical_crossentropy"],
                      loss_weights=[1.0, 0.2], metrics=[["accuracy"], ["accuracy", "sparse_categorical_crossentropy"]])
    else:  # the dict form, one-hot departments, and a weighted metric beside the plain one of the same name
        model.compile(keras.optimizers.Adam(0.01),
                      loss={"priority": "binary_crossentropy", "department": "categorical_crossentropy"},
                      loss_weights={"priority": 0.7, "department": 0.3},
                      metrics={"priority": ["accuracy", "mae"], "department": "accuracy"},
                      weighted_metrics={"department": ["accuracy"]})
    return model


def _within(results, tol=1e-9):
    assert_all(results)
    worst = max(results, key=lambda r: r.diff)
    assert worst.diff <= tol, (worst.check, worst.diff)


@pytest.mark.parametrize("form", ["list", "dict"])
def test_three_inputs_two_outputs_with_loss_weights_equal_keras(keras, tmp_path, form):
    path = _saved(keras, tmp_path, f"ticket_{form}", lambda k: ticket_model(k, form))
    results = pm.check_training(plan_file(path), path, epochs=2, batch=16)
    names = {r.check.split(": ", 1)[1] for r in results if "epochs float64: " in r.check}
    want = {"loss", "priority_loss", "department_loss", "priority_accuracy", "department_accuracy"}
    assert want | {f"val_{n}" for n in want} <= names  # Keras' own History names, each compared
    _within(results)


def test_each_output_loss_is_a_mean_over_batches_as_keras_3_reports_it(keras, tmp_path, monkeypatch):
    """Planted bug: Keras 3 reports `<output>_loss` as the mean of its batches' values (a last partial batch
    counts as a full one), `loss` weighted by batch size. Weighting the outputs' losses by batch size too
    leaves the History >= 1e-3 away from Keras' (136 samples at batch 16: a last batch of 8)."""
    path = _saved(keras, tmp_path, "ticket_list", lambda k: ticket_model(k, "list"))
    init = compile_loss.OutputLoss.__init__
    monkeypatch.setattr(compile_loss.OutputLoss, "__init__",
                        lambda self, loss, i, per_batch: init(self, loss, i, False))
    results = pm.check_training(plan_file(path), path, epochs=1, batch=16)
    wrong = {r.check.split(": ", 1)[1]: r.diff for r in results if r.check.endswith("_loss")}
    assert wrong["priority_loss"] > 1e-3 and wrong["department_loss"] > 1e-3, wrong


def _classifier(keras, weighted_metrics: bool):
    L = keras.layers
    model = keras.Sequential([keras.Input((6,)), L.Dense(8, activation="relu"), L.Dense(3, activation="softmax")])
    model.compile(keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                  weighted_metrics=["accuracy", "sparse_categorical_crossentropy"] if weighted_metrics else None)
    return model


@pytest.mark.parametrize("case", ["sample_weight", "class_weight"])
def test_sample_and_class_weighted_runs_equal_keras(keras, tmp_path, case):
    """The loss weighted as Keras weights it (sum(value * weight) over the batch size), the weighted metrics
    as sum(value * weight) / sum(weight) over the epoch; class weights looked up per label. A validation set
    of 37 (a partial last batch)."""
    path = _saved(keras, tmp_path, case, lambda k: _classifier(k, case == "sample_weight"))
    rng = np.random.default_rng(1)
    data = {"x_train": rng.normal(size=(150, 6)), "y_train": rng.integers(0, 3, 150),
            "x_val": rng.normal(size=(37, 6)), "y_val": rng.integers(0, 3, 37)}
    class_weight = None
    if case == "sample_weight":
        data["sample_weight"] = rng.uniform(0, 2, 150)
    else:
        class_weight = {0: 1.0, 1: 3.5, 2: 0.25}
    results = pm.check_training(plan_file(path), path, data, epochs=2, batch=16, class_weight=class_weight)
    if case == "sample_weight":
        assert any(r.check.endswith(": weighted_accuracy") for r in results)
    _within(results)


def _regularized(keras, kind: str):
    L, R, C = keras.layers, keras.regularizers, keras.constraints
    if kind == "cnn":  # an L2-regularized CNN with a MaxNorm constraint, and one of each of the others
        layers = [keras.Input((10, 10, 3)),
                  L.Conv2D(6, 3, activation="relu", kernel_regularizer=R.L2(0.01),
                           kernel_constraint=C.MaxNorm(0.5, axis=[0, 1, 2])),
                  L.BatchNormalization(gamma_regularizer=R.L1(0.001), beta_constraint=C.NonNeg()),
                  L.MaxPooling2D(), L.Flatten(),
                  L.Dense(12, activation="tanh", kernel_regularizer=R.L2(0.02), bias_regularizer=R.L1L2(0.01, 0.02),
                          kernel_constraint=C.UnitNorm(axis=0)),
                  L.Dense(4, activation="softmax", kernel_constraint=C.MinMaxNorm(0.2, 0.6, rate=0.5))]
        model = keras.Sequential(layers)
        model.compile(keras.optimizers.SGD(0.05, momentum=0.9), loss="categorical_crossentropy", metrics=["accuracy"])
    else:  # an LSTM's gates reordered by the port: its kernels' penalties and norms are Keras'
        layers = [keras.Input((6,), dtype="int32"), L.Embedding(9, 4, embeddings_regularizer=R.L2(0.003)),
                  L.LSTM(5, kernel_regularizer=R.L2(0.01), recurrent_regularizer=R.L1(0.01),
                         recurrent_constraint=C.MaxNorm(0.8), bias_constraint=C.NonNeg()),
                  L.Dense(3, activation="softmax")]
        model = keras.Sequential(layers)
        model.compile(keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


@pytest.mark.parametrize("kind", ["cnn", "lstm"])
def test_regularizers_and_constraints_equal_keras(keras, tmp_path, kind):
    """The penalties inside `loss` (training and validation), the constraints after each update; the Adam run's
    regularized Embedding gets a dense gradient, as TensorFlow adds the penalty's gradient to the rows."""
    path = _saved(keras, tmp_path, kind, lambda k: _regularized(k, kind))
    _within(pm.check_training(plan_file(path), path, epochs=2, batch=16))


def test_l2_factor_is_rounded_to_float32_as_keras_casts_it(keras, tmp_path, monkeypatch):
    """Planted bug: the L2 factor taken as the exact double 0.01 (Keras casts it through a float32 tensor)."""
    path = _saved(keras, tmp_path, "cnn", lambda k: _regularized(k, "cnn"))
    monkeypatch.setattr(regularizers, "f32", float)
    results = pm.check_training(plan_file(path), path, epochs=1, batch=16)
    assert not all(r.passed for r in results)


@pytest.mark.parametrize("mode", ["rows", "columns"])
def test_orthogonal_regularizer_equals_keras(keras, mode):
    """Checked on its own in float32: Keras' OrthogonalRegularizer cannot run in float64 (its own float32
    constant meets the float64 weight)."""
    w = np.random.default_rng(0).normal(size=(7, 5)).astype("float32")
    theirs = float(keras.regularizers.OrthogonalRegularizer(0.05, mode=mode)(keras.ops.convert_to_tensor(w)))
    ours = float(regularizers.OrthogonalRegularizer(0.05, mode)(torch.from_numpy(w)))
    exact = float(regularizers.OrthogonalRegularizer(0.05, mode)(torch.from_numpy(w.astype("float64"))))
    assert abs(ours - theirs) <= 1e-6 * abs(exact) and abs(exact - theirs) <= 1e-6 * abs(exact)


def _ticket_arrays(n, rng, split="train", one_hot=False):
    department = rng.integers(0, 3, n)
    return {f"x_{split}_title": rng.integers(0, 20, (n, 5)), f"x_{split}_body": rng.integers(0, 20, (n, 7)),
            f"x_{split}_tags": rng.normal(size=(n, 4)).astype("float32"),
            f"y_{split}_priority": rng.integers(0, 2, (n, 1)).astype("float32"),
            f"y_{split}_department": np.eye(3, dtype="float32")[department] if one_hot else department}


def test_fit_command_trains_several_inputs_and_outputs_with_keras_history_names(keras, tmp_path, capsys):
    path = _saved(keras, tmp_path, "ticket", lambda k: ticket_model(k, "dict"), dtype="float32")
    rng = np.random.default_rng(0)
    arrays = {**_ticket_arrays(40, rng, one_hot=True), **_ticket_arrays(12, rng, "val", one_hot=True)}
    np.savez(tmp_path / "d.npz", **arrays)
    out = tmp_path / "out"
    assert main(["fit", path, "--data", str(tmp_path / "d.npz"), "--epochs", "1", "--out", str(out),
                 "--device", "cpu", "--verbose", "0"]) == 0
    ours = json.loads((out / "history.json").read_text())
    km = keras.saving.load_model(path)
    x = [arrays[f"x_train_{n}"] for n in ("title", "body", "tags")]
    y = [arrays[f"y_train_{n}"] for n in ("priority", "department")]
    xv = [arrays[f"x_val_{n}"] for n in ("title", "body", "tags")]
    yv = [arrays[f"y_val_{n}"] for n in ("priority", "department")]
    theirs = km.fit(x, y, validation_data=(xv, yv), epochs=1, verbose=0).history
    assert sorted(ours) == sorted(theirs)
    assert keras.saving.load_model(str(out / "model.keras")).get_compile_config()["loss_weights"] == \
        {"priority": 0.7, "department": 0.3}


@pytest.mark.parametrize("change, flags, message", [
    (lambda a: a.pop("x_train_body"), [], "no x_train_body"),
    (lambda a: a.update(x_train=a["x_train_tags"]), [], "holds 'x_train', which is none of the model's arrays"),
    (lambda a: a.pop("y_val_priority"), [], "x_val_title and x_val_body and x_val_tags and y_val_priority and "
                                            "y_val_department come together (it has no y_val_priority)"),
    (lambda a: a.update(x_test_title=a["x_val_title"]), [], "holds both x_val/y_val and x_test/y_test"),
    (lambda a: a.update(sample_weight=np.ones((40, 2))), [], "sample_weight has shape (40, 2)"),
    (lambda a: a.update(sample_weight=np.ones(39)), [], "x_train_title has 40 samples but sample_weight has 39"),
    (lambda a: None, ["--class-weight", '{"0": 2}'], "--class-weight weights a one-output model's classes"),
    (lambda a: None, ["--class-weight", "[1, 2]"], "--class-weight: expected a JSON object"),
    (lambda a: a.update(y_train_department=np.full(40, 3)), [], "y_train_department: label 3 outside 0-2"),
])
def test_bad_multi_io_data_is_one_line_and_writes_nothing(keras, tmp_path, capsys, change, flags, message):
    path = _saved(keras, tmp_path, "ticket", lambda k: ticket_model(k, "list"), dtype="float32")
    rng = np.random.default_rng(0)
    arrays = {**_ticket_arrays(40, rng), **_ticket_arrays(12, rng, "val")}
    change(arrays)
    np.savez(tmp_path / "d.npz", **arrays)
    out = tmp_path / "out"
    code = main(["fit", path, "--data", str(tmp_path / "d.npz"), *flags, "--out", str(out), "--device", "cpu"])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code in (1, 2) and len(lines) == 1 and message in lines[0] and "Traceback" not in err, err
    assert not out.exists()


def test_early_stopping_and_reduce_lr_on_plateau_equal_keras(keras, tmp_path):
    """The epoch the run stops at, each epoch's learning rate (logged by ReduceLROnPlateau, min_lr reached),
    the History and the restored best weights equal Keras' float64 run with the same callbacks; the CSV log has
    Keras' CSVLogger's columns and values; the TensorBoard scalars are Keras' epoch tags."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    path = _saved(keras, tmp_path, "plateau", lambda k: _classifier(k, False))
    rng = np.random.default_rng(0)
    data = {"x_train": rng.normal(size=(120, 6)), "y_train": rng.integers(0, 3, 120),
            "x_val": rng.normal(size=(40, 6)), "y_val": rng.integers(0, 3, 40)}
    np.savez(tmp_path / "d.npz", **data)
    es = {"monitor": "val_loss", "patience": 5, "restore_best_weights": True, "min_delta": 0.001}
    rl = {"monitor": "val_loss", "factor": 0.5, "patience": 1, "min_lr": 0.004, "cooldown": 1}
    out = tmp_path / "out"
    assert main(["fit", path, "--data", str(tmp_path / "d.npz"), "--epochs", "30", "--batch-size", "16",
                 "--no-shuffle", "--out", str(out), "--device", "cpu", "--verbose", "0",
                 "--early-stopping", ",".join(f"{k}={v}" for k, v in es.items()),
                 "--reduce-lr-on-plateau", ",".join(f"{k}={v}" for k, v in rl.items()),
                 "--csv-log", str(out / "log.csv"), "--tensorboard", str(tmp_path / "tb")]) == 0
    ours = json.loads((out / "history.json").read_text())
    keras.config.set_floatx("float64")
    try:
        km = keras.saving.load_model(path)
        theirs = km.fit(data["x_train"], data["y_train"], validation_data=(data["x_val"], data["y_val"]), epochs=30,
                        batch_size=16, shuffle=False, verbose=0,
                        callbacks=[keras.callbacks.EarlyStopping(**es), keras.callbacks.ReduceLROnPlateau(**rl),
                                   keras.callbacks.CSVLogger(str(tmp_path / "keras.csv"))]).history
        best = [np.asarray(w) for w in km.get_weights()]
    finally:
        keras.config.set_floatx("float32")
    assert sorted(ours) == sorted(theirs) and len(ours["loss"]) == len(theirs["loss"]) < 30
    assert ours["learning_rate"] == theirs["learning_rate"] and ours["learning_rate"][-1] == 0.004
    worst = max(abs(a - b) / abs(b) for k in theirs for a, b in zip(ours[k], theirs[k], strict=True) if b)
    assert worst <= 1e-9, worst
    state = torch.load(out / "weights.pt", weights_only=True)
    assert np.abs(state["dense.weight"].numpy().T - best[0]).max() <= 1e-9
    ours_csv = [line.split(",") for line in (out / "log.csv").read_text().splitlines()]
    keras_csv = [line.split(",") for line in (tmp_path / "keras.csv").read_text().splitlines()]
    assert ours_csv[0] == keras_csv[0] and len(ours_csv) == len(keras_csv)
    assert np.allclose(np.array(ours_csv[1:], float), np.array(keras_csv[1:], float), rtol=1e-9, atol=0)
    tags = {}
    for sub in ("train", "validation"):
        ea = EventAccumulator(str(tmp_path / "tb" / sub))
        ea.Reload()
        tags[sub] = {t: [e.value for e in ea.Scalars(t)] for t in ea.Tags()["scalars"]}
    assert set(tags["train"]) == {"epoch_loss", "epoch_accuracy", "epoch_learning_rate"}
    assert set(tags["validation"]) == {"epoch_loss", "epoch_accuracy"}
    assert np.allclose(tags["validation"]["epoch_loss"], ours["val_loss"], rtol=1e-6)  # stored as float32


def test_validation_freq_equals_keras(keras, tmp_path):
    path = _saved(keras, tmp_path, "freq", lambda k: _classifier(k, False))
    rng = np.random.default_rng(2)
    data = {"x_train": rng.normal(size=(50, 6)), "y_train": rng.integers(0, 3, 50),
            "x_val": rng.normal(size=(20, 6)), "y_val": rng.integers(0, 3, 20)}
    np.savez(tmp_path / "d.npz", **data)
    out = tmp_path / "out"
    assert main(["fit", path, "--data", str(tmp_path / "d.npz"), "--epochs", "5", "--no-shuffle", "--out", str(out),
                 "--device", "cpu", "--verbose", "0", "--validation-freq", "2"]) == 0
    ours = json.loads((out / "history.json").read_text())
    keras.config.set_floatx("float64")
    try:
        theirs = keras.saving.load_model(path).fit(
            data["x_train"], data["y_train"], validation_data=(data["x_val"], data["y_val"]), epochs=5, shuffle=False,
            verbose=0, validation_freq=2).history
    finally:
        keras.config.set_floatx("float32")
    assert {k: len(v) for k, v in ours.items()} == {k: len(v) for k, v in theirs.items()} == \
        {"loss": 5, "accuracy": 5, "val_loss": 2, "val_accuracy": 2}
    assert np.allclose(ours["val_loss"], theirs["val_loss"], rtol=1e-9, atol=0)


def test_augmentation_draws_in_training_only(keras, tmp_path):
    """RandomFlip in a model trained by `torchport fit`: with a zero learning rate (the weights never move)
    and the validation set equal to the training set, the validation loss is the loss of the unflipped images
    (Keras' predict gives it) while the training loss, over flipped ones, is not."""
    def build(k):
        L = k.layers
        model = k.Sequential([k.Input((4, 4, 1)), L.RandomFlip("horizontal", seed=1), L.Flatten(),
                              L.Dense(3, activation="softmax")])
        model.compile(k.optimizers.SGD(0.0), loss="sparse_categorical_crossentropy")
        return model
    path = _saved(keras, tmp_path, "flip", build, dtype="float32")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 4, 4, 1)).astype("float32"), rng.integers(0, 3, 64)
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y, x_val=x, y_val=y)
    out = tmp_path / "out"
    assert main(["fit", path, "--data", str(tmp_path / "d.npz"), "--epochs", "1", "--out", str(out), "--device", "cpu",
                 "--verbose", "0"]) == 0
    h = json.loads((out / "history.json").read_text())
    p = keras.saving.load_model(path).predict(x, verbose=0)
    unflipped = float(-np.log(p[np.arange(64), y]).mean())
    assert abs(h["val_loss"][0] - unflipped) <= 1e-6 * unflipped
    assert abs(h["loss"][0] - unflipped) > 1e-3 * unflipped


def _two_inputs_one_output(keras):
    L = keras.layers
    a, b = keras.Input((4,), name="a"), keras.Input((3,), name="b")
    x = L.Concatenate()([L.Dense(5, activation="tanh")(a), b])
    x = L.BatchNormalization()(L.Dense(6)(x))
    model = keras.Model([a, b], L.Dense(3, activation="softmax", name="out")(x))
    model.compile(keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def test_two_inputs_one_output_and_a_last_batch_of_one_equal_keras(keras, tmp_path):
    """Several inputs with one plain output (no Targets needed: the inputs still go in as arguments), and a
    BatchNormalization whose last training batch holds one sample (torch's fused kernel refuses it)."""
    path = _saved(keras, tmp_path, "two_in", _two_inputs_one_output)
    rng = np.random.default_rng(3)
    data = {"x_train_a": rng.normal(size=(49, 4)), "x_train_b": rng.normal(size=(49, 3)),
            "y_train": rng.integers(0, 3, 49), "x_val_a": rng.normal(size=(20, 4)),
            "x_val_b": rng.normal(size=(20, 3)), "y_val": rng.integers(0, 3, 20)}
    _within(pm.check_training(plan_file(path), path, data, epochs=2, batch=16))


def test_attention_kernels_each_take_their_regularizer(keras, tmp_path):
    """MultiHeadAttention's four weights are all named `kernel`: each gets the penalty Keras gives it."""
    from torchport.keras_fit import penalties

    def build(k):
        x = k.Input((5, 8))
        y = k.layers.MultiHeadAttention(2, 4, kernel_regularizer=k.regularizers.L2(0.01),
                                        bias_regularizer=k.regularizers.L1(0.02))(x, x)
        model = k.Model(x, k.layers.Dense(2)(k.layers.Flatten()(y)))
        model.compile("sgd", "mse")
        return model
    path = _saved(keras, tmp_path, "mha", build, dtype="float32")
    km = keras.saving.load_model(path)
    plan = plan_file(path)
    ours = float(penalties.find(plan, plan.module()).penalty())
    theirs = float(sum(float(v) for v in km.losses))
    assert abs(ours - theirs) <= 1e-6 * theirs, (ours, theirs)


def test_outputs_of_one_layer_are_refused_and_a_loss_less_output_has_no_loss_entry(keras, tmp_path, capsys):
    def states(k):
        inp = k.Input((6, 3))
        _, h, c = k.layers.LSTM(4, return_state=True, name="lstm")(inp)
        model = k.Model(inp, [h, c])
        model.compile("sgd", loss=["mse", "mae"])
        return model
    path = _saved(keras, tmp_path, "states", states, dtype="float32")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x_train=rng.normal(size=(8, 6, 3)).astype("float32"),
             y_train_lstm=np.zeros((8, 4), "float32"))
    assert main(["fit", path, "--data", str(tmp_path / "d.npz"), "--out", str(tmp_path / "o"), "--device", "cpu"]) == 1
    assert "several from layer 'lstm'" in capsys.readouterr().err

    def half(k):
        inp = k.Input((4,))
        a, b = k.layers.Dense(1, name="a")(inp), k.layers.Dense(2, activation="softmax", name="b")(inp)
        model = k.Model(inp, [a, b])
        model.compile("sgd", loss={"a": "mse", "b": None}, metrics={"b": ["accuracy"]})
        return model
    path = _saved(keras, tmp_path, "half", half, dtype="float32")
    x, ya, yb = rng.normal(size=(16, 4)).astype("float32"), rng.normal(size=(16, 1)).astype("float32"), \
        rng.integers(0, 2, 16)
    np.savez(tmp_path / "h.npz", x_train=x, y_train_a=ya, y_train_b=yb)
    out = tmp_path / "out"
    assert main(["fit", path, "--data", str(tmp_path / "h.npz"), "--out", str(out), "--device", "cpu",
                 "--verbose", "0"]) == 0
    theirs = keras.saving.load_model(path).fit(x, [ya, yb], verbose=0).history
    assert sorted(json.loads((out / "history.json").read_text())) == sorted(theirs)
