"""How Keras' TensorFlow backend turns a Python float into a number: through float32, where Keras makes it a
tensor or an op attribute first (`ops.cast(self.beta_1, dtype)`, a layer's `negative_slope`, a max_value).

A float64 model sees the difference: 0.9 becomes 0.8999999761581421, 0.3 becomes 0.30000001192092896. Where
Keras keeps the Python float in Python arithmetic (`1 - self.beta_1`) it stays exact, so each use decides.
"""
from __future__ import annotations

import numpy as np


def f32(value: float) -> float:
    """`value` as Keras' TensorFlow backend passes it on where it casts it: rounded to float32."""
    return float(np.float32(value))
