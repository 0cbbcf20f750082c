"""Parity tests build the Keras reference in the test. Without TensorFlow they skip (CI fails on a skip)."""
import importlib.util

import pytest


@pytest.fixture(scope="session")
def keras():
    if importlib.util.find_spec("tensorflow") is None:
        pytest.skip("parity tests need TensorFlow: pip install -e '.[keras]'")
    from torchport.keras_env import import_keras
    return import_keras()
