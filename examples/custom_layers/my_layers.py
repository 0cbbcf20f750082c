"""How the three custom classes of keras_model.py port: a torch module for each, and a converter saying how
its Keras config and weights become that module. `torchport port text_transformer.keras --converters
my_layers.py` imports this file as `my_layers`, and the generated model.py imports it too (port copies it
beside model.py).

A converter (the same base class and decorator as torchport's own) says, for the Keras class named in
`@converter(...)` (its registered name, `package>Class`, or the class name):
- `setup`: read the layer's config (`self.cfg`, `self.int_opt(...)`), refuse what it does not port;
- `outputs`: the output shape (Keras' shape, batch excluded) from the input shapes (`self.inputs`);
- `weights`: Keras' variables in Keras' order, each with its shape and the sub-object holding it in the
  `.keras` file (`att/query_dense` is `layers/transformer_block/att/query_dense/vars`);
- `module` / `forward`: the constructor of `self.<attr>` and the lines of the generated `forward`;
- `to_torch` / `to_keras`: the arrays, both ways (fit writes trained weights back for Keras).
"""
import os
import sys

import numpy as np
import torch
import torch.nn as nn

from torchport import keras_compat as kc
from torchport.porting import Converter, Out, Weight, converter

# ---- the torch modules model.py builds ------------------------------------------------------------------------


class TokenAndPositionEmbedding(nn.Module):
    def __init__(self, maxlen, vocab_size, embed_dim):
        super().__init__()
        self.token_emb = nn.Embedding(vocab_size, embed_dim)
        self.pos_emb = nn.Embedding(maxlen, embed_dim)

    def forward(self, x):
        positions = torch.arange(x.shape[-1], device=x.device)
        return self.token_emb(x.long()) + self.pos_emb(positions)


class TransformerBlock(nn.Module):
    def __init__(self, embed_dim, num_heads, ff_dim, rate=0.1):
        super().__init__()
        d = embed_dim  # keras.io's block: key_dim = embed_dim, every projection from embed_dim features
        self.att = kc.MultiHeadAttention(num_heads, d, d, d, d, d, d)
        self.ffn = nn.Sequential(nn.Linear(d, ff_dim), nn.ReLU(), nn.Linear(ff_dim, d))
        self.layernorm1 = nn.LayerNorm(d, eps=1e-6)
        self.layernorm2 = nn.LayerNorm(d, eps=1e-6)
        self.dropout1 = kc.Dropout(rate)
        self.dropout2 = kc.Dropout(rate)

    def forward(self, inputs):
        attn_output = self.dropout1(self.att(inputs, inputs))
        out1 = self.layernorm1(inputs + attn_output)
        return self.layernorm2(out1 + self.dropout2(self.ffn(out1)))


class LayerScale(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * self.gamma


# ---- the converters ---------------------------------------------------------------------------------------------


@converter("custom_layers>TokenAndPositionEmbedding")
class TokenAndPositionEmbeddingPort(Converter):
    def setup(self):
        # `input_dim`, as the built-in Embedding converter names it: parity then draws token ids below it
        self.maxlen, self.input_dim, self.dim = self.int_opt("maxlen"), self.int_opt("vocab_size"), \
            self.int_opt("embed_dim")
        if self.inputs[0].shape != (self.maxlen,):
            self.fail(f"input shape {self.inputs[0].shape}: (maxlen,) = ({self.maxlen},) is ported")

    def outputs(self):
        return [Out((self.maxlen, self.dim))]

    def weights(self):
        return [Weight("embeddings", (self.input_dim, self.dim), "token_emb"),
                Weight("embeddings", (self.maxlen, self.dim), "pos_emb")]

    def module(self):
        return f"{__name__}.TokenAndPositionEmbedding({self.maxlen}, {self.input_dim}, {self.dim})"

    def forward(self, ins, outs):
        return [f"{outs[0]} = self.{self.attr}({ins[0]})"]

    def to_torch(self, arrays):
        return {"token_emb.weight": arrays[0], "pos_emb.weight": arrays[1]}

    def to_keras(self, state):
        return [state["token_emb.weight"], state["pos_emb.weight"]]


ATTENTION = ("query", "key", "value")


@converter("custom_layers>TransformerBlock")
class TransformerBlockPort(Converter):
    def setup(self):
        self.dim, self.heads = self.int_opt("embed_dim"), self.int_opt("num_heads")
        self.ff_dim, self.rate = self.int_opt("ff_dim"), self.float_opt("rate", 0.1)
        if self.feature_dim() != self.dim:
            self.fail(f"input features {self.feature_dim()} != embed_dim {self.dim}")

    def weights(self):
        d, h, f = self.dim, self.heads, self.ff_dim
        w = []
        for name in ATTENTION:  # Keras' EinsumDense kernels: (features, heads, key_dim)
            w += [Weight("kernel", (d, h, d), f"att/{name}_dense"), Weight("bias", (h, d), f"att/{name}_dense")]
        w += [Weight("kernel", (h, d, d), "att/output_dense"), Weight("bias", (d,), "att/output_dense")]
        w += [Weight("kernel", (d, f), "ffn/layers/dense"), Weight("bias", (f,), "ffn/layers/dense"),
              Weight("kernel", (f, d), "ffn/layers/dense_1"), Weight("bias", (d,), "ffn/layers/dense_1")]
        for norm in ("layernorm1", "layernorm2"):
            w += [Weight("gamma", (d,), norm), Weight("beta", (d,), norm)]
        return w

    def module(self):
        return f"{__name__}.TransformerBlock({self.dim}, {self.heads}, {self.ff_dim}, rate={self.rate!r})"

    def forward(self, ins, outs):
        return [f"{outs[0]} = self.{self.attr}({ins[0]})"]

    def to_torch(self, a):
        state, i = {}, 0
        for name in ATTENTION:  # (d, heads, key_dim) -> Linear's (heads * key_dim, d)
            state[f"att.{name}.weight"] = a[i].reshape(a[i].shape[0], -1).T
            state[f"att.{name}.bias"] = a[i + 1].reshape(-1)
            i += 2
        state["att.output.weight"] = a[i].reshape(-1, a[i].shape[-1]).T
        state["att.output.bias"] = a[i + 1]
        state["ffn.0.weight"], state["ffn.0.bias"] = a[i + 2].T, a[i + 3]
        state["ffn.2.weight"], state["ffn.2.bias"] = a[i + 4].T, a[i + 5]
        state["layernorm1.weight"], state["layernorm1.bias"] = a[i + 6], a[i + 7]
        state["layernorm2.weight"], state["layernorm2.bias"] = a[i + 8], a[i + 9]
        return state

    def to_keras(self, s):
        d, h = self.dim, self.heads
        out = []
        for name in ATTENTION:
            out += [np.asarray(s[f"att.{name}.weight"]).T.reshape(d, h, d),
                    np.asarray(s[f"att.{name}.bias"]).reshape(h, d)]
        out += [np.asarray(s["att.output.weight"]).T.reshape(h, d, d), s["att.output.bias"]]
        out += [np.asarray(s["ffn.0.weight"]).T, s["ffn.0.bias"], np.asarray(s["ffn.2.weight"]).T, s["ffn.2.bias"]]
        return out + [s["layernorm1.weight"], s["layernorm1.bias"], s["layernorm2.weight"], s["layernorm2.bias"]]


@converter("custom_layers>LayerScale")
class LayerScalePort(Converter):
    passes_mask = True

    def setup(self):
        self.dim = self.int_opt("projection_dim")

    def weights(self):
        return [Weight("gamma", (self.dim,))]

    def module(self):
        return f"{__name__}.LayerScale({self.dim})"

    def forward(self, ins, outs):
        return [f"{outs[0]} = self.{self.attr}({ins[0]})"]

    def to_torch(self, arrays):
        return {"gamma": arrays[0]}

    def to_keras(self, state):
        return [state["gamma"]]


def keras_objects():
    """The Keras classes, for parity to load the model file (imported only then: porting needs no Keras)."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import keras_model
    return {"custom_layers>TokenAndPositionEmbedding": keras_model.TokenAndPositionEmbedding,
            "custom_layers>TransformerBlock": keras_model.TransformerBlock,
            "custom_layers>LayerScale": keras_model.LayerScale}
