"""Keras' `model.summary()` table for a torch model whose layers carry Keras names."""
from __future__ import annotations

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


def _readable_size(n_bytes: float) -> str:
    """Keras' readable_memory_size: 1024-based units with two decimals."""
    units = ["B", "KB", "MB", "GB", "TB"]
    i = 0
    while n_bytes >= 1024 and i < len(units) - 1:
        n_bytes /= 1024
        i += 1
    return f"{n_bytes:.2f} {units[i]}"


WIDTHS = (33, 24, 15)  # Keras 3's default columns (line length 98 minus borders) for a Sequential model


def summary(model: torch.nn.Module, example: torch.Tensor, title: str = "sequential",
            channels_last: bool = True, file=None) -> None:
    """Print Keras 3's summary table; the seed's `print(model.summary())` then prints `None` itself."""
    rows = summary_rows(model, example, channels_last)
    kind = getattr(model, "keras_layer_types", {})
    table = [(f"{n} ({kind.get(n, c)})", s, f"{p:,}") for n, c, s, p in rows]
    w = [max(wd, max(len(r[i]) for r in table) + 2) for i, wd in enumerate(WIDTHS)]

    def rule(left, mid, right, fill):
        return left + mid.join(fill * x for x in w) + right

    def line(a, b, c, bar):
        return f"{bar} {a:<{w[0] - 2}} {bar} {b:<{w[1] - 2}} {bar} {c:>{w[2] - 2}} {bar}"

    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    def size(n):
        return _readable_size(n * next(model.parameters()).element_size())

    out = [f'Model: "{title}"', rule("┏", "┳", "┓", "━"), line("Layer (type)", "Output Shape", "Param #", "┃"),
           rule("┡", "╇", "┩", "━")]
    for i, row in enumerate(table):
        out.append(line(*row, "│"))
        out.append(rule("├", "┼", "┤", "─") if i < len(table) - 1 else rule("└", "┴", "┘", "─"))
    out += [f" Total params: {total:,} ({size(total)})", f" Trainable params: {trainable:,} ({size(trainable)})",
            f" Non-trainable params: {total - trainable:,} ({size(total - trainable)})"]
    (file or sys.stdout).write("\n".join(out) + "\n")
