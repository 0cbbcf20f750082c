"""Keras' attention layers for torch: MultiHeadAttention, Attention (dot-product, Luong) and AdditiveAttention
(Bahdanau), computed as Keras 3 computes them. Keras has two ways, and which one runs changes the numbers:
a layer with dropout, or asked for its scores, scales the query before the product and pushes masked
scores down by adding -1e9 (so a masked score still has a gradient); otherwise MultiHeadAttention goes
through `ops.dot_product_attention`, which scales the product and replaces masked scores by
-0.7 * 3.38953e38 (no gradient through them). Either way a fully masked row is uniform, not NaN."""
from __future__ import annotations

import math

import torch
import torch.nn as nn

LARGE_NEGATIVE = -1e9  # Keras' _large_negative_number for float32 and float64 scores (added)
REPLACED_NEGATIVE = 3.38953e38 * -0.7  # dot_product_attention's masked score (TensorFlow backend, replaced)


def combine_masks(query_mask=None, value_mask=None, attention_mask=None, causal: bool = False, tq: int = 0,
                  tk: int = 0, device=None):
    """Keras' attention mask (batch, Tq, Tk): the query and value masks, the causal mask and the given one, and-ed."""
    mask = None
    if query_mask is not None:
        mask = query_mask.bool()[:, :, None]
    if value_mask is not None:
        m = value_mask.bool()[:, None, :]
        mask = m if mask is None else mask & m
    if causal:  # position i attends to j <= i, aligned at the top left as Keras aligns it
        c = (torch.arange(tk, device=device)[None, :] <= torch.arange(tq, device=device)[:, None])[None]
        mask = c if mask is None else mask & c
    if attention_mask is not None:
        m = attention_mask.bool()
        mask = m if mask is None else mask & m
    return mask


def masked_softmax(scores, mask, dim: int = -1):
    if mask is not None:
        scores = scores + (~mask).to(scores.dtype) * LARGE_NEGATIVE
    return torch.softmax(scores, dim=dim)


class MultiHeadAttention(nn.Module):
    """keras.layers.MultiHeadAttention over the sequence axis of (batch, T, features) inputs. `query`, `key`,
    `value` and `output` are Keras' four EinsumDense layers as Linear maps (kernel (d, heads, dim) flattened)."""

    def __init__(self, num_heads: int, key_dim: int, value_dim: int, query_features: int, key_features: int,
                 value_features: int, output_features: int, use_bias: bool = True, dropout: float = 0.0,
                 scale: float | None = None):
        super().__init__()
        self.num_heads, self.key_dim, self.value_dim = num_heads, key_dim, value_dim
        # 1 / sqrt(key_dim); TensorFlow casts it through float32 first, so a float64 model passes that value
        self.scale = 1.0 / math.sqrt(float(key_dim)) if scale is None else scale
        self.query = nn.Linear(query_features, num_heads * key_dim, bias=use_bias)
        self.key = nn.Linear(key_features, num_heads * key_dim, bias=use_bias)
        self.value = nn.Linear(value_features, num_heads * value_dim, bias=use_bias)
        self.output = nn.Linear(num_heads * value_dim, output_features, bias=use_bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, query, value, key=None, attention_mask=None, query_mask=None, value_mask=None,
                use_causal_mask: bool = False, return_attention_scores: bool = False):
        key = value if key is None else key
        b, tq, tk = query.shape[0], query.shape[1], key.shape[1]
        h = self.num_heads
        scale = self.scale
        q = self.query(query).view(b, tq, h, self.key_dim)
        k = self.key(key).view(b, tk, h, self.key_dim)
        v = self.value(value).view(b, tk, h, self.value_dim)
        mask = combine_masks(query_mask, value_mask, attention_mask, use_causal_mask, tq, tk, query.device)
        mask = None if mask is None else mask[:, None]  # (batch, 1, Tq, Tk): every head
        if self.dropout.p == 0 and not return_attention_scores:  # Keras: ops.dot_product_attention
            scores = torch.einsum("bqhd,bkhd->bhqk", q, k) * scale
            if mask is not None:
                scores = torch.where(mask, scores, torch.full_like(scores, REPLACED_NEGATIVE))
            probs = torch.softmax(scores, dim=-1)
        else:
            scores = torch.einsum("bkhd,bqhd->bhqk", k, q * scale)
            probs = self.dropout(masked_softmax(scores, mask))
        out = torch.einsum("bhqk,bkhd->bqhd", probs, v).reshape(b, tq, h * self.value_dim)
        out = self.output(out)
        return (out, probs) if return_attention_scores else out


class Attention(nn.Module):
    """keras.layers.Attention: softmax(scale * q k^T) v ("dot"; `use_scale` learns the scale) or the "concat"
    score sum(tanh(scale * (q + k))) * concat_score_weight."""

    def __init__(self, use_scale: bool = False, score_mode: str = "dot", dropout: float = 0.0):
        super().__init__()
        self.score_mode = score_mode
        self.scale = nn.Parameter(torch.ones(())) if use_scale else None
        self.concat_score_weight = nn.Parameter(torch.ones(())) if score_mode == "concat" else None
        self.dropout = nn.Dropout(dropout)

    def scores(self, query, key):
        if self.score_mode == "dot":
            s = torch.matmul(query, key.transpose(-2, -1))
            return s * self.scale if self.scale is not None else s
        q, k = query.unsqueeze(-2), key.unsqueeze(-3)
        inner = self.scale * (q + k) if self.scale is not None else q + k
        return self.concat_score_weight * torch.tanh(inner).sum(-1)

    def forward(self, query, value, key=None, query_mask=None, value_mask=None, use_causal_mask: bool = False,
                return_attention_scores: bool = False):
        key = value if key is None else key
        scores = self.scores(query, key)
        mask = combine_masks(None, value_mask, None, use_causal_mask, query.shape[1], key.shape[1], query.device)
        probs = masked_softmax(scores, mask)
        out = torch.matmul(self.dropout(probs), value)
        if query_mask is not None:  # Keras zeroes the outputs of masked query steps
            out = out * query_mask.to(out.dtype)[..., None]
        return (out, probs) if return_attention_scores else out


class AdditiveAttention(Attention):
    """keras.layers.AdditiveAttention: scores sum(scale * tanh(q + k)) (`use_scale`: a learned vector)."""

    def __init__(self, dim: int, use_scale: bool = True, dropout: float = 0.0):
        super().__init__(False, "dot", dropout)
        self.scale = nn.Parameter(torch.ones(dim)) if use_scale else None

    def scores(self, query, key):
        t = torch.tanh(query.unsqueeze(-2) + key.unsqueeze(-3))
        return (t * self.scale).sum(-1) if self.scale is not None else t.sum(-1)
