"""sequential: a Keras Sequential model ported to PyTorch by torchport 0.1.0.

Ported from seed_cnn.keras (saved by Keras 3.15.1).
Input `x`: (N, 3, 32, 32) float32, images, channels first as torch takes them.
Output `x`: (N, 10) float32, in Keras' layout.
The softmax/sigmoid output carries its logits (`out._keras_logits`): a cross-entropy loss uses
them, as TensorFlow's Keras does.
`load()` returns the model with its weights (weights.pt beside this file).
"""
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

from torchport import keras_compat as kc  # Keras semantics torch has no exact twin for


class Sequential(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv2d = nn.Conv2d(3, 32, kernel_size=(3, 3), padding="same")
        self.dropout = kc.Dropout(0.2)  # torch's inverted dropout, with a 10x faster CPU mask
        self.conv2d_1 = nn.Conv2d(32, 32, kernel_size=(3, 3), padding="same")
        self.max_pooling2d = nn.MaxPool2d(kernel_size=(2, 2))
        self.dense = nn.Linear(8192, 512)
        self.dropout_1 = kc.Dropout(0.5)  # torch's inverted dropout, with a 10x faster CPU mask
        self.dense_1 = nn.Linear(512, 10)

    def forward(self, x):
        x = F.relu(self.conv2d(x))
        x = self.dropout(x)
        x = F.relu(self.conv2d_1(x))
        x = self.max_pooling2d(x)
        x = x.permute(0, 2, 3, 1).flatten(1)  # Keras flattens channels-last: (h, w, c)
        x = F.relu(self.dense(x))
        x = self.dropout_1(x)
        x = kc.softmax(self.dense_1(x), dim=-1)
        return x


def load(weights="weights.pt"):
    """The model with its weights (a relative path resolves next to this file), in inference mode,
    as Keras' `load_model` returns it; `model.train()` before training it."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), weights)
    with torch.device("meta"):  # no random initialisation: every tensor comes from the file
        model = Sequential()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), assign=True)
    return model.eval()
