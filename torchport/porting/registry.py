"""The one table of converters: Keras class name -> the converter class that ports it.

Each converter registers itself with `@converter("ClassName", "Alias", ...)`; the families that hold them
are imported in one place (`layers/__init__.py`), so importing `CONVERTERS` from here gives the full table.
A name registered twice is an error: two converters for one class would make the port depend on import order.
"""
from __future__ import annotations

CONVERTERS: dict[str, type] = {}
USER: dict[str, type] = {}  # converters a user's --converters file registers (classes defined outside Keras)
OPERATIONS: dict[str, type] = {}  # the operations a graph records: Keras 3's class names, tf.keras 2's functions


def converter(*class_names: str):
    """Register the decorated Converter subclass for these Keras class names. A class defined outside
    torchport (a user's converters file) goes into `USER`, which the porter consults first for a custom
    class; there a name may be the Keras class name or its registered name (`my_pkg>MyLayer`)."""
    def register(cls):
        table = CONVERTERS if cls.__module__.split(".")[0] == "torchport" else USER
        for name in class_names:
            if name in table and table[name].__qualname__ != cls.__qualname__:
                raise ValueError(f"Keras class {name!r} has two converters: {table[name].__qualname__} and "
                                 f"{cls.__qualname__}")
            if name in table and table is CONVERTERS:
                raise ValueError(f"Keras class {name!r} is registered twice ({cls.__qualname__})")
            table[name] = cls
        cls.keras_classes = class_names
        return cls
    return register


def operation(*names: str):
    """Register the decorated Operation converter for these recorded names (Keras 3's operation classes,
    `tf.`-prefixed TensorFlow functions of tf.keras 2's TFOpLambda layers)."""
    def register(cls):
        for name in names:
            if name in OPERATIONS:
                raise ValueError(f"operation {name!r} has two converters: {OPERATIONS[name].__qualname__} and "
                                 f"{cls.__qualname__}")
            OPERATIONS[name] = cls
        cls.keras_classes = names
        return cls
    return register
