"""Converters of the tensor operations a Functional graph records between layers: `x * 2.0 + 1.0`,
`keras.ops.mean(x, axis=1)`, `x[:, 0]`, MobileNetV3's `hard_sigmoid`. Keras 3 records each as an operation
node (`keras.src.ops.numpy.Multiply`, its constant arguments in the call, its options in the config); tf.keras
2 as a TFOpLambda layer naming the TensorFlow function (`tf.math.multiply`, its arguments by TensorFlow's
names). Both are data, not bytecode: each known name maps to one torch expression here, and an operation
or argument not in this table is refused by name.

Output shapes come from running the expression on meta tensors (twice, with two batch sizes, so a
dimension that follows the batch or an open dimension is known as such): the expression checked is the
expression generated.
"""
from __future__ import annotations

import re

import numpy as np
import torch
import torch.nn.functional as F

from ..convert import KERAS, NCHW, Converter, Out
from ..registry import operation

_MARK = "__keras_tensor__"


class _In:
    """A tensor operand: the operation's i-th input."""

    def __init__(self, i: int):
        self.i = i


class Operation(Converter):
    n_inputs = (0, 64)
    elementwise = False          # broadcasts its operands: works in any layout when they share one
    keys: dict = {}              # option -> (Keras 3 config key, TensorFlow keyword, position, default)

    def setup(self):
        self.count = 0
        self.args = [self._value(a) for a in self.call_args]
        self.kwargs = {k: self._value(self.call_kwargs[k]) for k in sorted(self.call_kwargs)}
        if self.count != len(self.inputs):
            self.bad(f"{self.count} tensor argument(s) for {len(self.inputs)} input(s)")
        self.constants_ = {}
        self.read()
        self.layout = self._layout()

    # -- arguments --------------------------------------------------------------------------------------------
    def _value(self, v):
        if isinstance(v, dict):
            kind = v.get("class_name")
            if kind == _MARK:
                self.count += 1
                return _In(self.count - 1)
            if kind == "__slice__" or set(v) == {"start", "stop", "step"}:
                c = v.get("config", v)
                parts = [c.get(k) for k in ("start", "stop", "step")]
                if not all(p is None or (isinstance(p, int) and not isinstance(p, bool)) for p in parts):
                    self.fail(f"a slice with non-integer bounds {parts}")
                return slice(*parts)
            if kind == "__ellipsis__":
                return Ellipsis
            if kind == "__tensor__":
                c = v.get("config", {})
                dtype = c.get("dtype", "float32")
                if dtype not in ("float32", "float64", "int32", "int64", "bool"):
                    self.fail(f"a constant tensor of dtype {dtype!r}")
                a = np.asarray(c.get("value"), dtype=dtype)
                if a.size > 1 << 20:
                    self.fail("a constant tensor of more than 1M elements")
                return a
            self.fail(f"an argument of kind {kind!r} is not supported")
        if isinstance(v, (list, tuple)):
            return [self._value(a) for a in v]
        if v is None or isinstance(v, (bool, int, float)) or (isinstance(v, str) and len(v) < 64):
            return v
        self.fail(f"argument {v!r} is not supported")

    def option(self, name: str, default=None):
        """An option, wherever the file keeps it: Keras 3's config, tf.keras 2's keywords, or the call's
        positional arguments (the `keys` table says where)."""
        config_key, tf_key, position = self.keys.get(name, (name, name, None))
        if config_key in self.cfg:
            return self._value(self.cfg[config_key])
        if tf_key in self.kwargs:
            return self.kwargs[tf_key]
        if position is not None and position < len(self.args):
            return self.args[position]
        return default

    def operand(self, position: int, tf_key: str | None = None, default=None):
        if position < len(self.args):
            return self.args[position]
        if tf_key is not None and tf_key in self.kwargs:
            return self.kwargs[tf_key]
        return default

    def read(self):
        """Read and check the options (subclasses)."""

    def check_unknown(self, allowed: set) -> None:
        extra = set(self.kwargs) - allowed - {"name"}
        if extra:
            self.fail(f"argument(s) {', '.join(sorted(extra))} not supported")

    # -- code -------------------------------------------------------------------------------------------------
    def render(self, v, ins) -> str:
        if isinstance(v, _In):
            return ins[v.i]
        if isinstance(v, np.ndarray):
            key = f"constant_{len(self.constants_)}"
            self.constants_[key] = v
            return f"self.{self.attr}.{key}"
        if isinstance(v, list):
            return "[" + ", ".join(self.render(a, ins) for a in v) + "]"
        if isinstance(v, float):
            return repr(v)
        if isinstance(v, slice):
            return ":".join("" if p is None else str(p) for p in (v.start, v.stop, v.step)).rstrip(":") or ":"
        if v is Ellipsis:
            return "..."
        return repr(v)

    def expression(self, ins) -> str:
        raise NotImplementedError

    def _layout(self):
        tensors = [t for t in self.inputs]
        scalars = all(isinstance(a, (_In, int, float, bool)) or a is None for a in self.args)
        layouts = {t.layout for t in tensors}
        if self.elementwise and scalars and len(layouts) == 1 and all(t.rank == tensors[0].rank for t in tensors):
            return layouts.pop()
        return KERAS

    def wanted_layout(self, i, t):
        return self.layout

    def outputs(self):
        shapes, dtype = self._infer()
        if self.layout == NCHW and len(shapes) != 3:
            self.layout = KERAS
        return [Out(shapes, self.layout, False, dtype)]

    def _infer(self):
        names = [f"_in{i}" for i in range(len(self.inputs))]
        self.constants_ = {}
        expr = self.expression(names)
        results = []
        for batch, free in ((2, 5), (3, 6)):
            env = {"torch": torch, "F": F, "self": _Self(self.attr, self.constants_)}
            for name, t in zip(names, self.inputs, strict=True):
                shape = (batch, *(free if d is None else d for d in t.shape))
                dtype = {"bool": torch.bool}.get(t.dtype, torch.int64 if t.dtype.startswith(("int", "uint"))
                                                  else torch.float64 if t.dtype == "float64" else torch.float32)
                env[name] = torch.empty(shape, dtype=dtype, device="meta")
            try:
                out = eval(expr, env)  # noqa: S307 (our own expression: numbers, slices and names we wrote)
            except (RuntimeError, TypeError, ValueError, IndexError) as e:
                self.fail(f"cannot be applied to input shape(s) {[t.shape for t in self.inputs]} ({e})")
            results.append(out)
        a, b = results
        if a.dim() == 0 or a.shape[0] != 2 or b.shape[0] != 3:
            self.fail("an operation over the batch axis is not supported (its output has no batch dimension)")
        shape = tuple(None if x != y else x for x, y in zip(a.shape[1:], b.shape[1:], strict=True))
        dtype = {torch.bool: "bool", torch.int64: "int64", torch.int32: "int32"}.get(a.dtype, self.ctx.dtype)
        return shape, dtype

    def forward(self, ins, outs):
        self.constants_ = {}
        expr = self.expression(ins)
        if "F." in expr:
            self.ctx.uses.add("F")
        return [f"{outs[0]} = {expr}"]

    def module(self):
        self.constants_ = {}
        self.expression([f"_in{i}" for i in range(len(self.inputs))])
        if not self.constants_:
            return None
        self.ctx.uses.add("kc")
        return f"kc.Constants({', '.join(f'{k}={tuple(v.shape)}' for k, v in self.constants_.items())})"

    def note(self):
        return "the operation's constant tensors"

    def constants(self):
        return dict(self.constants_)


class _Self:
    """`self.<attr>.<constant>` in an expression evaluated on meta tensors."""

    def __init__(self, attr, constants):
        holder = type("Holder", (), {k: torch.empty(v.shape, device="meta") for k, v in constants.items()})
        setattr(self, attr, holder)


# ---- elementwise ---------------------------------------------------------------------------------------------

def _binary(symbol: str, *names):
    class Binary(Operation):
        elementwise = True

        def read(self):
            self.check_unknown({"y"})
            self.x, self.y = self.operand(0, "x"), self.operand(1, "y")
            if self.x is None or self.y is None:
                self.fail("needs two operands")

        def expression(self, ins):
            return f"{self.render(self.x, ins)} {symbol} {self.render(self.y, ins)}"  # operands are names
    operation(*names)(Binary)


_binary("+", "Add", "tf.__operators__.add", "tf.math.add")
_binary("-", "Subtract", "tf.math.subtract", "tf.__operators__.sub")
_binary("*", "Multiply", "tf.math.multiply", "tf.__operators__.mul")
_binary("/", "Divide", "TrueDivide", "tf.math.truediv", "tf.math.divide", "tf.__operators__.truediv")
_binary("**", "Power", "tf.math.pow", "tf.__operators__.pow")
_binary("==", "Equal", "tf.math.equal")
_binary("!=", "NotEqual", "tf.math.not_equal")  # Keras 3 records an Embedding's mask_zero mask as this
_binary(">", "Greater", "tf.math.greater")
_binary(">=", "GreaterEqual", "tf.math.greater_equal")
_binary("<", "Less", "tf.math.less")
_binary("<=", "LessEqual", "tf.math.less_equal")
_binary("&", "LogicalAnd", "tf.math.logical_and")  # Keras 3 records a merge's mask of masked inputs with these
_binary("|", "LogicalOr", "tf.math.logical_or")


@operation("FloorDivide", "tf.math.floordiv", "tf.__operators__.floordiv")
class FloorDivide(Operation):
    """floor(x / y), written so (torch's `//` has no derivative; TensorFlow's gradient is zero)."""

    elementwise = True

    def read(self):
        self.check_unknown({"y"})
        self.x, self.y = self.operand(0, "x"), self.operand(1, "y")

    def expression(self, ins):
        return f"torch.floor({self.render(self.x, ins)} / {self.render(self.y, ins)})"


@operation("Maximum", "tf.math.maximum")
class Maximum(Operation):
    elementwise = True

    def read(self):
        self.check_unknown({"y"})
        self.x, self.y = self.operand(0, "x"), self.operand(1, "y")

    def expression(self, ins):
        return self._pair(ins, "torch.maximum", "clamp_min")

    def _pair(self, ins, function, method):
        x, y = (self.x, self.y) if isinstance(self.x, _In) else (self.y, self.x)
        if isinstance(y, (int, float)):
            return f"{self.render(x, ins)}.{method}({self.render(y, ins)})"
        return f"{function}({self.render(x, ins)}, {self.render(y, ins)})"


@operation("Minimum", "tf.math.minimum")
class Minimum(Maximum):
    def expression(self, ins):
        return self._pair(ins, "torch.minimum", "clamp_max")


UNARY = {  # Keras 3 class / TensorFlow function -> torch
    ("Absolute", "Abs", "tf.math.abs"): "torch.abs({})",
    ("Sqrt", "tf.math.sqrt"): "torch.sqrt({})",
    ("Rsqrt", "tf.math.rsqrt"): "torch.rsqrt({})",
    ("Exp", "tf.math.exp"): "torch.exp({})",
    ("Log", "tf.math.log"): "torch.log({})",
    ("Square", "tf.math.square"): "torch.square({})",
    ("Negative", "tf.math.negative", "tf.__operators__.neg"): "-{}",
    ("Reciprocal", "tf.math.reciprocal"): "torch.reciprocal({})",
    ("Tanh", "tf.math.tanh", "tf.nn.tanh"): "torch.tanh({})",
    ("Sigmoid", "tf.math.sigmoid", "tf.nn.sigmoid"): "torch.sigmoid({})",
    ("Relu", "tf.nn.relu"): "F.relu({})",
    ("Relu6", "tf.nn.relu6"): "F.relu6({})",
    ("Silu", "Swish", "tf.nn.silu", "tf.nn.swish"): "F.silu({})",
    ("HardSigmoid",): "F.hardsigmoid({})",  # Keras 3: relu6(x + 3) / 6
    ("HardSilu", "HardSwish"): "F.hardswish({})",
    ("Softplus", "tf.math.softplus", "tf.nn.softplus"): "F.softplus({})",
    ("Softsign", "tf.nn.softsign"): "F.softsign({})",
    ("Elu", "tf.nn.elu"): "F.elu({})",
    ("Selu", "tf.nn.selu"): "F.selu({})",
    ("Erf", "tf.math.erf"): "torch.erf({})",
    ("Floor", "tf.math.floor"): "torch.floor({})",
    ("Ceil", "tf.math.ceil"): "torch.ceil({})",
    ("Round", "tf.math.round"): "torch.round({})",  # both round half to even
    ("Sign", "tf.math.sign"): "torch.sign({})",
    ("Sin", "tf.math.sin"): "torch.sin({})",
    ("Cos", "tf.math.cos"): "torch.cos({})",
    ("LogicalNot", "tf.math.logical_not"): "torch.logical_not({})",
}


def _unary(names, template):
    class Unary(Operation):
        elementwise = True

        def read(self):
            self.check_unknown({"x", "features"})
            self.x = self.operand(0, "x", self.kwargs.get("features"))

        def expression(self, ins):
            return template.format(self.render(self.x, ins))
    operation(*names)(Unary)


for _names, _template in UNARY.items():
    _unary(_names, _template)


@operation("Gelu", "tf.nn.gelu")
class Gelu(Operation):
    elementwise = True
    keys = {"approximate": ("approximate", "approximate", 1)}

    def read(self):
        self.check_unknown({"approximate", "features"})
        self.x = self.operand(0, "features")
        self.approximate = bool(self.option("approximate", True))  # keras.ops.gelu's default: tanh

    def expression(self, ins):
        self.ctx.caveats.add("TensorFlow's float64 gelu (erfc) is accurate to about 1e-8")
        tanh = ", approximate='tanh'" if self.approximate else ""
        return f"F.gelu({self.render(self.x, ins)}{tanh})"


@operation("LeakyRelu", "tf.nn.leaky_relu")
class LeakyRelu(Operation):
    elementwise = True
    keys = {"negative_slope": ("negative_slope", "alpha", 1)}

    def read(self):
        self.check_unknown({"alpha", "features"})
        self.x = self.operand(0, "features")
        self.slope = self.option("negative_slope", 0.2)

    def expression(self, ins):
        return f"F.leaky_relu({self.render(self.x, ins)}, {self.ctx.keras_float(self.slope)!r})"


@operation("Clip", "tf.clip_by_value")
class Clip(Operation):
    elementwise = True
    keys = {"min": ("x_min", "clip_value_min", 1), "max": ("x_max", "clip_value_max", 2)}

    def read(self):
        self.check_unknown({"clip_value_min", "clip_value_max", "t"})
        self.x = self.operand(0, "t")
        self.low, self.high = self.option("min"), self.option("max")
        if not all(isinstance(v, (int, float)) for v in (self.low, self.high)):
            self.fail("only number bounds are supported")

    def expression(self, ins):
        return f"torch.clamp({self.render(self.x, ins)}, {self.low!r}, {self.high!r})"


# ---- reductions, shapes ----------------------------------------------------------------------------------------

def _axes(v):
    if v is None:
        return None
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    if isinstance(v, list) and all(isinstance(a, int) and not isinstance(a, bool) for a in v):
        return tuple(v)
    return False


REDUCTIONS = {("Mean", "tf.math.reduce_mean", "tf.reduce_mean"): "mean", ("Sum", "tf.math.reduce_sum",
              "tf.reduce_sum"): "sum", ("Max", "Amax", "tf.math.reduce_max", "tf.reduce_max"): "amax",
              ("Min", "Amin", "tf.math.reduce_min", "tf.reduce_min"): "amin",
              ("Prod", "tf.math.reduce_prod"): "prod", ("Var", "tf.math.reduce_variance"): "var",
              ("Std", "tf.math.reduce_std"): "std"}


def _reduction(names, method):
    class Reduce(Operation):
        keys = {"axis": ("axis", "axis", 1), "keepdims": ("keepdims", "keepdims", 2)}

        def read(self):
            self.check_unknown({"axis", "keepdims", "input_tensor"})
            self.x = self.operand(0, "input_tensor")
            self.axis = _axes(self.option("axis"))
            self.keep = bool(self.option("keepdims", False))
            if self.axis is False:
                self.fail(f"axis = {self.option('axis')!r}")
            if method == "prod" and isinstance(self.axis, tuple):
                self.fail("a product over several axes is not supported")

        def expression(self, ins):
            x = self.render(self.x, ins)
            dim = "" if self.axis is None else f"dim={self.axis!r}"
            extra = ", correction=0" if method in ("var", "std") else ""
            keep = ", keepdim=True" if self.keep else ""
            if self.axis is None and not self.keep:
                return f"{x}.{method}({extra.lstrip(', ')})"
            return f"{x}.{method}({dim}{keep}{extra})".replace("(, ", "(")
    operation(*names)(Reduce)


for _names, _method in REDUCTIONS.items():
    _reduction(_names, _method)


@operation("Argmax", "tf.math.argmax")
class Argmax(Operation):
    keys = {"axis": ("axis", "axis", 1)}

    def read(self):
        self.check_unknown({"axis", "output_type", "input"})
        self.x = self.operand(0, "input")
        self.axis = self.option("axis", -1)
        if not isinstance(self.axis, int):
            self.fail(f"axis = {self.axis!r}")

    def expression(self, ins):
        return f"torch.argmax({self.render(self.x, ins)}, dim={self.axis})"


@operation("Reshape", "tf.reshape")
class Reshape(Operation):
    keys = {"shape": ("newshape", "shape", 1)}

    def read(self):
        self.check_unknown({"shape", "tensor"})
        self.x = self.operand(0, "tensor")
        self.shape = self.option("shape")
        if not (isinstance(self.shape, list) and all(isinstance(d, int) and d >= -1 for d in self.shape)):
            self.fail(f"shape {self.shape!r}: only a list of whole numbers is supported")

    def expression(self, ins):
        return f"{self.render(self.x, ins)}.reshape({tuple(self.shape)!r})"


@operation("Transpose", "tf.transpose", "tf.compat.v1.transpose")
class Transpose(Operation):
    keys = {"axes": ("axes", "perm", 1)}

    def read(self):
        self.check_unknown({"perm", "a", "conjugate"})
        self.x = self.operand(0, "a")
        self.axes = self.option("axes")
        if self.axes is not None and _axes(self.axes) in (False, None):
            self.fail(f"axes = {self.axes!r}")

    def expression(self, ins):
        x = self.render(self.x, ins)
        if self.axes is None:
            return f"{x}.permute(*reversed(range({x}.dim())))"
        return f"{x}.permute{tuple(self.axes)!r}"


@operation("ExpandDims", "tf.expand_dims")
class ExpandDims(Operation):
    keys = {"axis": ("axis", "axis", 1)}

    def read(self):
        self.check_unknown({"axis", "input"})
        self.x = self.operand(0, "input")
        self.axis = self.option("axis")
        if not isinstance(self.axis, int):
            self.fail(f"axis = {self.axis!r}: one axis is supported")

    def expression(self, ins):
        x = self.render(self.x, ins)
        axis = self.axis if self.axis >= 0 else f"{x}.dim() + {self.axis + 1}"
        return f"{x}.unsqueeze({axis})"


@operation("Squeeze", "tf.squeeze", "tf.compat.v1.squeeze")
class Squeeze(Operation):
    keys = {"axis": ("axis", "axis", 1)}

    def read(self):
        self.check_unknown({"axis", "input", "squeeze_dims"})
        self.x = self.operand(0, "input")
        self.axis = _axes(self.option("axis"))
        if self.axis is False:
            self.fail(f"axis = {self.option('axis')!r}")

    def expression(self, ins):
        x = self.render(self.x, ins)
        return f"{x}.squeeze()" if self.axis is None else f"{x}.squeeze({self.axis!r})"


class _Join(Operation):
    keys = {"axis": ("axis", "axis", 1)}

    def read(self):
        self.check_unknown({"axis", "values"})
        self.xs = self.operand(0, "values")
        self.axis = self.option("axis", 0)
        if not isinstance(self.xs, list) or not isinstance(self.axis, int):
            self.fail("only a list of tensors along one axis is supported")


@operation("Concatenate", "tf.concat")
class Concatenate(_Join):
    def expression(self, ins):
        return f"torch.cat({self.render(self.xs, ins)}, dim={self.axis})"


@operation("Stack", "tf.stack")
class Stack(_Join):
    def expression(self, ins):
        return f"torch.stack({self.render(self.xs, ins)}, dim={self.axis})"


@operation("Matmul", "tf.linalg.matmul", "tf.matmul")
class Matmul(Operation):
    def read(self):
        self.check_unknown({"b", "a"})
        if any(self.kwargs.get(k) for k in ("transpose_a", "transpose_b", "adjoint_a", "adjoint_b")):
            self.fail("transposed or adjoint operands are not supported")
        self.x, self.y = self.operand(0, "a"), self.operand(1, "b")

    def expression(self, ins):
        return f"torch.matmul({self.render(self.x, ins)}, {self.render(self.y, ins)})"


@operation("Where", "tf.where")
class Where(Operation):
    def read(self):
        self.check_unknown({"condition", "x", "y"})
        self.c, self.x, self.y = (self.operand(i, k) for i, k in enumerate(("condition", "x", "y")))
        if self.x is None or self.y is None:
            self.fail("where(condition) without x and y is not supported")

    def expression(self, ins):
        x, y = (self.render(v, ins) if isinstance(v, (_In, np.ndarray)) else f"torch.tensor({v!r})"
                for v in (self.x, self.y))
        return f"torch.where({self.render(self.c, ins)}, {x}, {y})"


DTYPES = {"float32": "torch.float32", "float64": "torch.float64", "int32": "torch.int32", "int64": "torch.int64",
          "bool": "torch.bool", "float16": "torch.float16", "bfloat16": "torch.bfloat16", "uint8": "torch.uint8"}


@operation("Cast", "tf.cast", "tf.dtypes.cast")
class Cast(Operation):
    keys = {"dtype": ("dtype", "dtype", 1)}

    def read(self):
        self.check_unknown({"dtype", "x"})
        self.x = self.operand(0, "x")
        dtype = self.option("dtype")
        if isinstance(dtype, dict):
            dtype = (dtype.get("config") or {}).get("name")
        if dtype not in DTYPES:
            self.fail(f"dtype {dtype!r} is not supported")
        self.dtype = dtype

    def expression(self, ins):
        return f"{self.render(self.x, ins)}.to({DTYPES[self.dtype]})"


@operation("Softmax", "LogSoftmax", "tf.nn.softmax", "tf.math.softmax", "tf.nn.log_softmax")
class Softmax(Operation):
    keys = {"axis": ("axis", "axis", 1)}

    def read(self):
        self.check_unknown({"axis", "logits"})
        self.x = self.operand(0, "logits")
        self.axis = self.option("axis", -1)
        if not isinstance(self.axis, int):
            self.fail(f"axis = {self.axis!r}")

    def expression(self, ins):
        log = "log" in self.layer.class_name.lower() or "log_" in str(self.cfg.get("function", ""))
        return f"torch.{'log_softmax' if log else 'softmax'}({self.render(self.x, ins)}, dim={self.axis})"


_INDEX = re.compile(r"^[\w\s:,.\-\[\]None]*$")


@operation("GetItem", "tf.__operators__.getitem")
class GetItem(Operation):
    """Slicing: `x[:, 2:10]`, `x[..., 0]`, `x[:, None]` (Keras 3's GetItem, tf.keras 2's SlicingOpLambda)."""

    def read(self):
        self.check_unknown({"slice_spec", "var"})
        self.x = self.operand(0)
        spec = self.operand(1, "slice_spec")
        spec = spec if isinstance(spec, list) else [spec]
        for s in spec:
            if not (s is None or s is Ellipsis or isinstance(s, slice) or (isinstance(s, int)
                                                                          and not isinstance(s, bool))):
                self.fail(f"index {s!r}: only slices, integers, None and ... are supported")
        if spec and spec[0] is not Ellipsis and not (isinstance(spec[0], slice) and spec[0] == slice(None)):
            self.fail("indexing the batch axis is not supported")
        self.spec = spec

    def expression(self, ins):
        parts = ", ".join("None" if s is None else self.render(s, ins) for s in self.spec)
        return f"{self.render(self.x, ins)}[{parts}]"

