"""The converters, one module per Keras layer family (as Keras' own `keras/src/layers/` is laid out).

This import list is the one place that loads them into the table (`registry.CONVERTERS`).
"""
from . import (  # noqa: F401 (each module registers its converters)
    activations,
    applications,
    attention,
    convolutional,
    core,
    merging,
    normalization,
    operations,
    pooling,
    preprocessing,
    regularization,
    reshaping,
    rnn,
)
from ..registry import CONVERTERS, OPERATIONS

__all__ = ["CONVERTERS", "OPERATIONS"]
