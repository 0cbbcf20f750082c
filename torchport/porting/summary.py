"""The planned model's `model.summary()` table, as Keras prints it (rows from the config and the shapes)."""
from __future__ import annotations

import math

from ..keras_compat.summary import format_summary
from .graph import Graph


def _shape_text(shapes: list[tuple]) -> str:
    texts = ["(" + ", ".join(["None", *("None" if d is None else str(d) for d in s)]) + ")" for s in shapes]
    return texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"


def _sequential_like(graph: Graph) -> bool:
    """Keras' test: every depth of the graph holds one node with at most one input, no layer called twice."""
    if graph.class_name == "Sequential":
        return True
    depth: dict[tuple, int] = {}
    producers = {(c.layer.name, c.node): c for c in graph.calls}
    for ref in graph.outputs:
        depth[(ref[0], ref[1])] = 0
    for call in reversed(graph.calls):  # consumers come after producers in the order
        d = depth.get((call.layer.name, call.node), 0)
        for ref in call.inputs + call.kwarg_inputs:
            key = (ref[0], ref[1])
            depth[key] = max(depth.get(key, 0), d + 1)
    by_depth: dict[int, list] = {}
    for key, d in depth.items():
        by_depth.setdefault(d, []).append(key)
    for keys in by_depth.values():
        if len(keys) > 1:
            return False
        call = producers.get(keys[0])
        if call is not None and len(call.inputs) + len(call.kwarg_inputs) > 1:
            return False
    nodes = [c.layer.name for c in graph.calls]
    return len(nodes) == len(set(nodes))


def _counts(plan, frozen: bool = False) -> tuple[int, int]:
    """(trainable, non-trainable) parameters of a plan's layers, nested models' included."""
    trainable = fixed = 0
    for layer in plan.graph.layers:
        conv = plan.converters.get(layer.name)
        if conv is None:
            continue
        off = frozen or layer.config.get("trainable", True) is False
        if layer.nested is not None:
            t, f = _counts(conv.sub, off)
            trainable, fixed = trainable + t, fixed + f
            continue
        for w in conv.weights():
            n = math.prod(w.shape)
            if w.trainable and not off:
                trainable += n
            else:
                fixed += n
    return trainable, fixed


def summary_text(plan) -> str:
    graph = plan.graph
    seq = _sequential_like(graph)
    rows = []
    trainable, frozen = _counts(plan)
    calls_of: dict[str, list] = {}
    for c in graph.calls:
        calls_of.setdefault(c.layer.name, []).append(c)
    for layer in graph.layers:
        if graph.class_name == "Sequential" and layer.class_name == "InputLayer":
            continue
        conv = plan.converters.get(layer.name)
        params = 0
        if conv is not None:
            params = sum(_counts(conv.sub)) if layer.nested is not None else \
                sum(math.prod(w.shape) for w in conv.weights())
        if layer.class_name == "InputLayer":
            t = next(t for ref, t in zip(graph.inputs, plan.inputs, strict=True) if ref[0] == layer.name)
            shape, connected = _shape_text([t.shape]), "-"
        else:
            calls = calls_of.get(layer.name, [])
            shapes = plan.shapes.get((layer.name, calls[-1].node)) if calls else None
            shape = _shape_text(shapes) if shapes else "?"
            refs = [r for c in calls for r in c.inputs + c.kwarg_inputs]
            connected = ", ".join(f"{r[0]}[{r[1]}][{r[2]}]" for r in refs) or "-"
        rows.append((layer.name, layer.class_name, shape, params, connected))
    size = 8 if plan.dtype == "float64" else 4
    return format_summary(graph.name, rows, trainable, frozen, size, sequential_like=seq)
