"""Plan a Keras model file into a torch module: converters per call, shapes, layouts, weights, source.

Everything is checked before anything is built: each layer's options, every array's shape against the
config (read from the file's metadata, not its data), the parameter count. The module itself is built
from the generated source on the meta device and receives the file's arrays, so what `load_keras`
returns is exactly the code `model.py` holds.
"""
from __future__ import annotations

import math
import os
import re
import types
from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import ModelFileError, UnsupportedError
from . import codegen
from .convert import KERAS, MAX_PARAMS, NCHW, Context, Converter, Out, Tensor, to_layout
from .files import KerasFile, read_array
from .graph import TF_OP_LAYERS, Graph, parse
from .layers import CONVERTERS, OPERATIONS
from .registry import USER

@dataclass
class Plan:
    graph: Graph
    ctx: Context
    cls: str
    title: str
    file_name: str
    inputs: list[Tensor] = field(default_factory=list)
    outputs: list[Tensor] = field(default_factory=list)
    modules: list = field(default_factory=list)          # (attr, constructor source, init lines, comment)
    lines: list[str] = field(default_factory=list)       # forward's body
    weighted: list = field(default_factory=list)         # (converter, expected Weights) of layers with arrays
    shapes: dict = field(default_factory=dict)           # (layer, node) -> [Keras output shapes]
    converters: dict = field(default_factory=dict)       # layer name -> its (first call's) converter
    state: dict = field(default_factory=dict)            # the state dict, numpy arrays
    source: str = ""
    summary: str = ""
    model_config: dict = field(default_factory=dict)     # the file's model config, as stored
    compile_config: dict | None = None                   # its compile settings, as stored
    lr_dtype: str | None = None                          # the saved optimizer's learning-rate variable dtype
    children: list = field(default_factory=list)         # the Plans of the nested models this one calls
    calls: list = field(default_factory=list)            # (layer, converter, its forward lines) in run order
    frozen: bool = False                                 # a nested model saved with trainable=False

    @property
    def dtype(self) -> str:
        return self.ctx.dtype

    def describe_io(self) -> list[str]:
        def one(t: Tensor, role: str) -> str:
            shape = ", ".join(["N", *("?" if d is None else str(d) for d in t.torch_shape())])
            kind = "images, channels first as torch takes them" if t.layout == NCHW else "as Keras takes it"
            if role == "Output":
                kind = "in Keras' layout"
            return f"{role} `{t.var}`: ({shape}) {t.dtype}, {kind}."
        return [one(t, "Input") for t in self.inputs] + [one(t, "Output") for t in self.outputs]

    def param_count(self) -> int:
        """Keras' count: every variable of every layer (BatchNormalization's moving statistics included)."""
        return sum(math.prod(w.shape) for _, expected in self.weighted for w in expected)

    def keras_arrays(self, state: dict | None = None) -> dict[str, list[tuple[str, list[np.ndarray]]]]:
        """Each weighted layer's arrays as Keras stores them, [(sub-object, [arrays])], from a torch state
        dict (default: the file's), keyed by the layer's name (`base/conv1` inside a nested model): what
        `writer` needs to save them back for Keras."""
        state = self.state if state is None else state
        out = {}
        for conv, expected in self.weighted:
            own = {k[len(conv.state_prefix):]: np.asarray(v.detach().cpu() if torch.is_tensor(v) else v)
                   for k, v in state.items() if k.startswith(conv.state_prefix)}
            slots: dict[str, list] = {}
            for w, a in zip(expected, conv.to_keras(own), strict=True):
                slots.setdefault(w.slot, []).append(np.ascontiguousarray(a))
            out[conv.key] = list(slots.items())
        return out

    def module(self) -> torch.nn.Module:
        """The generated class, built on the meta device and given the file's weights (CPU tensors)."""
        namespace = types.ModuleType(f"torchport_ported_{self.cls}")
        exec(compile(self.source, f"<ported {self.file_name}>", "exec"), namespace.__dict__)  # our own source
        with torch.device("meta"):
            model = getattr(namespace, self.cls)()
        model.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in self.state.items()},
                              assign=True)
        return model.eval()


def _all_layers(graph: Graph):
    """Every layer of the graph and of the models nested in it."""
    for layer in graph.layers:
        yield layer
        if layer.nested is not None:
            yield from _all_layers(layer.nested)


def _model_dtype(graph: Graph) -> str:
    seen = set()
    for layer in _all_layers(graph):
        if layer.class_name == "InputLayer" or layer.is_op or layer.nested is not None:
            continue
        d = layer.config.get("dtype")
        if isinstance(d, dict):
            d = (d.get("config") or {}).get("name")
        if isinstance(d, str):
            seen.add(d)
    if not seen <= {"float32", "float64"}:
        bad = sorted(seen - {"float32", "float64"})
        raise UnsupportedError(f"dtype policy {', '.join(map(repr, bad))}: only float32 and float64 models are ported")
    if len(seen) > 1:
        raise UnsupportedError("layers with different dtype policies (float32 and float64) are not supported")
    return seen.pop() if seen else "float32"


def _input_tensor(layer, var: str, channels_first_model: bool) -> Tensor:
    cfg = layer.config
    shape = cfg.get("batch_shape", cfg.get("batch_input_shape"))
    if shape is None and isinstance(cfg.get("shape"), list):
        shape = [None, *cfg["shape"]]
    if not isinstance(shape, list) or len(shape) < 2 or not all(
            d is None or (isinstance(d, int) and not isinstance(d, bool) and 1 <= d <= 2**31 - 1) for d in shape[1:]):
        raise ModelFileError(f"input '{layer.name}': batch_shape {shape!r} is not a shape")
    dtype = cfg.get("dtype", "float32")
    if isinstance(dtype, dict):
        dtype = (dtype.get("config") or {}).get("name", "float32")
    if cfg.get("sparse") or cfg.get("ragged"):
        raise UnsupportedError(f"input '{layer.name}': sparse or ragged inputs are not supported")
    shape = tuple(shape[1:])
    layout = NCHW if (len(shape) == 3 and not channels_first_model) else KERAS
    return Tensor(var, shape, layout, None, dtype if isinstance(dtype, str) else "float32")


def operation_name(layer) -> str:
    """The name an operation is registered under: Keras 3's class, or tf.keras 2's `tf.<function>`."""
    if layer.class_name in TF_OP_LAYERS:
        return f"tf.{layer.config.get('function')}"
    return layer.class_name


def _refuse_unknown(layer) -> None:
    if layer.class_name == "Lambda":
        raise UnsupportedError(f"layer '{layer.name}' (Lambda): a Lambda layer stores marshalled Python bytecode; "
                               "torchport never unmarshals or runs it (rewrite it with built-in layers)")
    if layer.class_name in ("Sequential", "Functional", "Model"):
        raise UnsupportedError(f"layer '{layer.name}' ({layer.class_name}): a nested model of a custom class is "
                               "not supported")
    if layer.is_op:  # a tensor operation recorded in a Functional graph (Keras' masks of merges too)
        raise UnsupportedError(f"layer '{layer.name}': the operation {operation_name(layer)!r} is not supported "
                               "(README: Recorded operations lists those that are)")
    if layer.custom:
        raise UnsupportedError(f"layer '{layer.name}' ({layer.registered_name or layer.class_name}): a custom class; "
                               "say how it ports with `--converters FILE` (README: Your own layers)")
    raise UnsupportedError(f"layer '{layer.name}' ({layer.class_name}): this layer class is not supported")


class Nested(Converter):
    """A Sequential/Functional model used as a layer: its own class in model.py, called under its Keras name."""

    n_inputs = (1, 64)

    def __init__(self, sub: Plan, *args):
        self.sub = sub
        super().__init__(*args)

    def setup(self):
        if len(self.inputs) != len(self.sub.inputs):
            self.fail(f"called on {len(self.inputs)} tensor(s); the model takes {len(self.sub.inputs)}")
        for t, want in zip(self.inputs, self.sub.inputs, strict=True):
            if len(t.shape) != len(want.shape) or any(a is not None and b is not None and a != b
                                                      for a, b in zip(t.shape, want.shape, strict=True)):
                self.bad(f"called on shape {t.shape}; its input takes {want.shape}")

    def wanted_layout(self, i, t):
        return self.sub.inputs[i].layout

    def outputs(self):
        return [Out(t.shape, t.layout, False, t.dtype) for t in self.sub.outputs]

    def module(self):
        return f"{self.sub.cls}()"

    def note(self):
        return f"Keras model '{self.name}'"

    def forward(self, ins, outs):
        return [f"{', '.join(outs)} = self.{self.attr}({', '.join(ins)})"]


def plan_model(kfile: KerasFile, dtype: str | None = None) -> Plan:
    """`dtype` overrides the file's dtype policy (float64 parity checks of a float32 file)."""
    graph = parse(kfile.config)
    ctx = Context(dtype or _model_dtype(graph), kfile.keras_version)
    return _plan_graph(graph, ctx, os.path.basename(kfile.path), set(), "", ())


def _plan_graph(graph: Graph, ctx: Context, file_name: str, classes: set, prefix: str, path: tuple,
                frozen: bool = False) -> Plan:
    """One model's plan; a nested model's own plan is a child, its state under `prefix` (`base.`), its
    layers' Keras names under `path` (("base",))."""
    names = codegen.Names()
    cls = codegen.class_name(graph.name)
    base, i = cls, 1
    while cls in classes:  # two nested models of the same name (Keras names them per model)
        cls, i = f"{base}{i}", i + 1
    classes.add(cls)
    plan = Plan(graph, ctx, cls, graph.name, file_name, frozen=frozen)
    channels_first = any(layer.config.get("data_format") == "channels_first" for layer in graph.layers)
    chain = _is_chain(graph)
    layer_by_name = {layer.name: layer for layer in graph.layers}
    tensors: dict[tuple, Tensor] = {}
    for ref in graph.inputs:
        layer = layer_by_name.get(ref[0])
        if layer is None or layer.class_name != "InputLayer":
            raise ModelFileError(f"input '{ref[0]}' is not an InputLayer of the model")
        t = _input_tensor(layer, "x" if chain else names.make(layer.name, "input"), channels_first)
        tensors[ref] = t
        plan.inputs.append(t)

    live = {(r[0], r[1]) for r in graph.outputs}  # what the outputs need, masks passed by keyword aside
    for c in reversed(graph.calls):  # (Keras records them as operations; the port carries masks itself)
        if (c.layer.name, c.node) in live or not c.layer.is_op:
            by_keyword = zip(c.kwarg_inputs, c.kwarg_names, strict=True)
            live |= {(r[0], r[1]) for r in c.inputs} | {
                (r[0], r[1]) for r, n in by_keyword if n not in ("mask", "training")}
    outputs = {(r[0], r[1]) for r in graph.outputs}
    attrs: dict[str, str] = {}
    subs: dict[str, Plan] = {}
    converted: dict[tuple, Tensor] = {}
    mask_vars: set[str] = set()
    for call in graph.calls:
        layer = call.layer
        cls = OPERATIONS.get(operation_name(layer)) if layer.is_op else CONVERTERS.get(layer.class_name)
        if layer.custom:  # a class of the user's: only their own converter ports it
            cls = USER.get(layer.registered_name) or USER.get(layer.class_name)
            if cls is None:
                _refuse_unknown(layer)
            ctx.user_modules.add(cls.__module__)
        if layer.nested is None and cls is None:
            _refuse_unknown(layer)
        # tf.keras 2 names its operations after the function (`tf.math.multiply`): the variable is `multiply`
        readable = re.sub(r"^tf\.(__operators__\.|math\.|nn\.|linalg\.|compat\.v1\.)?", "", layer.name) \
            if layer.class_name in TF_OP_LAYERS else layer.name
        attr = attrs.get(layer.name) or names.make(readable)
        attrs[layer.name] = attr
        ins = []
        for ref in call.inputs:
            if ref not in tensors:
                raise ModelFileError(f"layer '{layer.name}' uses output {ref[2]} of '{ref[0]}', which has none")
            t = tensors[ref]
            if t.mask is not None and (layer.nested is not None or not (cls.takes_mask or cls.passes_mask)):
                t = Tensor(t.var, t.shape, t.layout, None, t.dtype)  # Keras drops the mask here too
            ins.append(t)
        kwargs = dict(call.kwargs)
        extra = [k for k in dict.fromkeys(call.kwarg_names) if k not in ("mask", "training")]
        if extra and (layer.nested is not None or not set(extra) <= set(cls.tensor_kwargs)):
            raise UnsupportedError(f"layer '{layer.name}' ({layer.class_name}): called with tensor argument(s) "
                                   f"{', '.join(extra)}; not supported")
        for name, ref in zip(call.kwarg_names, call.kwarg_inputs, strict=True):  # e.g. attention_mask=
            if name in extra:
                if ref not in tensors:
                    raise ModelFileError(f"layer '{layer.name}' uses output {ref[2]} of '{ref[0]}', which has none")
                kwargs[name] = len(ins)  # its position among the converter's inputs
                ins.append(tensors[ref])
        args = (layer, attr, ins, ctx, (layer.name, call.node) in outputs, call.args, kwargs)
        if layer.nested is not None:  # a model used as a layer: planned once, however often it is called
            if layer.name not in subs:
                for inner in layer.nested.layers:  # its layers' variables sit inside its own storage group
                    inner.storage_key = f"{layer.storage_key}/{inner.storage_key}"
                froze = frozen or layer.config.get("trainable") is False
                subs[layer.name] = _plan_graph(layer.nested, ctx, file_name, classes, f"{prefix}{attr}.",
                                               (*path, layer.name), froze)
                plan.children.append(subs[layer.name])
                plan.weighted += subs[layer.name].weighted
            conv: Converter = Nested(subs[layer.name], *args)
        else:
            conv = cls(*args)
        conv.state_prefix, conv.path = f"{prefix}{attr}.", (*path, layer.name)
        if layer.is_op and (layer.name, call.node) not in live:  # e.g. a mask Keras recorded but nothing reads
            outs = conv.outputs()  # known (an unread operation may feed another), never computed
            plan.shapes[(layer.name, call.node)] = [o.shape for o in outs]
            for i, o in enumerate(outs):
                tensors[(layer.name, call.node, i)] = Tensor(f"<{layer.name}>", o.shape, o.layout, None,
                                                             o.dtype or ctx.dtype)
            continue
        layout_lines = []
        for i, t in enumerate(conv.inputs):  # bring each input to the layout the layer wants
            want = conv.wanted_layout(i, t)
            if want is not None and t.layout != want and t.rank == 4:
                key = (t.var, want)
                if key not in converted:
                    var = t.var if chain else names.make(f"{t.var}_{'nchw' if want == NCHW else 'nhwc'}")
                    layout_lines.append(f"{var} = {to_layout(t.var, 4, t.layout, want)}  # "
                                        + ("Keras' (N, H, W, C) -> torch's (N, C, H, W)" if want == NCHW
                                           else "torch's (N, C, H, W) -> Keras' (N, H, W, C)"))
                    plan.lines.append(layout_lines[-1])
                    converted[key] = Tensor(var, t.shape, want, t.mask, t.dtype)
                conv.inputs[i] = converted[key]
        outs = conv.outputs()
        base = "x" if chain else names.make(f"{attr}_{call.node}") if call.node else attr
        out_vars = [base] + [names.make(f"{base}_{i}") for i in range(1, len(outs))]
        if chain and len(outs) > 1:
            out_vars = [names.make(f"{attr}_{i}") if i else "x" for i in range(len(outs))]
        first_mask = next((t.mask for t in conv.inputs if t.mask is not None), None)
        masks = []
        for i, o in enumerate(outs):
            if not o.masked:
                masks.append(None)
            elif first_mask is not None and len([t for t in conv.inputs if t.mask]) == 1:
                masks.append(first_mask)
            else:
                masks.append("mask" if chain else names.make(f"{out_vars[i]}_mask"))
        conv.out_masks, conv.temp = masks, names.make
        mask_vars.update(m for m in masks if m is not None)
        produced = conv.forward([t.var for t in conv.inputs], out_vars)
        plan.calls.append((layer, conv, [*layout_lines, *produced]))
        plan.lines += produced
        if layer.name not in plan.converters:
            plan.converters[layer.name] = conv
            src = conv.module()
            expected = conv.weights()
            if src is not None:
                comment = f"Keras layer '{layer.name}'" if attr != layer.name else conv.note()
                if isinstance(conv, Nested):
                    comment = conv.note()
                init = conv.init_lines()
                if layer.config.get("trainable") is False and not frozen and (expected or layer.nested):
                    init = [*init, f"self.{attr}.requires_grad_(False)  # trainable=False in Keras: frozen"]
                plan.modules.append((attr, src, init, comment))
            if expected:
                plan.weighted.append((conv, expected))
            for key, value in conv.constants().items():  # floats in the model's dtype, as its weights
                floating = np.float64 if ctx.dtype == "float64" else np.float32
                plan.state[f"{conv.state_prefix}{key}"] = np.ascontiguousarray(
                    value, floating if np.asarray(value).dtype.kind == "f" else None)
        plan.shapes[(layer.name, call.node)] = [o.shape for o in outs]
        for i, (o, var) in enumerate(zip(outs, out_vars, strict=True)):
            tensors[(layer.name, call.node, i)] = Tensor(var, o.shape, o.layout, masks[i], o.dtype or ctx.dtype)

    for ref in graph.outputs:  # Keras' layout for what the model returns (a nested model: the layout it has)
        if ref not in tensors:
            raise ModelFileError(f"output '{ref[0]}' (node {ref[1]}, tensor {ref[2]}) is never computed")
        t = tensors[ref]
        if t.layout != KERAS and t.rank == 4 and not path:
            var = t.var if chain else names.make(f"{t.var}_nhwc")
            plan.lines.append(f"{var} = {to_layout(t.var, 4, t.layout, KERAS)}  # Keras' (N, H, W, C) layout")
            t = Tensor(var, t.shape, KERAS, t.mask, t.dtype)
        plan.outputs.append(t)
    plan.lines = _without_unread(plan.lines, mask_vars, {t.var for t in plan.outputs})
    final, by_value = set(plan.lines), {line.partition(" = ")[2]: line for line in plan.lines}
    plan.calls = [(layer, conv, [line if line in final else by_value[line.partition(" = ")[2]] for line in lines
                                 if line in final or line.partition(" = ")[2] in by_value])
                  for layer, conv, lines in plan.calls]  # as model.py has them (unread masks dropped)
    if not plan.lines:
        plan.lines.append("pass")
    return plan


def _without_unread(lines: list[str], variables: set[str], returned: frozenset = frozenset()) -> list[str]:
    """The lines, less each assignment of one of `variables` (masks) that no later line reads before it is
    assigned again (an Embedding's mask that only a Flatten or a Conv1D follows: Keras drops it there), and
    with `_` for the unread names of a flat tuple assignment (an RNN's states nothing uses)."""
    def parts(line):
        target, sep, rest = line.split("  # ")[0].partition(" = ")
        return (target.strip(), rest) if sep else (None, line)

    def read_later(name, i):
        if name in returned:
            return True
        for later in lines[i + 1:]:
            t, rest = parts(later)
            if re.search(rf"\b{re.escape(name)}\b", rest):
                return True
            if t == name or (t and "(" not in t and name in [n.strip() for n in t.split(",")]):
                return False
        return False

    kept = []
    for i, line in enumerate(lines):
        target, rest = parts(line)
        if target in variables and not read_later(target, i):
            continue
        if target and "," in target and "(" not in target:
            names = [n.strip() for n in target.split(",")]
            used = [n if read_later(n, i) else "_" for n in names]
            if used != names:
                line = line.replace(f"{target} = ", f"{', '.join(used)} = ", 1)
        kept.append(line)
    return kept


def _is_chain(graph: Graph) -> bool:
    """A model whose calls each take the previous one's output: its forward reads `x = ...` throughout."""
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        return False
    prev = (graph.inputs[0][0], graph.inputs[0][1])
    for call in graph.calls:
        if call.layer.is_op or len(call.inputs) != 1 or (call.inputs[0][0], call.inputs[0][1]) != prev \
                or call.inputs[0][2] != 0:
            return False
        prev = (call.layer.name, call.node)
    return (graph.outputs[0][0], graph.outputs[0][1]) == prev and graph.outputs[0][2] == 0


def load_weights(plan: Plan, kfile: KerasFile) -> None:
    """Check every layer's arrays against the config (shapes from metadata), then read them into the plan."""
    found = []
    total = 0
    for conv, expected in plan.weighted:
        slots = list(dict.fromkeys(w.slot for w in expected))
        datasets = kfile.layer_arrays(conv.layer.storage_key, conv.path, slots)
        want = [w.shape for w in expected]
        have = [tuple(int(d) for d in ds.shape) for ds in datasets]
        if have != want:
            raise ModelFileError(f"layer '{conv.name}' ({conv.layer.class_name}): the file holds arrays of shapes "
                                 f"{have}, the config needs {want}")
        total += sum(math.prod(s) for s in want)
        if total > MAX_PARAMS:
            raise ModelFileError(f"more than {MAX_PARAMS:,} parameters; refused")
        found.append((conv, datasets))
    np_dtype = np.float64 if plan.dtype == "float64" else np.float32
    for conv, datasets in found:
        arrays = [read_array(ds, f"layer '{conv.name}'").astype(np_dtype, copy=False) for ds in datasets]
        if not all(np.isfinite(a).all() for a in arrays):
            raise ModelFileError(f"layer '{conv.name}': the weights hold NaN or infinite values")
        for key, value in conv.to_torch(arrays).items():
            plan.state[f"{conv.state_prefix}{key}"] = np.ascontiguousarray(value)
