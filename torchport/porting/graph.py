"""A Keras model config -> the calls of its layers in an order that computes them (Sequential or Functional).

Both config dialects are read: Keras 3 (`inbound_nodes: [{"args": [...], "kwargs": {...}}]`, tensors as
`__keras_tensor__` with a `keras_history`) and tf.keras 2 (`inbound_nodes: [[[layer, node, tensor, kwargs]]]`).
Each call names the tensors it consumes as (layer, node index, tensor index), so shared layers (one layer
called twice) and layers with several outputs (an RNN's states) are plain cases.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ModelFileError, UnsupportedError
from .files import snake_case

Ref = tuple  # (layer name, node index, tensor index)

# Operations (not layers) a Functional graph records: Keras 3 names them `keras.src.ops.<family>.<Class>`
# (`x * 2.0` is `Multiply`, an Embedding's mask `NotEqual`); its legacy .h5 files drop the module, and an
# operation's config is then told from a layer's by having no `trainable` (in Keras 3's form of call).
# tf.keras 2 records TFOpLambda (`tf.math.multiply`) and SlicingOpLambda (`x[:, 0]`) layers, their
# TensorFlow function by name.
TF_OP_LAYERS = ("TFOpLambda", "SlicingOpLambda")
MODEL_CLASSES = ("Sequential", "Functional", "Model")


@dataclass
class Layer:
    name: str
    class_name: str
    config: dict
    storage_key: str = ""      # where a `.keras` file stores its variables: layers/<snake_case(class)>[_k]
    is_op: bool = False        # a Keras 3 operation recorded in a Functional graph (e.g. NotEqual), no Layer
    custom: bool = False       # registered under another name or defined outside Keras: only by a user converter
    registered_name: str = ""  # Keras' registered name of a custom class (`my_pkg>MyLayer`)
    nested: Graph | None = None  # a Sequential/Functional model used as a layer (a transfer-learning base)


@dataclass
class Call:
    layer: Layer
    node: int                   # which call of the layer (shared layers are called more than once)
    inputs: list[Ref]           # the tensors it consumes, in argument order
    args: list = field(default_factory=list)   # the raw arguments (constants of an operation)
    kwargs: dict = field(default_factory=dict)
    kwarg_inputs: list[Ref] = field(default_factory=list)  # tensors passed by keyword (Keras 3: a mask)
    kwarg_names: list[str] = field(default_factory=list)   # the keyword of each of them


@dataclass
class Graph:
    name: str
    class_name: str             # "Sequential" or "Functional"
    layers: list[Layer]         # every layer in the config's order (InputLayers included)
    inputs: list[Ref]
    outputs: list[Ref]
    calls: list[Call]           # in an order where every input is computed before it is used
    single_output: bool = True


def _need(cond, message: str) -> None:
    if not cond:
        raise ModelFileError(f"malformed model config: {message}")


def _dict(v, what: str) -> dict:
    _need(isinstance(v, dict), f"{what} is not an object")
    return v


def _list(v, what: str) -> list:
    _need(isinstance(v, list), f"{what} is not a list")
    return v


def _ref(v, what: str) -> Ref:
    ok = isinstance(v, (list, tuple)) and len(v) >= 3 and isinstance(v[0], str)
    _need(ok and all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in v[1:3]),
          f"{what} is not a tensor reference")
    return (v[0], v[1], v[2])


def _layer(entry, what: str) -> Layer:
    entry = _dict(entry, what)
    class_name = entry.get("class_name")
    _need(isinstance(class_name, str), f"{what} has no class_name")
    cfg = _dict(entry.get("config", {}), f"{what}'s config")
    name = entry.get("name", cfg.get("name"))
    _need(isinstance(name, str) and name, f"{what} has no name")
    module = entry.get("module") or "keras"
    registered = entry.get("registered_name")
    custom = registered not in (None, class_name) or not (isinstance(module, str) and module.split(".")[0] in (
        "keras", "tf_keras"))
    nodes = entry.get("inbound_nodes")
    keras3_node = isinstance(nodes, list) and bool(nodes) and isinstance(nodes[0], dict)
    is_op = (isinstance(module, str) and module.startswith("keras.src.ops")) or class_name in TF_OP_LAYERS or (
        keras3_node and "module" not in entry and "trainable" not in cfg and "layers" not in cfg)
    nested = None
    if class_name in MODEL_CLASSES and not custom and "layers" in cfg:
        nested = parse({"class_name": "Functional" if class_name == "Model" else class_name, "config": cfg,
                        "build_config": entry.get("build_config")})
    return Layer(name, class_name, cfg, is_op=is_op, custom=custom, nested=nested,
                 registered_name=registered if isinstance(registered, str) else "")


def _assign_storage_keys(container: list[Layer]) -> None:
    """Keras' rule for a `.keras` file: per class, the first layer is `layers/<snake>`, then `_1`, `_2`..."""
    used: dict[str, int] = {}
    for layer in container:
        stem = snake_case(layer.class_name)
        if stem in used:
            used[stem] += 1
            layer.storage_key = f"layers/{stem}_{used[stem]}"
        else:
            used[stem] = 0
            layer.storage_key = f"layers/{stem}"


# ---- Sequential --------------------------------------------------------------------------------------------

def _sequential(name: str, cfg: dict, model: dict) -> Graph:
    entries = _list(cfg.get("layers"), "Sequential layers")
    _need(entries, "a Sequential model without layers")
    layers = [_layer(e, f"layer {i}") for i, e in enumerate(entries)]
    if layers[0].class_name != "InputLayer":  # built without Input(): the shape comes from elsewhere
        shape = layers[0].config.get("batch_input_shape") or layers[0].config.get("batch_shape")
        if shape is None:
            build = model.get("build_config") or {}
            shape = build.get("input_shape") if isinstance(build, dict) else None
        if shape is None:
            raise UnsupportedError(f"model '{name}': saved before it was built, so the input shape is unknown "
                                   "(give the first layer an Input(shape=...) and save it again)")
        dtype = layers[0].config.get("dtype")
        layers.insert(0, Layer(f"{layers[0].name}_input", "InputLayer",
                               {"batch_shape": shape, "dtype": dtype if isinstance(dtype, str) else "float32"}))
    _assign_storage_keys([layer for layer in layers if layer.class_name != "InputLayer"])  # Sequential.layers
    calls = [Call(layer, 0, [(prev.name, 0, 0)]) for prev, layer in zip(layers, layers[1:], strict=False)]
    for c in calls:
        _need(c.layer.class_name != "InputLayer", "an InputLayer inside a Sequential model")
    return Graph(name, "Sequential", layers, [(layers[0].name, 0, 0)], [(layers[-1].name, 0, 0)], calls)


# ---- Functional ----------------------------------------------------------------------------------------------

def _tensors_in(obj, found: list[Ref]) -> None:
    """Collect the tensor references in a Keras 3 argument structure, in order."""
    if isinstance(obj, dict):
        if obj.get("class_name") == "__keras_tensor__":
            hist = _dict(obj.get("config"), "a tensor").get("keras_history")
            found.append(_ref(hist, "a tensor's keras_history"))
        else:
            for v in obj.values():
                _tensors_in(v, found)
    elif isinstance(obj, list):
        for v in obj:
            _tensors_in(v, found)


def _calls_of(layer: Layer, entry: dict) -> list[Call]:
    nodes = _list(entry.get("inbound_nodes", []), f"layer '{layer.name}' inbound_nodes")
    calls = []
    for i, node in enumerate(nodes):
        if isinstance(node, dict):  # Keras 3
            args = _list(node.get("args", []), f"layer '{layer.name}' args")
            kwargs = _dict(node.get("kwargs", {}), f"layer '{layer.name}' kwargs")
            refs: list[Ref] = []
            _tensors_in(args, refs)
            kw_refs: list[Ref] = []
            kw_names: list[str] = []
            for key in sorted(kwargs):  # Keras flattens keyword arguments in key order
                found: list[Ref] = []
                _tensors_in(kwargs[key], found)
                kw_refs += found
                kw_names += [key] * len(found)
            calls.append(Call(layer, i, refs, args, kwargs, kw_refs, kw_names))
        elif layer.class_name in TF_OP_LAYERS:
            calls.append(_tf_op_call(layer, i, _list(node, "an inbound node")))
        else:  # tf.keras 2: a list of [layer, node, tensor, kwargs]
            refs = [_ref(t, f"layer '{layer.name}' inbound tensor") for t in _list(node, "an inbound node")]
            kwargs = {}
            for t in node:
                if len(t) > 3 and isinstance(t[3], dict):
                    kwargs.update(t[3])
            # a nested model built on an Input has its own first node (input to output), which tf.keras 2
            # leaves out of the config but counts in the node indices that refer to its calls
            calls.append(Call(layer, i + (1 if layer.nested is not None else 0), refs, [], kwargs))
    return calls


TENSOR = {"class_name": "__keras_tensor__"}  # where an operation's call takes a tensor (inputs in order)


def _tf_op_call(layer: Layer, i: int, node: list) -> Call:
    """A tf.keras 2 TFOpLambda call: its first argument, a tensor (`[layer, node, tensor, kwargs]`) or a list
    of them (`tf.concat`), and keyword arguments that may hold tensors too (`tf.math.multiply`'s `y`). As a
    Keras 3 call: the tensors in order of use, marked where they appear."""
    def is_ref(v):
        return isinstance(v, list) and len(v) >= 3 and isinstance(v[0], str) and isinstance(v[1], int)

    if node and isinstance(node[0], str):  # one tensor
        first, kwargs = [node], node[3] if len(node) > 3 and isinstance(node[3], dict) else {}
        args = [TENSOR]
    else:  # a list of tensors, each carrying the call's keyword arguments
        first = node
        kwargs = next((t[3] for t in node if isinstance(t, list) and len(t) > 3 and isinstance(t[3], dict)), {})
        args = [[TENSOR] * len(node)]
    refs = [_ref(t, f"layer '{layer.name}' inbound tensor") for t in first]
    kwargs = dict(kwargs)
    for key in sorted(kwargs):
        if is_ref(kwargs[key]):
            refs.append(_ref(kwargs[key], f"layer '{layer.name}' argument {key}"))
            kwargs[key] = TENSOR
    return Call(layer, i, refs, args, kwargs)


def _has_tensor(v) -> bool:
    found: list[Ref] = []
    _tensors_in(v, found)
    return bool(found)


def _functional(name: str, cfg: dict) -> Graph:
    entries = _list(cfg.get("layers"), "Functional layers")
    layers, calls = [], []
    for i, entry in enumerate(entries):
        layer = _layer(entry, f"layer {i}")
        layers.append(layer)
        if layer.class_name != "InputLayer":
            calls += _calls_of(layer, entry)
    names = [layer.name for layer in layers]
    _need(len(set(names)) == len(names), "two layers share a name")
    _assign_storage_keys([layer for layer in layers if not layer.is_op])  # Functional.layers keeps InputLayers

    def refs(v, what) -> tuple[list[Ref], bool]:
        if isinstance(v, dict):
            raise UnsupportedError(f"model '{name}': {what} given as a dict; only lists are supported")
        v = _list(v, what)
        if v and isinstance(v[0], str):  # a single [name, node, tensor]
            return [_ref(v, what)], True
        return [_ref(r, what) for r in v], len(v) == 1

    inputs, _ = refs(cfg.get("input_layers"), "input_layers")
    outputs, single = refs(cfg.get("output_layers"), "output_layers")
    return Graph(name, "Functional", layers, inputs, outputs, _topological(calls, inputs, outputs), single)


def _topological(calls: list[Call], inputs: list[Ref], outputs: list[Ref]) -> list[Call]:
    """The calls the outputs need, each after the calls producing its inputs (Keras' own order when it is one)."""
    by_key = {(c.layer.name, c.node): c for c in calls}
    ready = {(r[0], r[1]) for r in inputs}
    order, state = [], {}

    def visit(key, depth=0):
        if key in ready or state.get(key) == "done":
            return
        _need(key in by_key, f"tensor of layer '{key[0]}' (node {key[1]}) is used but never computed")
        _need(state.get(key) != "active", f"a cycle through layer '{key[0]}'")
        _need(depth < 10000, "graph too deep")
        state[key] = "active"
        for ref in by_key[key].inputs + by_key[key].kwarg_inputs:
            visit((ref[0], ref[1]), depth + 1)
        state[key] = "done"
        order.append(by_key[key])

    for ref in outputs:
        visit((ref[0], ref[1]))
    return order


def parse(config: dict) -> Graph:
    """The model's graph from its config (`{"class_name": ..., "config": {...}}`)."""
    config = _dict(config, "the model config")
    kind = config.get("class_name")
    cfg = _dict(config.get("config"), "the model's config")
    name = cfg.get("name", "model")
    name = name if isinstance(name, str) and name else "model"
    if kind == "Sequential":
        return _sequential(name, cfg, config)
    if kind in ("Functional", "Model"):
        return _functional(name, cfg)
    raise UnsupportedError(f"model class '{kind}': only Sequential and Functional models are ported "
                           "(a subclassed model has no config to read its layers from)")
