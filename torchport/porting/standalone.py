"""`port --standalone`: the Keras-semantics pieces a generated model.py uses (`kc.X`), and only those, copied
from torchport/keras_compat into keras_layers.py beside it, so that model.py and its weights run with torch
alone. The pieces are found by their names in the source (Python's own parser): each `kc.X` the model uses,
then every module-level definition those refer to, in the modules that hold Keras' layer semantics."""
from __future__ import annotations

import ast
import importlib.util
import re

MODULES = ("casts", "activations", "padding", "layers", "recurrent", "preprocessing", "augmentation", "attention")
IMPORTS = [("import math", "math"), ("import numpy as np", "np"), ("import torch", "torch"),
           ("import torch.nn as nn", "nn"), ("import torch.nn.functional as F", "F")]


def _definitions() -> dict[str, tuple[str, ast.AST, str]]:
    """name -> (module, node, source) for every module-level definition (and relative-import alias)."""
    found: dict[str, tuple[str, ast.AST, str]] = {}
    aliases: dict[str, str] = {}
    for module in MODULES:
        path = importlib.util.find_spec(f"torchport.keras_compat.{module}").origin
        source = open(path, encoding="utf-8").read()
        for node in ast.parse(source).body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                names = [node.name]
            elif isinstance(node, ast.Assign) and all(isinstance(t, ast.Name) for t in node.targets):
                names = [t.id for t in node.targets]
            elif isinstance(node, ast.ImportFrom) and node.level == 1:
                for a in node.names:
                    if a.asname and a.asname != a.name:
                        aliases[a.asname] = a.name
                continue
            else:
                continue
            for name in names:
                if name in found and found[name][0] != module:
                    raise RuntimeError(f"keras_compat defines {name} in {found[name][0]} and {module}")
                found[name] = (module, node, ast.get_source_segment(source, node))
    for alias, target in aliases.items():
        found.setdefault(alias, ("alias", None, f"{alias} = {target}"))
    return found


def keras_layers_source(model_source: str) -> str:
    """keras_layers.py for a model.py that uses `kc.<name>`: those definitions and what they use."""
    wanted = sorted(set(re.findall(r"\bkc\.(\w+)", model_source)))
    defs = _definitions()
    order: list[str] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        if name in seen or name not in defs:
            return
        seen.add(name)
        module, node, text = defs[name]
        used = {n.id for n in ast.walk(ast.parse(text)) if isinstance(n, ast.Name)} - {name}
        for dep in sorted(used):
            visit(dep)
        order.append(name)

    for name in wanted:
        if name not in defs:
            raise RuntimeError(f"kc.{name} is not in torchport.keras_compat's layer modules")
        visit(name)
    blocks, emitted = [], set()
    for name in order:
        text = defs[name][2]
        if text not in emitted:
            emitted.add(text)
            blocks.append(text)
    doc = ['"""Keras semantics the model in model.py uses, copied from torchport.keras_compat (torchport ' +
           _version() + '),', 'so that model.py runs with torch alone. Each piece is checked against Keras in '
           'torchport\'s tests."""']
    body = "\n\n\n".join(blocks)
    imports = [line for line, name in IMPORTS if re.search(rf"\b{name}\.", body)]
    if "import math" in imports and len(imports) > 1:
        imports.insert(1, "")
    return "\n".join(doc + [""] + imports) + "\n\n\n" + body + "\n"


def _version() -> str:
    from .. import __version__
    return __version__


def standalone_model_source(model_source: str) -> str:
    """model.py importing keras_layers.py (beside it) instead of torchport."""
    return model_source.replace(
        "from torchport import keras_compat as kc  # Keras semantics torch has no exact twin for",
        "import keras_layers as kc  # Keras semantics torch has no exact twin for (keras_layers.py, beside this "
        "file)")
