"""Keras semantics in torch, each piece checked against Keras: the optimizers, losses, metrics, log lines
and summary table the engine uses, and the layers and functions ported models import as `kc` where torch
has no exact twin."""
from .activations import relu, sigmoid, softmax
from .attention import AdditiveAttention, Attention, MultiHeadAttention
from .augmentation import (
    RandomBrightness,
    RandomContrast,
    RandomCrop,
    RandomFlip,
    RandomRotation,
    RandomTranslation,
    RandomZoom,
)
from .layers import BatchNormalization, Dropout, LayerScale, RMSScaledLayerNorm, StochasticDepth, masked_mean
from .losses import categorical_crossentropy
from .metrics import categorical_accuracy
from .optim import KerasSGD
from .padding import avg_pool_same, max_pool_same, pad_same
from .preprocessing import Constants, Normalization, Rescaling, center_crop, resize
from .progbar import ProgbarLogger, format_epoch_line
from .recurrent import GRU, LSTM, SimpleRNN
from .summary import summary

__all__ = ["KerasSGD", "categorical_crossentropy", "categorical_accuracy", "ProgbarLogger", "format_epoch_line",
           "summary", "relu", "sigmoid", "softmax", "BatchNormalization", "Dropout", "masked_mean", "avg_pool_same",
           "max_pool_same", "pad_same", "GRU", "LSTM", "SimpleRNN", "Normalization", "Rescaling", "center_crop",
           "Constants", "resize", "AdditiveAttention", "Attention", "MultiHeadAttention", "RMSScaledLayerNorm",
           "LayerScale", "StochasticDepth",
           "RandomBrightness", "RandomContrast", "RandomCrop", "RandomFlip", "RandomRotation", "RandomTranslation",
           "RandomZoom"]
