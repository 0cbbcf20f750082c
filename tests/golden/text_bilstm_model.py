"""text_bilstm: a Keras Functional model ported to PyTorch by torchport 0.1.0.

Ported from text_bilstm.keras (saved by Keras 3.15.1).
Input `tokens`: (N, ?) int32, as Keras takes it.
Output `dense`: (N, 1) float32, in Keras' layout.
The softmax/sigmoid output carries its logits (`out._keras_logits`): a cross-entropy loss uses
them, as TensorFlow's Keras does.
`load()` returns the model with its weights (weights.pt beside this file).
"""
import os

import torch
import torch.nn as nn

from torchport import keras_compat as kc  # Keras semantics torch has no exact twin for


class TextBilstm(nn.Module):
    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(1000, 16)
        # Keras' mask: a masked step keeps the state
        self.bidirectional = kc.LSTM(16, 16, bidirectional=True, zero_output_for_mask=True)
        self.bidirectional.bias_hh_l0.requires_grad_(False)  # Keras has one bias: torch's second stays zero
        self.bidirectional.bias_hh_l0_reverse.requires_grad_(False)
        self.bidirectional_1 = kc.LSTM(32, 8, bidirectional=True)  # Keras' mask: a masked step keeps the state
        self.bidirectional_1.bias_hh_l0.requires_grad_(False)  # Keras has one bias: torch's second stays zero
        self.bidirectional_1.bias_hh_l0_reverse.requires_grad_(False)
        self.dense = nn.Linear(16, 1)

    def forward(self, tokens):
        embedding_mask = tokens != 0  # mask_zero: token 0 is padding, skipped downstream
        embedding = self.embedding(tokens)
        bidirectional_seq = self.bidirectional(embedding, embedding_mask)[0]
        bidirectional = bidirectional_seq
        bidirectional_1_seq = self.bidirectional_1(bidirectional, embedding_mask)[0]
        bidirectional_1 = torch.cat([bidirectional_1_seq[:, -1, :8], bidirectional_1_seq[:, 0, 8:]], dim=-1)
        dense = kc.sigmoid(self.dense(bidirectional_1))
        return dense


def load(weights="weights.pt"):
    """The model with its weights (a relative path resolves next to this file), in inference mode,
    as Keras' `load_model` returns it; `model.train()` before training it."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), weights)
    with torch.device("meta"):  # no random initialisation: every tensor comes from the file
        model = TextBilstm()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), assign=True)
    return model.eval()
