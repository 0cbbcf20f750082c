"""A Keras model file -> readable PyTorch, without TensorFlow and without anything of training.

`load_keras(path)` returns the module; `plan_file(path)` the whole plan (source, weights, summary) that
`torchport port` writes out. A user's converters file (README: Your own layers) uses `converter`,
`Converter`, `Weight`, `Out` and the layouts `KERAS`/`NCHW` from here.
"""
from .convert import KERAS, NCHW, Converter, Out, Weight
from .plan import load_keras, plan_file
from .registry import converter, operation
from .user import load_converters

__all__ = ["load_keras", "plan_file", "converter", "operation", "Converter", "Out", "Weight", "KERAS", "NCHW",
           "load_converters"]
