"""The unit of the porter: one converter per Keras layer class.

A converter reads its layer's config (refusing options it does not port, by name), infers its output
shapes from its inputs', names the arrays it expects in Keras' variable order with their shapes (checked
against the file before anything is read or built), writes its torch module's constructor and its lines
of `forward`, and maps weights both ways (Keras -> torch for `port`, torch -> Keras for `fit`'s outputs).

Images stay channels-first inside a ported model (torch's NCHW, what convolutions want); every other
tensor keeps Keras' layout. A tensor's `layout` says which: `NCHW` marks a Keras channels-last image held
as (N, C, H, W). A converter states the layout it wants and the builder inserts the permute.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import ModelFileError, UnsupportedError
from ..keras_compat.casts import f32

KERAS, NCHW = "keras", "nchw"
MAX_DIM = 2**31 - 1          # a dimension beyond this is an absurd config, refused before any allocation
MAX_PARAMS = 2**34           # 16 G parameters: no file that fits a disk holds more

@dataclass
class Tensor:
    """A value in the generated `forward`: its variable, its Keras shape (batch excluded; None where the
    config leaves a dimension open), how torch holds it, and the variable holding its Keras mask."""

    var: str
    shape: tuple
    layout: str = KERAS
    mask: str | None = None
    dtype: str = "float32"

    @property
    def rank(self) -> int:  # Keras rank, batch included
        return len(self.shape) + 1

    def torch_shape(self) -> tuple:
        """The shape torch sees (batch excluded)."""
        if self.layout == NCHW:
            return (self.shape[-1], *self.shape[:-1])
        return self.shape


@dataclass
class Out:
    """An output of a converter: its Keras shape, layout and whether it carries a mask."""

    shape: tuple
    layout: str = KERAS
    masked: bool = False
    dtype: str | None = None


@dataclass
class Weight:
    name: str            # Keras' variable name (kernel, bias, gamma, ...)
    shape: tuple         # Keras' shape
    slot: str = ""       # the sub-object holding it in a .keras file ("cell", "forward_layer/cell", ...)
    trainable: bool = True


@dataclass
class Context:
    """What converters share: the model's dtype, the Keras version that wrote the file, the imports used."""

    dtype: str = "float32"
    keras_version: str = "3"
    uses: set = field(default_factory=set)   # "F", "kc", "logits"
    user_modules: set = field(default_factory=set)  # the modules of the user converters the model needs
    # where TensorFlow itself is less precise than float64 in a float64 model (float64 parity then holds
    # to float32's tolerance, and the table says why)
    caveats: set = field(default_factory=set)

    @property
    def keras2(self) -> bool:
        return self.keras_version.startswith("2.")

    def keras_float(self, value: float) -> float:
        """A Python-float hyperparameter as Keras' TensorFlow backend applies it where it becomes a tensor
        or an op attribute first: float32 (`keras_compat.casts`). A float64 model then sees 0.30000001192...
        for 0.3; a float32 model the same float32 value either way."""
        return f32(value) if self.dtype == "float64" else value


def torch_dim(axis: int, rank: int, layout: str) -> int:
    """A Keras axis (negative allowed, batch = 0) as the torch dimension of a tensor held in `layout`."""
    a = axis % rank
    if layout == NCHW and rank == 4:
        return {0: 0, 1: 2, 2: 3, 3: 1}[a]
    return a


def to_layout(var: str, rank: int, src: str, dst: str) -> str | None:
    """The expression moving a rank-4 tensor between torch's NCHW and Keras' NHWC, or None if none is needed."""
    if src == dst or rank != 4:
        return None
    return f"{var}.permute(0, 3, 1, 2)" if dst == NCHW else f"{var}.permute(0, 2, 3, 1)"


class Converter:
    """Base: subclasses set what differs. `self.cfg` is the layer's config, `self.inputs` its input Tensors."""

    keras_classes: tuple = ()
    takes_mask = False         # reads its input's mask (RNNs, merges, GlobalAveragePooling1D); else it is dropped
    passes_mask = False        # Keras' supports_masking: the input's mask flows through unchanged
    n_inputs: tuple = (1, 1)   # (min, max) inputs
    tensor_kwargs: tuple = ()  # keywords a call may pass tensors by (after the positional inputs, in `ins`)

    def __init__(self, layer, attr: str, inputs: list[Tensor], ctx: Context, is_output: bool = False,
                 call_args: list | None = None, call_kwargs: dict | None = None):
        self.layer, self.cfg, self.attr, self.inputs, self.ctx = layer, layer.config, attr, inputs, ctx
        self.is_output = is_output
        self.call_args = list(call_args or [])
        self.call_kwargs = dict(call_kwargs or {})
        # where it sits: its state-dict prefix and its Keras names from the outer model (set by the builder
        # for a layer of a nested model: `base.conv1.`, ("base", "conv1"))
        self.state_prefix, self.path = f"{attr}.", (layer.name,)
        self.out_masks: list[str | None] = []  # set by the builder before `forward`: the outputs' mask variables
        self.temp = lambda wanted: wanted  # the builder's name maker: a fresh local variable for `forward`
        lo, hi = self.n_inputs
        if not lo <= len(inputs) <= hi:
            self.fail(f"takes {lo}{'' if lo == hi else f' to {hi}'} input(s), got {len(inputs)}")
        self.check_common()
        self.setup()

    # -- what subclasses define ------------------------------------------------------------------------------
    def setup(self) -> None:
        """Read and check the config; compute what the other methods need."""

    def wanted_layout(self, i: int, t: Tensor) -> str | None:
        """The layout input `i` must be in (None: any)."""
        return None

    def outputs(self) -> list[Out]:
        t = self.inputs[0]
        return [Out(t.shape, t.layout, self.passes_mask and t.mask is not None)]

    def weights(self) -> list[Weight]:
        return []

    def module(self) -> str | None:
        """The constructor of `self.<attr>`, or None for a layer that is a function of its inputs."""
        return None

    def init_lines(self) -> list[str]:
        return []

    def note(self) -> str | None:
        """A comment for the module's line: why it is torchport's layer rather than torch's."""
        return None

    def forward(self, ins: list[str], outs: list[str]) -> list[str]:
        raise NotImplementedError

    def constants(self) -> dict[str, np.ndarray]:
        """Buffers the module holds that are no Keras variable (a mean given in the config): state entries."""
        return {}

    def to_torch(self, arrays: list[np.ndarray]) -> dict[str, np.ndarray]:
        """Keras arrays (in `weights()` order) -> this module's state-dict entries (names relative to it)."""
        return {}

    def to_keras(self, state: dict[str, np.ndarray]) -> list[np.ndarray]:
        """This module's state-dict entries -> Keras arrays in `weights()` order (for saving back)."""
        return []

    # -- shared helpers ----------------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.layer.name

    @property
    def key(self) -> str:
        """The layer's name from the outer model (`base/conv1`): what its weights are saved under."""
        return "/".join(self.path)

    def fail(self, what: str):
        raise UnsupportedError(f"layer '{self.name}' ({self.layer.class_name}): {what}")

    def bad(self, what: str):
        raise ModelFileError(f"layer '{self.name}' ({self.layer.class_name}): {what}")

    def opt(self, key: str, default=None):
        return self.cfg.get(key, default)

    def int_opt(self, key: str, default=None, minimum: int = 1) -> int:
        v = self.cfg.get(key, default)
        if not isinstance(v, int) or isinstance(v, bool) or not minimum <= v <= MAX_DIM:
            self.bad(f"{key} = {v!r} is not a whole number in [{minimum}, {MAX_DIM}]")
        return v

    def float_opt(self, key: str, default=None) -> float:
        v = self.cfg.get(key, default)
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
            self.bad(f"{key} = {v!r} is not a finite number")
        return float(v)

    def tuple_opt(self, key: str, n: int, default=None, minimum: int = 1) -> tuple:
        v = self.cfg.get(key, default)
        if isinstance(v, int) and not isinstance(v, bool):
            v = (v,) * n
        if not isinstance(v, (list, tuple)) or len(v) != n or not all(
                isinstance(i, int) and not isinstance(i, bool) and minimum <= i <= MAX_DIM for i in v):
            self.bad(f"{key} = {v!r} is not {n} whole number(s) >= {minimum}")
        return tuple(v)

    def choice(self, key: str, allowed, default=None):
        v = self.cfg.get(key, default)
        if v not in allowed:
            self.fail(f"{key}={v!r} is not supported (supported: {', '.join(map(repr, allowed))})")
        return v

    def check_common(self) -> None:
        """Options no converter ports, whatever the layer."""
        if self.cfg.get("activity_regularizer") not in (None, {}):
            pass  # training-time only; `fit` refuses regularizers, the forward pass is unaffected
        dtype = self.cfg.get("dtype")
        if isinstance(dtype, dict):
            dtype = (dtype.get("config") or {}).get("name")
        if dtype not in (None, "float32", "float64") and self.layer.class_name not in ("InputLayer", "Embedding"):
            self.fail(f"dtype policy {dtype!r} is not supported (float32 and float64 are)")

    def feature_dim(self, t: Tensor | None = None, axis: int = -1) -> int:
        """The size of Keras axis `axis` of an input, which must be known."""
        t = t or self.inputs[0]
        v = t.shape[axis]
        if v is None:
            self.fail(f"input dimension {axis} is unknown (None); a ported layer needs it fixed")
        return v

    def act(self, name, expr: str, layout: str = KERAS, rank: int = 2) -> str:
        """`expr` through the Keras activation `name` (a Dense/Conv `activation=` or an Activation layer)."""
        return activation_code(self, name, expr, layout, rank)


def activation_code(conv: Converter, name, expr: str, layout: str, rank: int) -> str:
    ctx = conv.ctx
    if isinstance(name, dict):  # Keras 3 may serialize a built-in activation as an object
        name = name.get("config") if name.get("class_name") == "function" else name.get("class_name")
    if name in (None, "linear", "Linear"):
        return expr
    if name == "gelu":
        ctx.caveats.add("TensorFlow's float64 gelu (erfc) is accurate to about 1e-8")
    simple = {"relu": "F.relu({})", "elu": "F.elu({})", "selu": "F.selu({})", "gelu": "F.gelu({})",
              "swish": "F.silu({})", "silu": "F.silu({})", "softplus": "F.softplus({})",
              "softsign": "F.softsign({})", "relu6": "F.relu6({})", "leaky_relu": "F.leaky_relu({}, 0.2)",
              "exponential": "torch.exp({})", "tanh": "torch.tanh({})", "mish": "F.mish({})",
              "hard_silu": "F.hardswish({})", "hard_swish": "F.hardswish({})"}
    if name == "hard_sigmoid" and not ctx.keras2:  # Keras 3: relu6(x + 3) / 6, torch's hardsigmoid
        simple["hard_sigmoid"] = "F.hardsigmoid({})"
    if name == "leaky_relu":  # TensorFlow's leaky_relu holds its slope as a float32 attribute
        simple["leaky_relu"] = f"F.leaky_relu({{}}, {ctx.keras_float(0.2)!r})"
    if name in simple:
        if simple[name].startswith("F."):
            ctx.uses.add("F")
        return simple[name].format(expr)
    if name == "sigmoid":
        if conv.is_output:  # the loss recovers the logits, as TensorFlow's Keras does
            ctx.uses.update({"kc", "logits"})
            return f"kc.sigmoid({expr})"
        return f"torch.sigmoid({expr})"
    if name in ("softmax", "log_softmax"):
        dim = torch_dim(-1, rank, layout)
        dim = -1 if dim == rank - 1 else dim
        if name == "log_softmax":
            return f"torch.log_softmax({expr}, dim={dim})"
        if conv.is_output:
            ctx.uses.update({"kc", "logits"})
            return f"kc.softmax({expr}, dim={dim})"
        return f"torch.softmax({expr}, dim={dim})"
    conv.fail(f"activation {name!r} is not supported")


def check_params(n: int, where: str) -> None:
    if n > MAX_PARAMS:
        raise ModelFileError(f"{where}: {n:,} parameters; refused")
