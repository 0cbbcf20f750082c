"""Keras 3's `model.summary()` table, drawn with rich exactly as `keras.utils.summary_utils` draws it.

The width is Keras' when printing where no terminal is attached (80 columns, less 4): the text is then the
same wherever it is written. `rows` are (name, class, output shape, params, connected-to); the fourth
column appears for a Functional model that is not a plain chain, as in Keras.
"""
from __future__ import annotations

import sys

import torch

CONSOLE_WIDTH = 80  # shutil.get_terminal_size()'s fallback, which Keras sees without a terminal


def readable_size(n_bytes: float) -> str:
    """Keras' readable_memory_size: 1024-based units with two decimals."""
    for unit in ["B", "KB", "MB", "GB", "TB", "PB"]:
        if n_bytes / 1024 < 1:
            return f"{n_bytes:.2f} {unit}"
        n_bytes /= 1024
    return f"{n_bytes:.2f} PB"


def format_summary(title: str, rows, trainable: int, non_trainable: int, bytes_per_param: int,
                   sequential_like: bool = True) -> str:
    import rich.console
    import rich.markup
    import rich.table

    if sequential_like:
        line_length, positions = 88, [0.45, 0.80, 1.0]
        header, align = ["Layer (type)", "Output Shape", "Param #"], ["left", "left", "right"]
    else:
        line_length, positions = 108, [0.3, 0.56, 0.74, 1.0]
        header = ["Layer (type)", "Output Shape", "Param #", "Connected to"]
        align = ["left", "left", "right", "left"]
    line_length = min(line_length, CONSOLE_WIDTH - 4)
    widths, current = [], 0
    for pos in positions:
        widths.append(int(pos * line_length) - current)
        current += widths[-1]
    columns = [rich.table.Column(h, justify=a, width=w) for h, a, w in zip(header, align, widths, strict=True)]
    table = rich.table.Table(*columns, width=line_length, show_lines=True)
    for name, cls, shape, params, connected in rows:
        cells = [f"{rich.markup.escape(name)} ({rich.markup.escape(cls)})", shape, f"{params:,}"]
        table.add_row(*(cells if sequential_like else cells + [connected]))
    console = rich.console.Console(highlight=False, force_terminal=False, color_system=None, width=CONSOLE_WIDTH)
    console.begin_capture()
    console.print(f'[bold]Model: "{rich.markup.escape(title)}"[/]')
    console.print(table)
    total = trainable + non_trainable
    for label, n in (("Total", total), ("Trainable", trainable), ("Non-trainable", non_trainable)):
        console.print(f"[bold] {label} params: [/]{n:,} ({readable_size(n * bytes_per_param)})")
    return console.end_capture()


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
    """Print Keras 3's summary table for a hand-written port whose children carry Keras names (and
    `keras_layer_types` their Keras classes); the seed's `print(model.summary())` then prints `None`."""
    kind = getattr(model, "keras_layer_types", {})
    rows = [(n, kind.get(n, c), s, p, "") for n, c, s, p in summary_rows(model, example, channels_last)]
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    text = format_summary(title, rows, trainable, frozen, next(model.parameters()).element_size())
    (file or sys.stdout).write(text)
