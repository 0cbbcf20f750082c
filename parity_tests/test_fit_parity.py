"""`torchport fit`'s Keras semantics against Keras: every optimizer and schedule over 1,000 steps, each loss
and metric, whole float64 training runs (<= 1e-9), and weights trained here evaluated by Keras."""
import copy
import json
import warnings

import numpy as np
import pytest
import torch
from port_helpers import assert_all

from torchport.keras_compat.losses import KerasLoss
from torchport.keras_compat.metrics import get_metric
from torchport.keras_compat.optim import OPTIMIZERS
from torchport.parity import model as pm
from torchport.parity.core import max_rel
from torchport.porting.plan import plan_file

OPTIMIZER_CASES = [
    ("SGD", {"learning_rate": 0.05}), ("SGD", {"momentum": 0.9, "nesterov": True}),
    ("SGD", {"momentum": 0.5, "weight_decay": 0.01, "clipnorm": 1.0}),
    ("Adam", {}), ("Adam", {"amsgrad": True, "epsilon": 1e-4, "global_clipnorm": 0.5}),
    ("Adam", {"learning_rate": {"class_name": "ExponentialDecay",
                                "config": {"initial_learning_rate": 0.01, "decay_steps": 100, "decay_rate": 0.5,
                                           "staircase": True}}}),
    ("AdamW", {}), ("AdamW", {"weight_decay": 0.1, "clipvalue": 0.3}),
    ("RMSprop", {}), ("RMSprop", {"momentum": 0.9, "centered": True}),
    ("RMSprop", {"learning_rate": {"class_name": "InverseTimeDecay",
                                   "config": {"initial_learning_rate": 0.01, "decay_steps": 50, "decay_rate": 0.7}}}),
    ("Adagrad", {"learning_rate": 0.05}), ("Adadelta", {"learning_rate": 1.0}), ("Adamax", {}), ("Nadam", {}),
    ("SGD", {"learning_rate": {"class_name": "PiecewiseConstantDecay",
                               "config": {"boundaries": [100, 400], "values": [0.1, 0.03, 0.005]}}}),
    ("Adam", {"learning_rate": {"class_name": "CosineDecay",
                                "config": {"initial_learning_rate": 0.001, "decay_steps": 600, "alpha": 0.1,
                                           "warmup_target": 0.01, "warmup_steps": 100}}}),
]


def keras_optimizer(keras, name, options):
    options = copy.deepcopy(options)
    lr = options.get("learning_rate")
    if isinstance(lr, dict):
        options["learning_rate"] = getattr(keras.optimizers.schedules, lr["class_name"])(**lr["config"])
    return getattr(keras.optimizers, name)(**options)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name, options", OPTIMIZER_CASES)
def test_optimizer_trajectory_1000_steps(keras, name, options, dtype):
    import tensorflow as tf

    rng = np.random.default_rng(0)
    w0 = rng.normal(size=(8, 8)).astype(dtype)
    grads = rng.normal(size=(1000, 8, 8)).astype(dtype)
    previous = keras.config.floatx()
    keras.config.set_floatx(dtype)  # the learning-rate variable's dtype (Keras' floatx)
    try:
        kopt = keras_optimizer(keras, name, options)
        var = keras.Variable(w0, dtype=dtype)
        p = torch.tensor(w0, requires_grad=True)
        opt = OPTIMIZERS[name]([p], lr_dtype=dtype, **copy.deepcopy(options))
        worst = 0.0
        for t in range(1000):
            kopt.apply_gradients([(tf.constant(grads[t]), var)])
            p.grad = torch.from_numpy(grads[t])
            opt.step()
            if (t + 1) % 100 == 0:
                worst = max(worst, max_rel(p.detach().numpy(), np.asarray(var)))
    finally:
        keras.config.set_floatx(previous)
    tol = 1e-5 if dtype == "float32" else 1e-12
    lr = options.get("learning_rate")
    if dtype == "float64" and isinstance(lr, dict) and lr["class_name"] == "CosineDecay":
        tol = 1e-8  # the schedule runs in float32 in both: TensorFlow's float32 cos and numpy's differ in a last bit
    assert worst <= tol, worst


def test_keras_torch_adam_gap_is_measured_not_assumed(keras):
    """torch.optim.Adam(eps=1e-7) is a different optimizer (eps added to the bias-corrected root): over
    1,000 float64 steps it leaves Keras' trajectory by far more than a faithful port (<= 1e-12 above)."""
    import tensorflow as tf
    rng = np.random.default_rng(0)
    w0, grads = rng.normal(size=64), rng.normal(size=(1000, 64)) * 1e-3
    keras.config.set_floatx("float64")
    try:
        kopt = keras.optimizers.Adam()
        var = keras.Variable(w0, dtype="float64")
        p = torch.tensor(w0, requires_grad=True)
        topt = torch.optim.Adam([p], lr=0.001, eps=1e-7)
        for g in grads:
            kopt.apply_gradients([(tf.constant(g), var)])
            p.grad = torch.from_numpy(g)
            topt.step()
    finally:
        keras.config.set_floatx("float32")
    assert max_rel(p.detach().numpy(), np.asarray(var)) > 1e-6


# ---- losses and metrics ---------------------------------------------------------------------------------------

def _keras_loss(keras, name, **kw):
    cls = {"categorical_crossentropy": "CategoricalCrossentropy", "binary_crossentropy": "BinaryCrossentropy",
           "sparse_categorical_crossentropy": "SparseCategoricalCrossentropy", "mean_squared_error": "MeanSquaredError",
           "mean_absolute_error": "MeanAbsoluteError", "huber": "Huber"}[name]
    return getattr(keras.losses, cls)(**kw)


@pytest.mark.parametrize("name, activation, kw", [
    ("categorical_crossentropy", "softmax", {}), ("categorical_crossentropy", "softmax", {"label_smoothing": 0.1}),
    ("categorical_crossentropy", "linear", {"from_logits": True}),
    ("sparse_categorical_crossentropy", "softmax", {}), ("sparse_categorical_crossentropy", "linear",
                                                         {"from_logits": True}),
    ("binary_crossentropy", "sigmoid", {}), ("binary_crossentropy", "sigmoid", {"label_smoothing": 0.2}),
    ("binary_crossentropy", "linear", {"from_logits": True}),
    ("mean_squared_error", "linear", {}), ("mean_absolute_error", "tanh", {}), ("huber", "linear", {"delta": 0.7}),
])
def test_losses_on_a_ported_output(keras, tmp_path, name, activation, kw):
    """The loss on the ported model's output (softmax/sigmoid outputs carry their logits) against Keras'
    loss on Keras' output, in a tf.function: the logits recovery included. Saturating inputs (x 40)."""
    import tensorflow as tf
    keras.utils.set_random_seed(0)
    units = 1 if name == "binary_crossentropy" else 5
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(units, activation=activation)])
    model.save(tmp_path / "m.keras")
    plan = plan_file(str(tmp_path / "m.keras"))
    ported = plan.module()
    rng = np.random.default_rng(1)
    x = (rng.normal(size=(16, 6)) * np.r_[[40.0] * 4, [1.0] * 12][:, None]).astype("float32")
    if name == "sparse_categorical_crossentropy":
        y = rng.integers(0, units, 16)
    elif name in ("categorical_crossentropy",):
        y = np.eye(units, dtype="float32")[rng.integers(0, units, 16)]
    elif name == "binary_crossentropy":
        y = rng.integers(0, 2, (16, 1)).astype("float32")
    else:
        y = rng.normal(size=(16, units)).astype("float32")
    keras_loss = _keras_loss(keras, name, **kw)

    @tf.function  # traced, as fit runs it: the softmax/sigmoid op is visible to the loss
    def keras_fn(x, y):
        return keras_loss(y, model(x, training=False))

    theirs = float(keras_fn(x, y))
    with torch.no_grad():
        ours = float(KerasLoss(name, **kw)(ported(torch.from_numpy(x)), torch.from_numpy(y)))
    assert ours == pytest.approx(theirs, rel=2e-6)
    if activation in ("softmax", "sigmoid") and not kw:  # the saturated rows need the logits: clipping would not
        with torch.no_grad():
            clipped = float(KerasLoss(name)(ported(torch.from_numpy(x)).clone(), torch.from_numpy(y)))
        assert abs(clipped - theirs) > 1e-3 * abs(theirs)


@pytest.mark.parametrize("name, y_kind", [
    ("accuracy", "onehot"), ("accuracy", "sparse"), ("accuracy", "sparse_col"), ("accuracy", "binary"),
    ("categorical_accuracy", "onehot"), ("sparse_categorical_accuracy", "sparse"), ("binary_accuracy", "binary"),
    ("top_k_categorical_accuracy", "onehot"), ("sparse_top_k_categorical_accuracy", "sparse"), ("mae", "onehot"),
    ("mse", "onehot"),
])
def test_metrics_resolved_and_computed_as_keras_does(keras, name, y_kind):
    rng = np.random.default_rng(0)
    n, c = 64, 1 if y_kind == "binary" else 7
    pred = rng.integers(0, 3, (n, c)).astype("float32") / 2  # many exact ties
    y = {"onehot": np.eye(c, dtype="float32")[rng.integers(0, c, n)], "sparse": rng.integers(0, c, n),
         "sparse_col": rng.integers(0, c, (n, 1)), "binary": rng.integers(0, 2, (n, 1)).astype("float32")}[y_kind]
    from keras.src.trainers.compile_utils import get_metric as keras_get_metric
    metric = keras_get_metric(name, keras.ops.convert_to_tensor(y), keras.ops.convert_to_tensor(pred))
    metric.update_state(y, pred)
    ours = get_metric(name, y.shape, pred.shape)(torch.from_numpy(pred), torch.from_numpy(y))
    assert float(ours) == pytest.approx(float(metric.result()), abs=1e-7)


# ---- whole training runs -------------------------------------------------------------------------------------

def _saved(keras, tmp_path, name, layers, input_shape, optimizer, loss, metrics=("accuracy",), dtype="float64",
           input_dtype=None):
    """A compiled model saved under `set_floatx(dtype)`; `layers` and `optimizer` are built under it too."""
    keras.config.set_floatx(dtype)
    try:
        keras.utils.clear_session()
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input(input_shape, dtype=input_dtype), *layers(keras.layers)])
        model.compile(optimizer=optimizer(), loss=loss, metrics=list(metrics))
        path = str(tmp_path / f"{name}.keras")
        model.save(path)
    finally:
        keras.config.set_floatx("float32")
    return path


@pytest.mark.parametrize("kind", ["SGD", "Adam", "RMSprop", "BatchNorm"])
def test_float64_training_equals_keras(keras, tmp_path, kind):
    # A bias right before BatchNormalization has a zero gradient in exact arithmetic: Adam normalises the
    # rounding noise into full-size steps there (both frameworks, differently), so the BatchNorm model uses
    # bias-free convolutions, as BatchNorm models do, and SGD.
    opt = {"SGD": lambda: keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True),
           "Adam": lambda: keras.optimizers.Adam(0.01), "RMSprop": lambda: keras.optimizers.RMSprop(0.005),
           "BatchNorm": lambda: keras.optimizers.SGD(0.05, momentum=0.9)}[kind]
    if kind == "BatchNorm":
        def layers(L):
            return [L.Conv2D(6, 3, strides=2, padding="same", use_bias=False), L.BatchNormalization(), L.ReLU(),
                    L.MaxPooling2D(), L.Flatten(), L.Dense(16, activation="relu"), L.BatchNormalization(momentum=0.9),
                    L.Dense(4, activation="softmax")]
        path = _saved(keras, tmp_path, kind, layers, (12, 12, 3), opt, "categorical_crossentropy")
    else:
        def layers(L):
            return [L.Dense(32, activation="relu"), L.Dropout(0.3), L.Dense(16, activation="tanh"),
                    L.Dense(5, activation="softmax")]
        path = _saved(keras, tmp_path, kind, layers, (10,), opt, "sparse_categorical_crossentropy")
    plan = plan_file(path)
    assert plan.dtype == "float64" and plan.lr_dtype in (None, "float64")
    results = pm.check_training(plan, path, epochs=2)
    assert_all(results)
    assert all(r.diff <= 1e-9 for r in results)


TEXT_CASES = {  # Embedding models: Keras' optimizers see the Embedding's gradient as looked-up rows (sparse_rows.py)
    "Adam": (lambda K: K.optimizers.Adam(0.01), "flatten"),
    "RMSprop centered": (lambda K: K.optimizers.RMSprop(0.01, centered=True, momentum=0.5), "flatten"),
    "Adagrad": (lambda K: K.optimizers.Adagrad(0.1), "flatten"),
    "Adadelta": (lambda K: K.optimizers.Adadelta(1.0), "flatten"),
    "Adamax": (lambda K: K.optimizers.Adamax(0.01), "flatten"),
    "Nadam": (lambda K: K.optimizers.Nadam(0.01), "flatten"),
    "AdamW amsgrad": (lambda K: K.optimizers.AdamW(0.01, amsgrad=True), "flatten"),
    "SGD clipvalue": (lambda K: K.optimizers.SGD(0.5, clipvalue=0.002), "flatten"),
    "Adam clipnorm": (lambda K: K.optimizers.Adam(0.01, clipnorm=0.01), "flatten"),
    "Adam global_clipnorm": (lambda K: K.optimizers.Adam(0.01, global_clipnorm=0.01), "flatten"),
    "Adam masked LSTM": (lambda K: K.optimizers.Adam(0.01), "lstm"),
    "RMSprop masked BiGRU": (lambda K: K.optimizers.RMSprop(0.01), "bigru"),
    "SGD masked SimpleRNN": (lambda K: K.optimizers.SGD(0.1, momentum=0.9), "rnn"),
}


def _text_layers(kind):
    def layers(L):
        head = [L.Embedding(9, 4, mask_zero=kind != "flatten")]
        body = {"flatten": [L.Flatten()], "lstm": [L.SpatialDropout1D(0.2), L.LSTM(5)],
                "bigru": [L.Bidirectional(L.GRU(3, return_sequences=True)), L.GlobalAveragePooling1D()],
                "rnn": [L.SimpleRNN(4, go_backwards=True)]}[kind]
        return head + body + [L.Dense(3, activation="softmax")]
    return layers


@pytest.mark.parametrize("case", list(TEXT_CASES))
def test_float64_training_of_embedding_models_equals_keras(keras, tmp_path, case):
    """Embedding models (masks through the recurrent layers, in training too) trained 2 epochs in float64: the
    History and the weights equal Keras' to <= 1e-9, with every optimizer and clipping mode. The gradient of
    a token seen several times in a batch reaches Keras' optimizer row by row (tf.IndexedSlices)."""
    optimizer, kind = TEXT_CASES[case]
    path = _saved(keras, tmp_path, "text", _text_layers(kind), (6,), lambda: optimizer(keras),
                  "sparse_categorical_crossentropy", input_dtype="int32")
    results = pm.check_training(plan_file(path), path, epochs=2)
    assert_all(results)
    assert all(r.diff <= 1e-9 for r in results), [(r.check, r.diff) for r in results]


def test_the_embedding_rows_are_what_makes_adam_agree(keras, tmp_path, monkeypatch):
    """Planted bug: without the looked-up rows (torch's dense embedding gradient squared), Adam's History
    leaves Keras' by far more than 1e-9 on the same text model."""
    from torchport.keras_compat import sparse_rows
    path = _saved(keras, tmp_path, "text", _text_layers("flatten"), (6,), lambda: keras.optimizers.Adam(0.01),
                  "sparse_categorical_crossentropy", input_dtype="int32")
    monkeypatch.setattr(sparse_rows, "track", lambda model, dense=(): [])
    results = pm.check_training(plan_file(path), path, epochs=2)
    assert max(r.diff for r in results) > 1e-6


def test_float32_training_on_smooth_inputs_stays_within_1e_4(keras, tmp_path):
    def layers(L):
        return [L.Dense(16, activation="tanh"), L.Dense(3, activation="softmax")]

    path = _saved(keras, tmp_path, "smooth", layers, (6,), lambda: keras.optimizers.Adam(0.01),
                  "categorical_crossentropy", dtype="float32")
    assert_all(pm.check_training(plan_file(path), path, dtype="float32"))


def test_weights_trained_by_torchport_evaluate_the_same_in_keras(keras, tmp_path):
    """Round trip: torchport fit (float64) writes model.weights.h5 and model.keras; Keras loads each and its
    evaluate gives torchport's last val_loss."""
    from torchport.keras_fit.run import FitConfig, run
    path = _saved(keras, tmp_path, "rt", lambda L: [L.Conv2D(4, 3, activation="relu"), L.BatchNormalization(),
                                                    L.Flatten(), L.Dense(3, activation="softmax")],
                  (8, 8, 2), lambda: keras.optimizers.Adam(0.01), "categorical_crossentropy")
    rng = np.random.default_rng(0)
    data = {"x_train": rng.uniform(size=(96, 8, 8, 2)), "y_train": np.eye(3)[rng.integers(0, 3, 96)],
            "x_test": rng.uniform(size=(40, 8, 8, 2)), "y_test": np.eye(3)[rng.integers(0, 3, 40)]}
    np.savez(tmp_path / "d.npz", **data)
    out = tmp_path / "out"
    run(FitConfig(model=path, data=str(tmp_path / "d.npz"), epochs=2, out=str(out), verbose=0))
    val_loss = json.loads((out / "history.json").read_text())["val_loss"][-1]
    keras.config.set_floatx("float64")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            loaded = keras.models.load_model(out / "model.keras")
            by_weights = keras.models.load_model(path)
            by_weights.load_weights(out / "model.weights.h5")
        for km in (loaded, by_weights):
            theirs = km.evaluate(data["x_test"], data["y_test"], batch_size=32, verbose=0, return_dict=True)["loss"]
            assert theirs == pytest.approx(val_loss, rel=1e-9)
    finally:
        keras.config.set_floatx("float32")


def test_parity_command_on_a_model_file(keras, tmp_path, capsys):
    from torchport.cli import main
    from torchport.originals.keras_zoo import build
    model = build(keras, "mnist_convnet")
    model.compile(optimizer=keras.optimizers.RMSprop(0.001), loss="categorical_crossentropy", metrics=["accuracy"])
    model.save(tmp_path / "m.keras")
    assert main(["parity", "--model", str(tmp_path / "m.keras")]) == 0
    out = capsys.readouterr().out
    assert "RMSprop, 1000 steps" in out and "training 2 epochs float64: loss" in out and " 0 failed" in out


def test_parity_command_with_loss_and_metric_objects_top_k_and_a_validation_set(keras, tmp_path, capsys):
    """A file compiled with objects (from_logits, k, exact Accuracy, a duplicate metric name): Keras compiles
    its reference as load_model would; top-k stays out of the float64 run (TensorFlow has no float64 in_top_k)."""
    from torchport.cli import main
    keras.utils.set_random_seed(0)
    L = keras.layers
    model = keras.Sequential([keras.Input((5,)), L.Dense(8, activation="relu"), L.Dense(4)])
    model.compile(keras.optimizers.Adam(0.01), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=[keras.metrics.SparseTopKCategoricalAccuracy(k=2), "accuracy", "accuracy"])
    model.save(tmp_path / "m.keras")
    assert main(["parity", "--model", str(tmp_path / "m.keras")]) == 0
    out = capsys.readouterr().out
    for row in ("top-k metrics left out", "training 2 epochs float64: accuracy_1", "float64: val_loss",
                "float64: val_accuracy", " 0 failed"):
        assert row in out, out


def test_parity_command_fails_with_exit_1_on_a_wrong_port(keras, tmp_path, capsys, monkeypatch):
    """Planted bug: a Dense converter that forgets the bias makes the table fail and the command exit 1."""
    from torchport.cli import main
    from torchport.porting.layers import core as layers_core
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3, activation="softmax")])
    model.compile("sgd", "categorical_crossentropy")
    model.set_weights([w + 0.5 for w in model.get_weights()])
    model.save(tmp_path / "m.keras")
    original = layers_core.Dense.to_torch
    monkeypatch.setattr(layers_core.Dense, "to_torch", lambda self, a: {**original(self, a), "bias": a[1] * 0})
    assert main(["parity", "--model", str(tmp_path / "m.keras")]) == 1
    assert " failed" in capsys.readouterr().out


@pytest.mark.parametrize("source, flags", [(".keras", ["--lr", "0.005"]), (".h5", []),
                                           (".h5", ["--optimizer", "rmsprop"]),
                                           (".keras", ["--loss", "mse", "--metrics", "mae"])])
def test_model_keras_written_by_fit_opens_in_keras_with_what_was_trained(keras, tmp_path, source, flags):
    """model.keras keeps the file's loss and metric objects (from_logits, k) unless a flag replaced them, holds
    the optimizer as trained (--lr, --optimizer) and opens in Keras from a Keras 3 .h5 too: Keras' evaluate of it
    gives torchport's last validation numbers."""
    from torchport.cli import main
    keras.utils.set_random_seed(0)
    L = keras.layers
    inp = keras.Input((5,))
    model = keras.Model(inp, L.Dense(4)(L.Dense(8, activation="relu")(inp)))  # Functional
    model.compile(keras.optimizers.Adam(0.01), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=[keras.metrics.SparseTopKCategoricalAccuracy(k=2), "accuracy"])
    model.save(tmp_path / f"m{source}")
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 96) if "--loss" not in flags else rng.normal(size=(96, 4)).astype("float32")
    data = {"x_train": rng.normal(size=(64, 5)).astype("float32"), "y_train": y[:64],
            "x_test": rng.normal(size=(32, 5)).astype("float32"), "y_test": y[64:]}
    np.savez(tmp_path / "d.npz", **data)
    out = tmp_path / "out"
    assert main(["fit", str(tmp_path / f"m{source}"), "--data", str(tmp_path / "d.npz"), "--epochs", "2", "--out",
                 str(out), "--verbose", "0", *flags]) == 0
    history = json.loads((out / "history.json").read_text())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = keras.models.load_model(out / "model.keras")
    theirs = loaded.evaluate(data["x_test"], data["y_test"], batch_size=32, verbose=0, return_dict=True)
    assert set(theirs) == {k.removeprefix("val_") for k in history if k.startswith("val_")}
    for key, value in theirs.items():
        assert value == pytest.approx(history[f"val_{key}"][-1], rel=1e-5, abs=1e-7), key
    want = {"--optimizer": "RMSprop"}.get(flags[0] if flags else "", "Adam")
    assert type(loaded.optimizer).__name__ == want
    if "--lr" in flags:
        assert float(loaded.optimizer.learning_rate) == pytest.approx(0.005)
