"""A user's own converters: `torchport port model.keras --converters my_layers.py` (and `load_keras(path,
converters=[...])`). The file is imported as the module `my_layers`; the classes it decorates with
`@converter("MyLayer")` (the same decorator the built-in converters use) go into the user table, which the
porter consults first for classes defined outside Keras. The generated model.py imports the same module
(port copies the file beside it), so the torch modules the file defines are what the port runs.

The file may define `keras_objects()`, returning {name: Keras class}: parity calls it (and only parity, so
that porting needs no TensorFlow) to let Keras load the model file.
"""
from __future__ import annotations

import importlib.util
import os
import sys

from ..errors import UsageError, described
from . import registry

_loaded: dict[str, object] = {}  # absolute path -> module


def load_converters(paths) -> list:
    """Import each converters file once; its `@converter` classes land in `registry.USER`."""
    modules = []
    for path in [paths] if isinstance(paths, str) else list(paths or []):
        full = os.path.abspath(path)
        if full in _loaded:
            modules.append(_loaded[full])
            continue
        if not os.path.isfile(full):
            raise UsageError(f"--converters {path}: no such file")
        name = os.path.splitext(os.path.basename(full))[0]
        if not name.isidentifier() or not full.endswith(".py"):
            raise UsageError(f"--converters {path}: a Python file named like a module (my_layers.py) is needed")
        if name in sys.modules and getattr(sys.modules[name], "__file__", None) != full:
            raise UsageError(f"--converters {path}: a module named '{name}' is already imported; rename the file")
        before = set(registry.USER)
        spec = importlib.util.spec_from_file_location(name, full)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # the generated model.py imports it by this name
        try:
            spec.loader.exec_module(module)
        except Exception as e:  # the user's code: whatever it raises is one line for them
            del sys.modules[name]
            for key in set(registry.USER) - before:
                del registry.USER[key]
            raise UsageError(f"--converters {path}: importing it failed: {described(e, 200)}") from None
        if not set(registry.USER) - before:
            del sys.modules[name]
            raise UsageError(f"--converters {path}: it registers no converter (decorate a Converter subclass with "
                             "@torchport.porting.converter(\"MyLayer\"))")
        _loaded[full] = module
        modules.append(module)
    return modules


def user_files() -> list[str]:
    """The converters files loaded so far (port copies those a model uses beside its model.py)."""
    return list(_loaded)


def keras_objects() -> dict:
    """{name: Keras class} from each loaded file's `keras_objects()`, for Keras to load a model with them."""
    found = {}
    for module in _loaded.values():
        fn = getattr(module, "keras_objects", None)
        if callable(fn):
            found.update(fn())
    return found
