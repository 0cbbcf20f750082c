"""functional_merges: a Keras Functional model ported to PyTorch by torchport 0.1.0.

Ported from functional_merges.keras (saved by Keras 3.15.1).
Input `image`: (N, 3, 16, 16) float32, images, channels first as torch takes them.
Input `meta`: (N, 6) float32, as Keras takes it.
Output `label`: (N, 4) float32, in Keras' layout.
Output `score`: (N, 1) float32, in Keras' layout.
The softmax/sigmoid output carries its logits (`out._keras_logits`): a cross-entropy loss uses
them, as TensorFlow's Keras does.
`load()` returns the model with its weights (weights.pt beside this file).
"""
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

from torchport import keras_compat as kc  # Keras semantics torch has no exact twin for


class FunctionalMerges(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv2d = nn.Conv2d(3, 8, kernel_size=(3, 3), padding="same")
        self.conv2d_1 = nn.Conv2d(3, 8, kernel_size=(1, 1))
        self.max_pooling2d = nn.MaxPool2d(kernel_size=(2, 2))
        self.lstm = nn.LSTM(128, 10, batch_first=True)
        self.lstm.bias_hh_l0.requires_grad_(False)  # Keras has one bias: torch's second stays zero
        self.dense = nn.Linear(6, 10)
        self.layer_normalization = nn.LayerNorm(10, eps=0.001)
        self.label = nn.Linear(10, 4)
        self.score = nn.Linear(16, 1)

    def forward(self, image, meta):
        conv2d = F.relu(self.conv2d(image))
        conv2d_1 = torch.tanh(self.conv2d_1(image))
        add = conv2d + conv2d_1
        multiply = conv2d * conv2d_1
        concatenate = torch.cat([add, multiply], dim=1)
        max_pooling2d = self.max_pooling2d(concatenate)
        max_pooling2d_nhwc = max_pooling2d.permute(0, 2, 3, 1)  # torch's (N, C, H, W) -> Keras' (N, H, W, C)
        permute = max_pooling2d_nhwc.permute(0, 2, 1, 3)
        reshape = permute.reshape(-1, 8, 128)
        lstm = self.lstm(reshape)[0][:, -1]  # the last step's output (return_sequences=False)
        dense = F.elu(self.dense(meta))
        average = (lstm + dense) / 2
        subtract = lstm - dense
        maximum = torch.maximum(average, subtract)
        layer_normalization = self.layer_normalization(maximum)
        label = kc.softmax(self.label(layer_normalization), dim=-1)
        concatenate_1 = torch.cat([layer_normalization, meta], dim=-1)
        score = self.score(concatenate_1)
        return label, score


def load(weights="weights.pt"):
    """The model with its weights (a relative path resolves next to this file), in inference mode,
    as Keras' `load_model` returns it; `model.train()` before training it."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), weights)
    with torch.device("meta"):  # no random initialisation: every tensor comes from the file
        model = FunctionalMerges()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), assign=True)
    return model.eval()
