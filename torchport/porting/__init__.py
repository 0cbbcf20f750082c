"""A Keras model file -> readable PyTorch, without TensorFlow and without anything of training.

`load_keras(path)` returns the module; `plan_file(path)` the whole plan (source, weights, summary) that
`torchport port` writes out.
"""
from .plan import load_keras, plan_file

__all__ = ["load_keras", "plan_file"]
