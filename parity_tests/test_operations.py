"""Tensor operations recorded in a Functional graph, checked against Keras: Keras 3's operation nodes
(`x * 2.0`, `keras.ops.mean`, slicing, constant tensors) and tf.keras 2's TFOpLambda / SlicingOpLambda
layers (`tf.math.multiply`, `h[:, 0]`); an operation not in the table is refused by name."""
from __future__ import annotations

import pytest
from port_helpers import assert_all, port_checks, randomize

from torchport.errors import UnsupportedError
from torchport.porting.plan import plan_file


def _keras3_ops(keras):
    from keras import ops
    L = keras.layers
    inp = keras.Input((4, 6))
    h = L.Dense(6, name="dense")(inp)
    a = h * 2.0 + 1.0
    b = a - ops.mean(a, axis=1, keepdims=True)
    c = ops.reshape(b, (-1, 24))[:, 2:10]
    d = ops.concatenate([ops.relu(c), ops.sqrt(ops.abs(c) + 1.0)], axis=-1)
    e = ops.squeeze(ops.matmul(ops.expand_dims(d, 1), ops.ones((16, 3)) * 0.5), 1)
    f = ops.clip(e, -2.0, 3.0) / ops.maximum(ops.max(e, axis=-1, keepdims=True), 1.0)
    g = ops.where(f > 0, ops.exp(-ops.square(f)), ops.tanh(f))
    s = ops.stack([g, ops.softmax(g, axis=-1), ops.sigmoid(g)], axis=1)
    t = ops.transpose(s, (0, 2, 1))
    u = ops.sum(t, axis=(1, 2)) + ops.cast(ops.argmax(h[:, 0], axis=-1), "float32")
    return keras.Model(inp, [t, ops.expand_dims(u, -1), h[..., 0] - h[:, None, 1, 0]], name="ops")


def _hard_swish_images(keras):
    """MobileNetV3's hard_swish as it writes it: x * relu6(x + 3) * (1/6), between convolutions."""
    L = keras.layers
    inp = keras.Input((10, 10, 3))
    x = L.Conv2D(8, 3, padding="same", name="conv")(inp)
    x = L.Multiply(name="hard_swish")([x, L.ReLU(6.0, name="relu6")(x + 3.0) * (1.0 / 6.0)])
    return keras.Model(inp, L.GlobalAveragePooling2D()(L.Conv2D(4, 1)(x)), name="hard_swish")


@pytest.mark.parametrize("build", [_keras3_ops, _hard_swish_images])
def test_keras3_operations_port(keras, tmp_path, build):
    keras.utils.set_random_seed(0)
    model = build(keras)
    randomize(model)
    plan, results = port_checks(keras, tmp_path, model, build.__name__)
    assert_all(results)
    if build is _hard_swish_images:  # elementwise operations stay on torch's channels-first images
        assert ".permute(" not in plan.source  # images in, pooled features out: no layout change
        assert " = conv + 3.0" in plan.source and " = relu6 * 0.16666666666666666" in plan.source


def test_tf_keras2_operations_port(keras, tmp_path):
    """The issue's case: `h = h * 2.0 + 1.0` between layers of a tf.keras 2 .h5 was refused as a malformed
    config ('inbound tensor is not a tensor reference'); every tf.keras 2 operation form ports."""
    import tensorflow as tf
    import tf_keras as K
    K.utils.set_random_seed(0)
    L = K.layers
    inp = K.Input((4, 6))
    h = L.Dense(6)(inp)
    h = h * 2.0 + 1.0
    b = h - tf.reduce_mean(h, axis=1, keepdims=True)
    c = tf.nn.relu(tf.reshape(b, (-1, 24))[:, 2:10])
    d = tf.concat([c, tf.sqrt(tf.abs(c) + 1.0)], axis=-1)
    e = tf.squeeze(tf.expand_dims(tf.clip_by_value(d, -1.0, 2.0), 1), axis=1) * h[:, 0, :1]
    f = tf.transpose(tf.stack([e, tf.nn.softmax(e), tf.math.maximum(e, 0.5)], axis=1), perm=[0, 2, 1])
    model = K.Model(inp, L.Dense(2)(f))
    plan, results = port_checks(K, tmp_path, model, "tf2_ops", "h5")
    assert_all(results)
    assert "multiply = dense * 2.0" in plan.source and "add = multiply + 1.0" in plan.source


def test_an_operation_not_in_the_table_is_refused_by_name(keras, tmp_path):
    from keras import ops
    inp = keras.Input((5,))
    keras.Model(inp, ops.cumsum(keras.layers.Dense(3)(inp), axis=-1)).save(tmp_path / "k3.keras")
    with pytest.raises(UnsupportedError, match="the operation 'Cumsum' is not supported"):
        plan_file(str(tmp_path / "k3.keras"))
    import tensorflow as tf
    import tf_keras as K
    kin = K.Input((5,))
    K.Model(kin, tf.math.cumsum(K.layers.Dense(3)(kin), axis=-1)).save(tmp_path / "k2.h5")
    with pytest.raises(UnsupportedError, match="the operation 'tf.math.cumsum' is not supported"):
        plan_file(str(tmp_path / "k2.h5"))


UNARY = ["absolute", "ceil", "cos", "elu", "erf", "exp", "floor", "gelu", "hard_sigmoid", "hard_silu", "leaky_relu",
         "log", "log_softmax", "negative", "reciprocal", "relu", "relu6", "round", "rsqrt", "selu", "sigmoid", "sign",
         "silu", "sin", "softmax", "softplus", "softsign", "sqrt", "square", "tanh"]
ALIASES = {"Abs", "Amax", "Amin", "Swish", "HardSwish"}  # names Keras 3.15 does not record


def test_every_keras3_operation_in_the_table_ports(keras, tmp_path):
    """One model calling every operation of the table as keras.ops records it, checked against Keras."""
    import json
    import zipfile

    from keras import ops

    from torchport.porting.layers import OPERATIONS
    L = keras.layers
    inp = keras.Input((4, 6))
    h = L.Dense(6, name="dense")(inp)
    pos = ops.abs(h) + 0.5
    outs = [getattr(ops, name)(pos) for name in UNARY]
    outs += [h + 1.5, h - pos, h * pos, h / pos, ops.divide(h, pos), ops.power(pos, 1.5), ops.floor_divide(h, 0.7),
             ops.maximum(h, pos * 0.5), ops.minimum(h, 0.25), ops.clip(h, -0.5, 0.5)]
    outs += [ops.cast(c, "float32") for c in (ops.equal(h, pos), ops.not_equal(h, 0.0), h > 0.1, h >= pos, h < 0.2,
                                              h <= pos, ops.logical_not(h > 0), ops.argmax(h, axis=-1),
                                              ops.logical_and(h > 0, pos > 1), ops.logical_or(h > 0.5, pos > 1))]
    outs += [ops.mean(h, axis=1), ops.sum(h, axis=(1, 2), keepdims=True), ops.max(h, axis=-1), ops.min(h, axis=1),
             ops.prod(pos, axis=1), ops.var(h, axis=1), ops.std(h, axis=-1)]
    outs += [ops.reshape(h, (-1, 24)), ops.transpose(h, (0, 2, 1)), ops.squeeze(ops.expand_dims(h, 1), 1),
             ops.concatenate([h, pos], axis=1), ops.stack([h, pos], axis=-1),
             ops.matmul(h, ops.transpose(pos, (0, 2, 1))),
             ops.where(h > 0, h, pos), h[:, 1:3, ::2], h[..., 0]]
    model = keras.Model(inp, outs, name="every_operation")
    plan, results = port_checks(keras, tmp_path, model, "every_operation")
    assert_all(results)
    config = json.loads(zipfile.ZipFile(tmp_path / "every_operation.keras").read("config.json"))
    recorded = {layer["class_name"] for layer in config["config"]["layers"]
                if layer.get("module", "").startswith("keras.src.ops")}
    table = {name for name in OPERATIONS if not name.startswith("tf.")} - ALIASES
    assert table <= recorded, f"not built here: {sorted(table - recorded)}"
