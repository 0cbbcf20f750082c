"""Importing TensorFlow beside torch safely.

Loading TensorFlow before torch's compiler stack (torch._dynamo pulls in triton) crashes the interpreter
with a segfault (clashing native libraries). Anything that needs Keras imports it through here.
"""
import os


def import_keras():
    """Return the `keras` module (TensorFlow backend), torch's compiler stack loaded first."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import torch._dynamo  # noqa: F401  (must precede tensorflow)
    import keras
    return keras
