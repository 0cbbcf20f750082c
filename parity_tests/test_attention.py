"""Attention layers against Keras: MultiHeadAttention (self and cross attention, a key, an attention mask
input, the causal mask, Embedding masks, attention scores, value_dim and output_shape), Attention (dot,
scaled, concat) and AdditiveAttention with masks, LayerNormalization's rms_scaling, and keras.io's
timeseries transformer."""
from __future__ import annotations

import pytest
from port_helpers import assert_all, port_checks, randomize

from torchport.originals.keras_zoo import timeseries_transformer


def _mha_self(keras):
    L = keras.layers
    x = keras.Input((6, 8))
    y = L.MultiHeadAttention(2, 4, name="mha")(x, x)
    return keras.Model(x, y)


def _mha_cross(keras):
    L = keras.layers
    q, v, k = keras.Input((5, 8)), keras.Input((7, 6)), keras.Input((7, 3))
    y, scores = L.MultiHeadAttention(3, 4, value_dim=5, output_shape=10, use_bias=False, name="mha")(
        q, v, key=k, return_attention_scores=True)
    return keras.Model([q, v, k], [y, scores])


def _mha_masks(keras):
    L = keras.layers
    tokens = keras.Input((6,), dtype="int32")
    m = keras.Input((6, 6), dtype="bool")
    e = L.Embedding(20, 8, mask_zero=True)(tokens)
    y = L.MultiHeadAttention(2, 4, name="mha")(e, e, attention_mask=m, use_causal_mask=True)
    return keras.Model([tokens, m], L.Dense(3)(y))


def _attentions(keras):
    L = keras.layers
    tokens = keras.Input((6,), dtype="int32")
    q = L.Embedding(20, 8, mask_zero=True)(tokens)
    v = keras.Input((5, 8))
    a = L.Attention(name="dot")([q, v])
    b = L.Attention(use_scale=True, score_mode="concat", name="concat")([q, v, v], use_causal_mask=False)
    c = L.AdditiveAttention(name="additive")([q, v])
    d = L.Attention(use_scale=True, name="scaled")([v, v], use_causal_mask=True)
    n = L.LayerNormalization(rms_scaling=True, epsilon=1e-5, name="rms")(d)
    return keras.Model([tokens, v], [a, b, c, n])


def _timeseries_transformer(keras):
    """keras.io's "Timeseries classification with a Transformer model" (keras_zoo's), small: 12 steps of 3."""
    return timeseries_transformer(keras, steps=12, features=3, head_size=8, mlp=16)


# Keras 3 cannot load its own .h5 of Attention (its score_mode is saved as a function) nor of a graph with
# operations (`h + x`) in it: those two are checked from .keras files only
CASES = [(b, f) for b in (_mha_self, _mha_cross, _mha_masks, _attentions, _timeseries_transformer)
         for f in ("keras", "h5") if f == "keras" or b not in (_attentions, _timeseries_transformer)]


@pytest.mark.parametrize("build, fmt", CASES)
def test_attention_layers_port(keras, tmp_path, build, fmt):
    keras.utils.set_random_seed(0)
    model = build(keras)
    randomize(model)
    plan, results = port_checks(keras, tmp_path, model, build.__name__, fmt)
    assert_all(results)
