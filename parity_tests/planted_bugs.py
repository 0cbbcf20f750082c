"""Bugs a port could have, planted on purpose: a calibrated parity verdict must still catch each of them
(parity_tests/test_calibrated_parity.py, scripts/parity_real_models.py)."""
from __future__ import annotations

import contextlib
import math


@contextlib.contextmanager
def batchnorm_momentum_off(delta: float = 1e-3):
    """Every ported BatchNormalization's momentum moved by `delta` (its moving statistics update wrongly)."""
    from torchport.porting.layers.normalization import BatchNormalization

    setup = BatchNormalization.setup

    def planted(self):
        setup(self)
        self.momentum += delta

    BatchNormalization.setup = planted
    try:
        yield
    finally:
        BatchNormalization.setup = setup


@contextlib.contextmanager
def depthwise_kernel_transposed():
    """Every DepthwiseConv2D kernel read with its height and width swapped."""
    from torchport.porting.layers.convolutional import DepthwiseConv2D

    to_torch = DepthwiseConv2D.to_torch
    DepthwiseConv2D.to_torch = lambda self, arrays: to_torch(self, [arrays[0].transpose(1, 0, 2, 3), *arrays[1:]])
    try:
        yield
    finally:
        DepthwiseConv2D.to_torch = to_torch


@contextlib.contextmanager
def adam_epsilon_inside_the_root():
    """Adam's update as w -= m * alpha / sqrt(v + eps) (RMSprop's form) instead of Keras' sqrt(v) + eps."""
    from torchport.keras_compat import optim

    update = optim.Adam.update

    def planted(self, p, g, state, lr, group):  # Adam.update, line for line, but for the last line
        b1, b2 = group["beta_1"], group["beta_2"]
        t = group["iterations"] + 1
        alpha = lr * math.sqrt(1 - optim._f32(b2) ** t) / (1 - optim._f32(b1) ** t)
        m, v = self.slot(state, "momentum", p), self.slot(state, "velocity", p)
        m.add_((g - m) * (1 - b1))
        v.add_((self.square(p, g) - v) * (1 - b2))
        p.sub_((m * alpha) / (v + group["epsilon"]).sqrt())

    optim.Adam.update = planted
    try:
        yield
    finally:
        optim.Adam.update = update
