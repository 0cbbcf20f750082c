"""Keras' `model.summary()` table for a torch model whose layers carry Keras names."""
from __future__ import annotations

import io
import sys

import torch


def _shape(t: torch.Tensor, channels_last: bool) -> str:
    dims = list(t.shape[1:])
    if channels_last and len(dims) == 3:  # NCHW -> Keras' (None, H, W, C)
        dims = dims[1:] + dims[:1]
    return "(" + ", ".join(["None", *map(str, dims)]) + ")"


def summary_rows(model: torch.nn.Module, example: torch.Tensor, channels_last: bool = True):
    """(name, class, output shape, params) for each direct child, from one traced forward pass."""
    rows, hooks = [], []
    for name, layer in model.named_children():
        def hook(mod, inp, out, name=name):
            rows.append((name, type(mod).__name__, _shape(out, channels_last),
                         sum(p.numel() for p in mod.parameters())))
        hooks.append(layer.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return rows


def summary(model: torch.nn.Module, example: torch.Tensor, title: str = "sequential",
            channels_last: bool = True, file=None) -> None:
    rows = summary_rows(model, example, channels_last)
    kind = getattr(model, "keras_layer_types", {})
    table = [(f"{n} ({kind.get(n, c)})", s, f"{p:,}") for n, c, s, p in rows]
    w = [max(len(h), *(len(r[i]) for r in table)) + 2 for i, h in
         enumerate(("Layer (type)", "Output Shape", "Param #"))]
    width = sum(w) + 2
    out = io.StringIO()
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(f'Model: "{title}"', file=out)
    print("┏" + "━" * (width - 2) + "┓", file=out)
    print(f"┃ {'Layer (type)':<{w[0]}}{'Output Shape':<{w[1]}}{'Param #':>{w[2]}}┃", file=out)
    print("┡" + "━" * (width - 2) + "┩", file=out)
    for i, (a, b, c) in enumerate(table):
        print(f"│ {a:<{w[0]}}{b:<{w[1]}}{c:>{w[2]}}│", file=out)
        if i < len(table) - 1:
            print("├" + "─" * (width - 2) + "┤", file=out)
    print("└" + "─" * (width - 2) + "┘", file=out)
    print(f" Total params: {total:,}", file=out)
    print(f" Trainable params: {trainable:,}", file=out)
    print(f" Non-trainable params: {total - trainable:,}", file=out)
    (file or sys.stdout).write(out.getvalue())
