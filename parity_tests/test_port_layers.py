"""Each converter against Keras: hypothesis draws shapes and options, Keras builds the layer with random
weights, the saved file is ported, and the port must compute what Keras computes (forward float32 <= 1e-5,
float64 <= 1e-10, every parameter's gradient <= 1e-5 relative in float32)."""
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from port_helpers import assert_all, port_checks, randomize

LAYER = settings(max_examples=10, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def check(keras, tmp_path, input_shape, *layers, input_dtype="float32", seed=0, **kw):
    keras.utils.clear_session()
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input(shape=input_shape, dtype=input_dtype), *layers])
    randomize(model, seed)
    plan, results = port_checks(keras, tmp_path, model, seed=seed, **kw)
    assert_all(results)
    return plan


@LAYER
@given(units=st.integers(1, 12), use_bias=st.booleans(), rank=st.integers(1, 3),
       activation=st.sampled_from(["relu", "sigmoid", "tanh", "softmax", "elu", "selu", "gelu", "swish", "silu",
                                   "softplus", "softsign", "linear", "leaky_relu"]))
def test_dense_and_activations(keras, tmp_path, units, use_bias, rank, activation):
    shape = (5, 4, 3)[-rank:]
    check(keras, tmp_path, shape, keras.layers.Dense(units, activation=activation, use_bias=use_bias))
    check(keras, tmp_path, shape, keras.layers.Activation(activation))


@LAYER
@given(filters=st.integers(1, 6), k=st.integers(1, 4), s=st.integers(1, 3), d=st.integers(1, 2),
       padding=st.sampled_from(["valid", "same"]), size=st.integers(7, 12), use_bias=st.booleans())
def test_conv2d(keras, tmp_path, filters, k, s, d, padding, size, use_bias):
    if s > 1 and d > 1:
        d = 1  # Keras refuses strides > 1 with dilation > 1
    check(keras, tmp_path, (size, size + 1, 3), keras.layers.Conv2D(
        filters, (k, k + 1 if k < 4 else k), strides=(s, 1 if s == 3 else s), padding=padding, dilation_rate=d,
        use_bias=use_bias, activation="relu"))


CHANNELS_FIRST_STACKS = {  # (input shape channels_last, layers given data_format and the channel axis)
    "conv-pool-upsample-pad": ((9, 8, 3), lambda L, f, ax: [
        L.Conv2D(4, 3, strides=2, padding="same", data_format=f), L.MaxPooling2D(2, data_format=f),
        L.UpSampling2D(2, data_format=f), L.ZeroPadding2D(1, data_format=f), L.GlobalAveragePooling2D(data_format=f)]),
    "depthwise-separable-avgpool-batchnorm-crop": ((11, 10, 3), lambda L, f, ax: [
        L.DepthwiseConv2D(3, depth_multiplier=2, padding="same", data_format=f),
        L.SeparableConv2D(5, 3, strides=2, padding="same", data_format=f),
        L.AveragePooling2D(2, padding="same", data_format=f), L.BatchNormalization(axis=ax),
        L.Cropping2D(((1, 0), (0, 1)), data_format=f), L.GlobalMaxPooling2D(data_format=f)]),
    "transpose-bilinear (image out)": ((5, 6, 3), lambda L, f, ax: [
        L.Conv2DTranspose(3, 3, strides=2, padding="same", data_format=f),
        L.UpSampling2D(2, interpolation="bilinear", data_format=f), L.Conv2D(2, 1, data_format=f)]),
    "conv1d-pools": ((12, 3), lambda L, f, ax: [
        L.Conv1D(4, 3, strides=2, padding="same", data_format=f), L.MaxPooling1D(2, padding="same", data_format=f),
        L.AveragePooling1D(2, data_format=f), L.GlobalAveragePooling1D(data_format=f)]),
}


@pytest.mark.parametrize("stack", list(CHANNELS_FIRST_STACKS))
def test_channels_first_ports_as_its_channels_last_twin(keras, tmp_path, stack):
    """TensorFlow's CPU kernels do not run channels_first convolutions (float64 raises; float32 gave wrong
    numbers through oneDNN), so Keras cannot be the reference here: the channels_first model, ported, must
    compute what its channels_last twin computes on the same weights, and the twin what Keras computes."""
    import numpy as np
    import torch

    from torchport.parity import model as pm
    from torchport.porting.plan import load_keras, plan_file

    L = keras.layers
    shape, layers = CHANNELS_FIRST_STACKS[stack]
    rank = len(shape) + 1
    to_first = (0, rank - 1, *range(1, rank - 1))  # (N, ..., C) -> (N, C, ...)
    models = {}
    for fmt in ("channels_last", "channels_first"):
        keras.utils.clear_session()
        input_shape = shape if fmt == "channels_last" else (shape[-1], *shape[:-1])
        model = keras.Sequential([keras.Input(input_shape),
                                  *layers(L, fmt, -1 if fmt == "channels_last" else 1)])
        if fmt == "channels_last":
            randomize(model, 0)
            weights = model.get_weights()
        else:
            model.set_weights(weights)  # the same kernels: Keras' kernel layout does not depend on data_format
        path = str(tmp_path / f"{fmt}.keras")
        model.save(path)
        models[fmt] = load_keras(path)
        if fmt == "channels_last":  # the twin against Keras itself
            assert_all([pm.check_forward(plan_file(path), path, "float32")])
    x = np.random.default_rng(0).uniform(size=(2, *shape)).astype("float32")
    x_first = torch.from_numpy(np.ascontiguousarray(x.transpose(to_first)))
    with torch.no_grad():  # images go in as (N, C, H, W) for both; a 1D input as Keras takes it, per format
        twin = models["channels_last"](x_first if rank == 4 else torch.from_numpy(x))
        ours = models["channels_first"](x_first)
    if twin.dim() == rank:  # an image output, in each model's Keras layout
        twin = twin.permute(*to_first)
    torch.testing.assert_close(ours, twin, rtol=0, atol=2e-6)


@LAYER
@given(filters=st.integers(1, 5), k=st.integers(1, 5), s=st.integers(1, 3), d=st.integers(1, 2),
       padding=st.sampled_from(["valid", "same", "causal"]), steps=st.integers(6, 12))
def test_conv1d(keras, tmp_path, filters, k, s, d, padding, steps):
    if s > 1 and d > 1:
        d = 1
    check(keras, tmp_path, (steps, 3), keras.layers.Conv1D(filters, k, strides=s, padding=padding, dilation_rate=d))


@LAYER
@given(filters=st.integers(1, 5), k=st.integers(1, 5), s=st.integers(1, 3), padding=st.sampled_from(["valid", "same"]),
       size=st.integers(3, 7), output_padding=st.booleans())
def test_conv2d_transpose(keras, tmp_path, filters, k, s, padding, size, output_padding):
    op = None
    if output_padding and s > 1:
        op = s - 1
    check(keras, tmp_path, (size, size + 1, 2),
          keras.layers.Conv2DTranspose(filters, k, strides=s, padding=padding, output_padding=op))


@LAYER
@given(k=st.integers(1, 4), s=st.integers(1, 2), mult=st.integers(1, 3), padding=st.sampled_from(["valid", "same"]),
       separable=st.booleans(), filters=st.integers(1, 5))
def test_depthwise_and_separable(keras, tmp_path, k, s, mult, padding, separable, filters):
    layer = (keras.layers.SeparableConv2D(filters, k, strides=s, padding=padding, depth_multiplier=mult)
             if separable else keras.layers.DepthwiseConv2D(k, strides=s, padding=padding, depth_multiplier=mult))
    check(keras, tmp_path, (9, 8, 3), layer)


@LAYER
@given(kind=st.sampled_from(["Max", "Average"]), rank=st.sampled_from([1, 2]), pool=st.integers(1, 3),
       strides=st.one_of(st.none(), st.integers(1, 3)), padding=st.sampled_from(["valid", "same"]),
       size=st.integers(5, 9))
def test_pooling(keras, tmp_path, kind, rank, pool, strides, padding, size):
    cls = getattr(keras.layers, f"{kind}Pooling{rank}D")
    shape = (size, size + 2, 3) if rank == 2 else (size, 3)
    check(keras, tmp_path, shape, cls(pool, strides=strides, padding=padding))


@LAYER
@given(kind=st.sampled_from(["Average", "Max"]), rank=st.sampled_from([1, 2]), keepdims=st.booleans())
def test_global_pooling(keras, tmp_path, kind, rank, keepdims):
    cls = getattr(keras.layers, f"Global{kind}Pooling{rank}D")
    check(keras, tmp_path, (6, 5, 3) if rank == 2 else (6, 3), cls(keepdims=keepdims))


@LAYER
@given(pad=st.tuples(st.integers(0, 2), st.integers(0, 2), st.integers(0, 2), st.integers(0, 2)),
       size=st.tuples(st.integers(1, 3), st.integers(1, 3)), interpolation=st.sampled_from(["nearest", "bilinear"]))
def test_padding_cropping_upsampling(keras, tmp_path, pad, size, interpolation):
    L = keras.layers
    check(keras, tmp_path, (5, 6, 2), L.ZeroPadding2D(((pad[0], pad[1]), (pad[2], pad[3]))),
          L.Cropping2D(((pad[1], pad[0]), (pad[3], pad[2]))), L.UpSampling2D(size, interpolation=interpolation),
          L.Conv2D(2, 1), float64=interpolation == "nearest")  # TensorFlow resizes bilinearly in float32



@LAYER
@given(pad=st.tuples(st.integers(0, 3), st.integers(0, 3)), size=st.integers(1, 3))
def test_padding_and_upsampling_1d(keras, tmp_path, pad, size):
    L = keras.layers
    check(keras, tmp_path, (5, 3), L.ZeroPadding1D(pad), L.UpSampling1D(size), L.Conv1D(2, 2))

@LAYER
@given(order=st.permutations([1, 2, 3]), target=st.sampled_from([(4, 15), (60,), (3, 4, 5), (5, -1)]))
def test_flatten_reshape_permute(keras, tmp_path, order, target):
    L = keras.layers
    check(keras, tmp_path, (3, 4, 5), L.Permute(order), L.Reshape(target), L.Flatten(), L.Dense(3))
    check(keras, tmp_path, (3, 4, 5), L.Conv2D(2, 1), L.Flatten(), L.Dense(3))


@LAYER
@given(rate=st.floats(0, 0.9), spatial=st.booleans())
def test_dropout_is_the_identity_in_inference(keras, tmp_path, rate, spatial):
    L = keras.layers
    drop = L.SpatialDropout2D(rate) if spatial else L.Dropout(rate)
    check(keras, tmp_path, (4, 4, 3), drop, L.SpatialDropout2D(rate), L.Reshape((16, 3)), L.SpatialDropout1D(rate),
          L.Dense(2))


@LAYER
@given(axis=st.sampled_from([-1, 1, 2]), center=st.booleans(), scale=st.booleans(), eps=st.floats(1e-5, 1e-1),
       momentum=st.floats(0.5, 0.999))
def test_batch_normalization(keras, tmp_path, axis, center, scale, eps, momentum):
    check(keras, tmp_path, (5, 4, 3), keras.layers.BatchNormalization(
        axis=axis, center=center, scale=scale, epsilon=eps, momentum=momentum))
    check(keras, tmp_path, (6,), keras.layers.BatchNormalization(center=center, scale=scale, epsilon=eps))


@LAYER
@given(axes=st.sampled_from([-1, [-2, -1], [1, 2, 3]]), center=st.booleans(), scale=st.booleans(),
       eps=st.floats(1e-5, 1e-1))
def test_layer_normalization(keras, tmp_path, axes, center, scale, eps):
    check(keras, tmp_path, (3, 4, 5), keras.layers.LayerNormalization(axis=axes, center=center, scale=scale,
                                                                      epsilon=eps))


@LAYER
@given(slope=st.floats(0, 1), max_value=st.one_of(st.none(), st.floats(0.5, 6)), threshold=st.floats(0, 1),
       alpha=st.floats(0.1, 2), axis=st.sampled_from([-1, 1, 2]), scale=st.floats(-3, 3), offset=st.floats(-1, 1))
def test_activation_layers_and_rescaling(keras, tmp_path, slope, max_value, threshold, alpha, axis, scale, offset):
    L = keras.layers
    check(keras, tmp_path, (4, 5, 3), L.Rescaling(scale, offset), L.ReLU(max_value, slope, threshold),
          L.LeakyReLU(slope), L.ELU(alpha), L.Identity(), L.Softmax(axis=axis))
    check(keras, tmp_path, (4, 5, 3), L.ReLU(), L.LeakyReLU(), L.ReLU(6.0))


@LAYER
@given(cls=st.sampled_from(["SimpleRNN", "LSTM", "GRU"]), units=st.integers(1, 6), return_sequences=st.booleans(),
       go_backwards=st.booleans(), reset_after=st.booleans(), use_bias=st.booleans(),
       activation=st.sampled_from(["tanh", "relu", "sigmoid"]), masked=st.booleans(), steps=st.integers(1, 6))
def test_recurrent(keras, tmp_path, cls, units, return_sequences, go_backwards, reset_after, use_bias, activation,
                   masked, steps):
    L = keras.layers
    kw = dict(return_sequences=return_sequences, go_backwards=go_backwards, use_bias=use_bias, activation=activation)
    if cls == "GRU":
        kw["reset_after"] = reset_after
    head = [L.Embedding(9, 4, mask_zero=True)] if masked else []
    shape = (steps,) if masked else (steps, 4)
    check(keras, tmp_path, shape, *head, getattr(L, cls)(units, **kw), L.Flatten(),
          input_dtype="int32" if masked else "float32")


@LAYER
@given(cls=st.sampled_from(["SimpleRNN", "LSTM", "GRU"]), merge=st.sampled_from(["concat", "sum", "ave", "mul"]),
       return_sequences=st.booleans(), masked=st.booleans(), mean=st.booleans())
def test_bidirectional_and_masked_pooling(keras, tmp_path, cls, merge, return_sequences, masked, mean):
    L = keras.layers
    head = [L.Embedding(9, 4, mask_zero=True)] if masked else []
    tail = [L.GlobalAveragePooling1D()] if (return_sequences and mean) else [L.Flatten()]
    check(keras, tmp_path, (5,) if masked else (5, 4), *head,
          L.Bidirectional(getattr(L, cls)(3, return_sequences=return_sequences), merge_mode=merge), *tail,
          input_dtype="int32" if masked else "float32")


@LAYER
@given(kind=st.sampled_from(["Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate"]),
       image=st.booleans(), axis=st.sampled_from([-1, 1, 2]))
def test_merges(keras, tmp_path, kind, image, axis):
    L = keras.layers
    keras.utils.clear_session()
    shape = (4, 5, 3) if image else (6,)
    a, b = keras.Input(shape, name="a"), keras.Input(shape, name="b")
    x, y = L.Conv2D(3, 1)(a) if image else L.Dense(6)(a), b
    merge = L.Concatenate(axis=axis if image else -1) if kind == "Concatenate" else getattr(L, kind)()
    out = L.Dense(2)(L.Flatten()(merge([x, y])) if image else merge([x, y]))
    model = keras.Model([a, b], out)
    randomize(model)
    _, results = port_checks(keras, tmp_path, model)
    assert_all(results)


def test_embedding_return_state_and_shared_layers(keras, tmp_path):
    L = keras.layers
    keras.utils.clear_session()
    tokens = keras.Input((6,), dtype="int32")
    e = L.Embedding(12, 5, mask_zero=True)(tokens)
    seq, h, c = L.LSTM(4, return_sequences=True, return_state=True)(e)
    _, fh, fc, bh, bc = L.Bidirectional(L.LSTM(3, return_state=True))(seq)
    shared = L.Dense(2)
    out = L.Concatenate()([shared(h), shared(c), L.GlobalAveragePooling1D()(seq), fh, bc])
    model = keras.Model(tokens, out)
    randomize(model)
    plan, results = port_checks(keras, tmp_path, model)
    assert_all(results)
    assert plan.source.count("self.dense = nn.Linear") == 1 and plan.source.count("self.dense(") == 2


# ---- the checks catch a wrong port ----------------------------------------------------------------------------

def test_symmetric_padding_for_a_strided_same_conv_is_caught(keras, tmp_path, monkeypatch):
    import torchport.keras_compat as kc

    def symmetric(x, kernel_size, strides, dilation=1, value=0.0):  # torch's habit: k // 2 on both sides
        import torch.nn.functional as F
        return F.pad(x, [k // 2 for k in reversed(kernel_size) for _ in (0, 1)], value=value)

    L = keras.layers
    check(keras, tmp_path, (8, 8, 3), L.Conv2D(2, 3, strides=2, padding="same"))  # correct port: passes
    monkeypatch.setattr(kc, "pad_same", symmetric)  # what the generated code calls
    with pytest.raises(AssertionError, match="forward float32"):
        check(keras, tmp_path, (8, 8, 3), L.Conv2D(2, 3, strides=2, padding="same"))


def test_torch_gru_gate_order_is_caught(keras, tmp_path, monkeypatch):
    from torchport.porting.layers import rnn as layers_rnn
    monkeypatch.setattr(layers_rnn, "_reorder_gru", lambda a, u, axis=-1: a)  # Keras' z, r, h read as r, z, n
    with pytest.raises(AssertionError, match="forward float32"):
        check(keras, tmp_path, (5, 4), keras.layers.GRU(3))


def test_nchw_flatten_is_caught(keras, tmp_path, monkeypatch):
    from torchport.porting.layers import reshaping
    monkeypatch.setattr(reshaping.Flatten, "forward", lambda self, ins, outs: [f"{outs[0]} = {ins[0]}.flatten(1)"])
    with pytest.raises(AssertionError, match="forward float32"):
        check(keras, tmp_path, (4, 4, 3), keras.layers.Conv2D(2, 1), keras.layers.Flatten(), keras.layers.Dense(2))


def _ruff_clean(source: str, tmp_path) -> None:
    import shutil
    import subprocess
    from pathlib import Path

    assert shutil.which("ruff"), "ruff is in the test extra"
    folder = tmp_path / "generated"
    folder.mkdir(exist_ok=True)
    (folder / "model.py").write_text(source)
    root = Path(__file__).resolve().parents[1]
    r = subprocess.run(["ruff", "check", "--no-cache", "--config", str(root / "pyproject.toml"), str(folder)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout


def test_generated_names_never_collide_with_layer_names(keras, tmp_path):
    """Layers named as the generated code's own variables would be (`emb_mask`, `bi_seq`, `bi_seq_h`): each
    variable is still unique, the model computes what Keras computes, and the code is ruff-clean."""
    L = keras.layers
    keras.utils.clear_session()
    tokens = keras.Input((6,), dtype="int32", name="tok")
    e = L.Embedding(10, 4, mask_zero=True, name="emb")(tokens)
    d = L.Dense(5, name="emb_mask")(e)  # Dense passes the mask on: the mask variable and this layer's name meet
    seq, fh, fc, bh, bc = L.Bidirectional(L.LSTM(3, return_sequences=True, return_state=True), name="bi")(d)
    pooled = L.GlobalAveragePooling1D(name="bi_seq")(seq)
    out = L.Concatenate(name="bi_seq_h")([pooled, fh, bc])
    model = keras.Model(tokens, L.Dense(2, name="bi_seq_c")(out))
    randomize(model)
    plan, results = port_checks(keras, tmp_path, model)
    assert_all(results)
    _ruff_clean(plan.source, tmp_path)


def test_a_mask_nothing_reads_leaves_no_unused_line_and_spatial_dropout_keeps_it(keras, tmp_path):
    """Embedding(mask_zero) -> Conv1D: Keras drops the mask there, so the generated code computes none (ruff's
    F841 before); SpatialDropout1D supports masking in Keras: the LSTM after it skips the padded steps."""
    L = keras.layers
    plan = check(keras, tmp_path, (7,), L.Embedding(10, 4, mask_zero=True), L.Conv1D(3, 2), L.GlobalMaxPooling1D(),
                 L.Dense(2, activation="softmax"), input_dtype="int32")
    assert "!= 0" not in plan.source
    _ruff_clean(plan.source, tmp_path)
    plan = check(keras, tmp_path, (7,), L.Embedding(10, 4, mask_zero=True), L.SpatialDropout1D(0.3), L.LSTM(4),
                 input_dtype="int32")
    assert "mask" in plan.source.split("def forward")[1]
    _ruff_clean(plan.source, tmp_path)


def test_a_merge_of_two_masked_inputs_merges_their_masks_as_keras_3(keras, tmp_path):
    """Keras 3 records the mask logic of a merge of masked inputs as operations (NotEqual, LogicalOr) and ORs
    the masks (tf.keras 2 and-ed them); the port carries the masks itself and leaves those operations out."""
    L = keras.layers
    keras.utils.clear_session()
    a, b = keras.Input((5,), dtype="int32"), keras.Input((5,), dtype="int32")
    merged = L.Add()([L.Embedding(9, 3, mask_zero=True)(a), L.Embedding(9, 3, mask_zero=True)(b)])
    plan, results = port_checks(keras, tmp_path, keras.Model([a, b], L.LSTM(2)(merged)), "masked_merge")
    assert_all(results)
    assert "embedding_mask | embedding_1_mask" in plan.source and "not_equal" not in plan.source
