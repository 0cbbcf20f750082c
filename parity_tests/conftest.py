"""Parity tests build the Keras reference in the test. Without TensorFlow they skip (CI fails on a skip)."""
import importlib.util

import pytest


@pytest.fixture(scope="session")
def keras():
    if importlib.util.find_spec("tensorflow") is None:
        pytest.skip("parity tests need TensorFlow: pip install -e '.[keras]'")
    from torchport.keras_env import import_keras
    return import_keras()


@pytest.fixture(autouse=True)
def _seeded(request):
    """Every parity test starts from the same Keras, TensorFlow, numpy, Python and torch draws, whatever ran
    before it in the session (a test that builds a Keras model with Keras' own initializers gets the same
    weights in every run)."""
    import random

    import numpy as np
    import torch

    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    if "keras" in request.fixturenames:
        keras = request.getfixturevalue("keras")
        keras.utils.set_random_seed(0)
    yield
    if "keras" in request.fixturenames:  # a test that built float64 models leaves Keras as it found it:
        keras.config.set_floatx("float32")  # (clear_session() under float64 fixes the global dtype policy
        keras.config.set_dtype_policy("float32")  # at float64, which set_floatx alone does not undo)
