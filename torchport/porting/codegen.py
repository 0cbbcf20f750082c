"""The planned model -> readable PyTorch source: one nn.Module named after the Keras model, attributes
named as Keras names its layers, `forward` top to bottom in the Keras model's order, and `load()`."""
from __future__ import annotations

import keyword
import re

import torch.nn as nn

from .. import __version__

# names a layer attribute must not take: Python's, nn.Module's, and those the generated code uses itself
RESERVED = set(keyword.kwlist) | set(dir(nn.Module())) | {"self", "torch", "nn", "F", "kc", "os", "load", "math",
                                                            "x", "mask", "forward"}


class Names:
    """Unique Python identifiers derived from Keras names (`conv2d_1` stays `conv2d_1`)."""

    def __init__(self):
        self.taken: set[str] = set()

    def make(self, wanted: str, fallback: str = "layer") -> str:
        name = re.sub(r"\W", "_", wanted).strip("_") or fallback
        if name[0].isdigit() or name in RESERVED or keyword.iskeyword(name):
            name = f"{fallback}_{name}"
        base, i = name, 1
        while name in self.taken or name in RESERVED:
            name = f"{base}_{i}"
            i += 1
        self.taken.add(name)
        return name


def class_name(model_name: str) -> str:
    """`my_cnn` -> `MyCnn`, `sequential` -> `Sequential`: the Keras model's name as a Python class name."""
    parts = [p for p in re.split(r"\W|_", model_name) if p]
    name = "".join(p[:1].upper() + p[1:] for p in parts) or "Model"
    if name[0].isdigit() or keyword.iskeyword(name) or name in {"Module", "F", "nn", "torch", "kc", "os"}:
        name = f"Keras{name}"
    return name


def _split_args(inner: str) -> list[str]:
    """Top-level comma-separated parts of an argument list."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(inner):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(inner[start:i].strip())
            start = i + 1
    parts.append(inner[start:].strip())
    return [p for p in parts if p]


def _fit(line: str, indent: int, width: int = 120) -> list[str]:
    """A line within `width`: a trailing comment moves above the code, then a call's arguments go one per
    line (`self.x = nn.Sequential(` ... `)`)."""
    pad = " " * indent
    if indent + len(line) <= width:
        return [pad + line]
    comment = []
    if "  # " in line:
        line, note = line.split("  # ", 1)
        comment = [f"{pad}# {note}"]
    if indent + len(line) <= width or not line.endswith(")") or "(" not in line:
        return comment + [pad + line]
    head, inner = line[:line.index("(") + 1], line[line.index("(") + 1:-1]
    return comment + [pad + head] + [f"{pad}    {arg}," for arg in _split_args(inner)] + [pad + ")"]


def _nested(plan) -> list:
    """The plans of the models nested in `plan`, each after those it calls itself, each once."""
    found = []
    for child in plan.children:
        found += [p for p in _nested(child) if p not in found]
        if child not in found:
            found.append(child)
    return found


def _class(plan, nested: bool = False) -> list[str]:
    """One nn.Module class: the model's layers as attributes, `forward` in the model's order."""
    body = ["", "", f"class {plan.cls}(nn.Module):"]
    if nested:
        kind = plan.graph.class_name
        body += [f'    """The nested Keras {kind} model \'{plan.title}\' (a layer of the model below)."""', ""]
    elif plan.dtype == "float64":
        body.append('    """Its weights are float64 (the Keras model\'s dtype policy); `load()` keeps them so."""')
        body.append("")
    body += ["    def __init__(self):", "        super().__init__()"]
    for attr, src, init, comment in plan.modules:
        body += _fit(f"self.{attr} = {src}" + (f"  # {comment}" if comment else ""), 8)
        body += [out for line in init for out in _fit(line, 8)]
    args = ", ".join(t.var for t in plan.inputs)
    body += ["", f"    def forward(self, {args}):"]
    body += [out for line in plan.lines for out in _fit(line, 8)]
    outs = [t.var for t in plan.outputs]
    body.append(f"        return {', '.join(outs)}")
    return body


def source(plan) -> str:
    """The file `model.py`: the class, its forward, and `load()`."""
    uses = plan.ctx.uses
    header = [f'"""{plan.title}: a Keras {plan.graph.class_name} model ported to PyTorch by torchport {__version__}.',
              "", f"Ported from {plan.file_name} (saved by Keras {plan.ctx.keras_version}).",
              *plan.describe_io(),
              *(["The softmax/sigmoid output carries its logits (`out._keras_logits`): a cross-entropy loss uses",
                 "them, as TensorFlow's Keras does."] if "logits" in uses else []),
              "`load()` returns the model with its weights (weights.pt beside this file).",
              '"""', "import os", "", "import torch", "import torch.nn as nn"]
    if "F" in uses:
        header.append("import torch.nn.functional as F")
    if "kc" in uses:
        header += ["", "from torchport import keras_compat as kc  # Keras semantics torch has no exact twin for"]
    for module in sorted(plan.ctx.user_modules):
        header += ["", f"import {module}  # your converters file (copied beside this file): its torch modules"]
    body = [line for child in _nested(plan) for line in _class(child, True)] + _class(plan)
    footer = ["", "", 'def load(weights="weights.pt"):',
              '    """The model with its weights (a relative path resolves next to this file), in inference mode,',
              '    as Keras\' `load_model` returns it; `model.train()` before training it."""',
              "    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), weights)",
              '    with torch.device("meta"):  # no random initialisation: every tensor comes from the file',
              f"        model = {plan.cls}()",
              "    model.load_state_dict(torch.load(path, map_location=\"cpu\", weights_only=True), assign=True)",
              "    return model.eval()", ""]
    return "\n".join(header + body + footer)
