"""Nested models, checked against Keras: a model used as a layer (the transfer-learning base of the Keras
guides, frozen; a Sequential inside a Sequential; a siamese tower called twice), ported from `.keras` and
legacy `.h5` (their nested weight layouts differ), trained by `fit` as Keras' `fit` trains it."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from port_helpers import assert_all, port_checks, randomize

from torchport.parity import model as pm
from torchport.porting.plan import plan_file


def _base(keras, trainable=False):
    """A small image base like keras.applications' (conv, BatchNorm, ReLU, depthwise), frozen by default."""
    L = keras.layers
    inp = keras.Input((12, 12, 3))
    h = L.Conv2D(6, 3, padding="same", use_bias=False, name="conv1")(inp)
    h = L.BatchNormalization(name="bn1")(h)
    h = L.ReLU(6.0, name="relu1")(h)
    h = L.DepthwiseConv2D(3, padding="same", name="dw")(h)
    h = L.BatchNormalization(name="bn2")(h)
    base = keras.Model(inp, h, name="tiny_base")
    base.trainable = trainable
    return base


def _transfer(keras):
    """The Keras guides' pattern: inputs -> rescaling -> base(training=False) -> pooling -> dropout -> head."""
    L = keras.layers
    base = _base(keras)
    inp = keras.Input((12, 12, 3))
    x = L.Rescaling(1 / 127.5, offset=-1, name="rescale")(inp)
    x = base(x, training=False)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    x = L.Dropout(0.2, name="drop")(x)
    return keras.Model(inp, L.Dense(5, activation="softmax", name="head")(x), name="transfer")


def _sequential_in_sequential(keras):
    L = keras.layers
    inner = keras.Sequential([keras.Input((10,)), L.Dense(8, activation="relu", name="d1"),
                              L.BatchNormalization(name="bn")], name="inner")
    return keras.Sequential([keras.Input((10,)), inner, L.Dense(3, name="out")], name="outer")


def _siamese(keras):
    L = keras.layers
    t_in = keras.Input((6,))
    tower = keras.Model(t_in, L.Dense(4, activation="tanh", name="embed")(L.Dense(8, name="hidden")(t_in)),
                        name="tower")
    a, b = keras.Input((6,), name="left"), keras.Input((6,), name="right")
    diff = L.Subtract(name="diff")([tower(a), tower(b)])
    return keras.Model([a, b], L.Dense(1, activation="sigmoid", name="same")(diff), name="siamese")


MODELS = {"transfer": _transfer, "sequential_in_sequential": _sequential_in_sequential, "siamese": _siamese}


@pytest.mark.parametrize("fmt", ["keras", "h5"])
@pytest.mark.parametrize("kind", sorted(MODELS))
def test_nested_models_port_as_their_own_classes(keras, tmp_path, kind, fmt):
    keras.utils.set_random_seed(0)
    model = MODELS[kind](keras)
    randomize(model)
    plan, results = port_checks(keras, tmp_path, model, kind, fmt)
    assert_all(results)
    inner = {"transfer": "TinyBase", "sequential_in_sequential": "Inner", "siamese": "Tower"}[kind]
    assert f"class {inner}(nn.Module):" in plan.source
    assert plan.source.index(f"class {inner}(") < plan.source.index(f"class {plan.cls}(")
    tm = plan.module()
    assert sum(p.numel() for p in tm.parameters()) + sum(b.numel() for n, b in tm.named_buffers()
                                                         if "num_batches" not in n) == model.count_params()
    if kind == "siamese":  # one tower, called twice: its weights once
        assert plan.source.count("self.tower = Tower()") == 1 and plan.source.count("self.tower(") == 2
    if kind == "transfer":  # base.trainable = False is kept
        assert "self.tiny_base.requires_grad_(False)" in plan.source
        frozen = {n for n, p in tm.named_parameters() if not p.requires_grad}
        assert frozen == {n for n, _ in tm.named_parameters() if n.startswith("tiny_base.")}
        assert len(frozen) == 7  # conv1, dw (kernel, bias), bn1 and bn2 (gamma, beta)


def test_a_frozen_batchnorm_normalises_with_its_moving_statistics_in_training(keras):
    """Keras 3 runs a BatchNormalization whose layer is not trainable in inference mode, training or not."""
    keras.utils.set_random_seed(1)
    base = _base(keras)
    randomize(base)
    base.save("/tmp/torchport_frozen_base.keras")
    plan = plan_file("/tmp/torchport_frozen_base.keras")
    tm = plan.module().train()
    x = np.random.default_rng(0).uniform(-1, 1, (4, 12, 12, 3)).astype("float32")
    theirs = np.asarray(base(x, training=True))
    ours = tm(*pm.torch_inputs(plan, [x])).detach().numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)
    before = tm.bn1.running_mean.clone()
    tm.bn1.trainable = True  # planted: a frozen BatchNormalization that uses its batch statistics
    planted = tm(*pm.torch_inputs(plan, [x])).detach().numpy()
    assert np.abs(planted - theirs).max() > 0.1
    assert not torch.equal(before, tm.bn1.running_mean)


def _float64(keras, build, path):
    keras.config.set_floatx("float64")
    try:
        keras.utils.clear_session()
        keras.utils.set_random_seed(0)
        model = build(keras)
        randomize(model)
        model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        model.save(path)
    finally:
        keras.config.set_floatx("float32")
    return path


def test_float64_training_with_a_frozen_nested_base_equals_keras(keras, tmp_path):
    """The transfer-learning model trained by torchport and by Keras' fit, float64, step by step."""
    path = _float64(keras, _transfer, str(tmp_path / "transfer.keras"))
    plan = plan_file(path)
    results = pm.check_training(plan, path, epochs=2)
    assert_all(results)
    assert all(r.diff <= 1e-9 for r in results)


@pytest.mark.parametrize("fmt", ["keras", "h5"])
def test_fit_of_a_nested_model_writes_files_keras_loads(keras, tmp_path, fmt):
    """`torchport fit` on a transfer-learning model: the base stays as it was, the head moves, and Keras loads
    model.keras and model.weights.h5 (nested storage groups) and evaluates them to torchport's val_loss."""
    from torchport.keras_fit.run import FitConfig, run
    path = _float64(keras, _transfer, str(tmp_path / f"transfer.{fmt}"))
    rng = np.random.default_rng(0)
    data = {"x_train": rng.uniform(0, 255, (64, 12, 12, 3)), "y_train": rng.integers(0, 5, 64),
            "x_test": rng.uniform(0, 255, (32, 12, 12, 3)), "y_test": rng.integers(0, 5, 32)}
    np.savez(tmp_path / "d.npz", **data)
    out = tmp_path / "out"
    result = run(FitConfig(model=path, data=str(tmp_path / "d.npz"), epochs=2, out=str(out), verbose=0))
    before = plan_file(path).state
    after = {k: v.detach().numpy() for k, v in result["model"].state_dict().items()}
    base = [k for k in before if k.startswith("tiny_base.") and "num_batches" not in k]  # (torch's own counter)
    assert len(base) == 11 and all(np.array_equal(before[k], after[k]) for k in base)
    assert not np.array_equal(before["head.weight"], after["head.weight"])
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


def test_a_tf_keras2_h5_with_a_nested_model_ports(keras, tmp_path):
    """tf.keras 2 lists a nested model's arrays in one group too (`dense/kernel:0` names)."""
    import tf_keras as K
    K.utils.set_random_seed(0)
    L = K.layers
    inner = K.Sequential([K.Input((6,)), L.Dense(5, activation="relu", name="d1"), L.BatchNormalization(name="bn")],
                         name="inner")
    inner.trainable = False
    inp = K.Input((6,))
    model = K.Model(inp, L.Dense(2, name="head")(inner(inp)))
    randomize(model)
    plan, results = port_checks(K, tmp_path, model, "tf2_nested", "h5")
    assert_all(results)
    frozen = {n: p.requires_grad for n, p in plan.module().named_parameters()}  # (tf.keras 2 marks each layer)
    assert not any(v for n, v in frozen.items() if n.startswith("inner.")) and frozen["head.weight"]
