"""Parity of a ported Keras model file: the port against the Keras that wrote the file, same weights.

The reference is loaded with `safe_mode` (Keras refuses Lambda bytecode itself; torchport already did),
by Keras 3 for Keras 3 files and by tf_keras for tf.keras 2 files. Inputs are drawn from a seeded numpy
Generator in the model's input shapes: images in [0, 1], token ids in the Embedding's vocabulary with
padding zeros in front (masks exercised), other inputs standard normal.

**Verdicts calibrated to the model.** Two correct implementations of a model differ by rounding, and how
far rounding carries depends on the model: a saturated softmax, a ReLU6 deep in MobileNetV2 whose input sits
within rounding of 6, a training run that grows every difference exponentially (chaos). So each check also
runs Keras against itself, with its weights (and inputs) moved by one rounding unit of the dtype
(`numpy.nextafter`, in a random direction): how far that moves Keras is the model's own sensitivity, in the
same run. A check passes when torchport is within the strict tolerance (1e-5 in float32, 1e-10 / 1e-9 in
float64), or no farther from Keras than FACTOR times Keras' distance from itself. A well-conditioned model
gets the strict tolerance back (Keras moves from itself far less than it); the table prints both numbers.

Every difference is measured on a scale that means something: an output against that output's largest
value, a gradient or weight against the largest value of its layer's tensors (a bias just before
BatchNormalization has an analytically zero gradient: both frameworks move it by rounding noise only, and
dividing one noise by the other measures nothing).

Memory: the Keras models and ports of one dtype are loaded once, shared by that dtype's checks and freed
before the next dtype (a ResNet50 parity pass held 9 GB when every check loaded its own copies).
"""
from __future__ import annotations

import copy
import gc
from dataclasses import dataclass, field

import numpy as np
import torch

from .. import engine
from ..errors import UnsupportedError, first_line
from ..keras_compat import augmentation
from ..keras_compat.preprocessing import center_crop
from ..keras_env import import_keras
from ..keras_fit import compile as compiling
from ..keras_fit.data import io_names, keys as fit_keys, splits
from ..keras_fit.run import FitConfig, setup
from ..porting.convert import NCHW
from ..porting.plan import plan_file
from ..porting.user import keras_objects
from .core import KerasCannotRun, Result, format_table, in_keras, max_abs, optimizer_gap, summary_line

FLOAT64_POLICY = {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float64"},
                  "registered_name": None}
FACTOR = 10          # torchport may be this many times farther from Keras than Keras is from itself
STRICT = {"float32": 1e-5, "float64": 1e-10}  # the tolerances of a well-conditioned model
STRICT_GRAD64 = 1e-9
CHAOS = 1e-12        # float64: while Keras is within this of itself (moved by one ulp), steps are checked strictly


def reference_keras(path: str, keras_version: str):
    """The `keras` module that wrote the file: Keras 3, or tf_keras for a tf.keras 2 file."""
    keras = import_keras()
    if keras_version.startswith("2."):
        import tf_keras
        return tf_keras
    return keras


def load_reference(path: str, keras_version: str, dtype: str = "float32"):
    keras = reference_keras(path, keras_version)
    custom = keras_objects()  # the Keras classes of the user's converters files, if they name them
    model = keras.models.load_model(path, compile=False, safe_mode=True, custom_objects=custom) \
        if not keras_version.startswith("2.") else keras.models.load_model(path, compile=False, custom_objects=custom)
    return model if dtype == "float32" else as_dtype(model, dtype, keras_version)


def as_dtype(model, dtype: str, keras_version: str, edit=None):
    """A twin of a Keras model in `dtype` (every layer's policy and float input), the same weights cast;
    `edit(config)` changes the config first (dropout off)."""
    config = model.get_config()
    if edit is not None:
        edit(config)
    _set_dtype(config, dtype, keras_version.startswith("2."))
    twin = model.__class__.from_config(config, custom_objects=keras_objects() or None)
    set_weights(twin, [w.astype(dtype) for w in model.get_weights()])
    return twin


def set_weights(model, weights) -> None:
    """`model.set_weights`, then what Keras' loader does after it: an adapted Normalization derives its
    broadcast mean and variance from its variables in `finalize_state` (without it, the twin normalises with
    0 and 1)."""
    model.set_weights(weights)
    layers = model._flatten_layers(include_self=False) if hasattr(model, "_flatten_layers") else model.layers
    for layer in layers:
        if type(layer).__name__ == "Normalization" and hasattr(layer, "finalize_state"):
            layer.finalize_state()


def _set_dtype(obj, dtype: str, keras2: bool) -> None:
    """Every layer config's dtype policy (and float inputs' dtype) to `dtype`, recursively."""
    if isinstance(obj, dict):
        if "dtype" in obj and (isinstance(obj["dtype"], dict) or obj["dtype"] in ("float32", "float64")):
            obj["dtype"] = dtype if keras2 or not isinstance(obj["dtype"], dict) else \
                {**FLOAT64_POLICY, "config": {"name": dtype}}
        for v in obj.values():
            _set_dtype(v, dtype, keras2)
    elif isinstance(obj, list):
        for v in obj:
            _set_dtype(v, dtype, keras2)


def make_inputs(plan, batch: int, seed: int, dtype: str = "float32") -> list[np.ndarray]:
    """One seeded array per model input, in Keras' layout."""
    rng = np.random.default_rng(seed)
    arrays = []
    for t in plan.inputs:
        shape = [batch] + [(16 if t.layout == NCHW else 7) if d is None else d for d in t.shape]
        vocab = next((c.input_dim for c in plan.converters.values()  # an input feeding an Embedding: token ids
                      if getattr(c, "input_dim", None) and c.inputs[0].var == t.var), None)
        if t.dtype.startswith(("int", "uint")) or vocab is not None:
            a = rng.integers(1, vocab or 10, shape)
            if len(shape) == 2:  # pre-padding, as pad_sequences does: masked steps in front
                for row, pad in zip(a, rng.integers(0, shape[1], batch), strict=True):
                    row[:pad] = 0
            arrays.append(a.astype(t.dtype))
        elif t.layout == NCHW:
            arrays.append(rng.uniform(0, 1, shape).astype(dtype))
        else:
            arrays.append(rng.standard_normal(shape).astype(dtype))
    return arrays


def default_batch(plan, dtype: str) -> int:
    """8 samples, fewer where they would make more than 1 MiB of input (224x224 images: 1), so that a
    ResNet50's float64 gradients pass in 4 GB and seconds (its float64 convolutions' backward is slow on a CPU)."""
    elements = max(np.prod([16 if d is None else d for d in t.shape]) for t in plan.inputs)
    return int(max(1, min(8, 2**20 // (elements * np.dtype(dtype).itemsize))))


def torch_inputs(plan, arrays: list[np.ndarray]) -> list[torch.Tensor]:
    return [torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2) if t.layout == NCHW else a))
            for t, a in zip(plan.inputs, arrays, strict=True)]


def _listify(out) -> list:
    return list(out) if isinstance(out, (list, tuple)) else [out]


def torch_model(plan, path: str, dtype: str):
    """The port in `dtype`: planned again as a float64 model (its constants as Keras applies them in one)."""
    if dtype == plan.dtype:
        return plan.module()
    return plan_file(path, dtype).module()


def one_ulp(arrays: list[np.ndarray], rng) -> list[np.ndarray]:
    """Each float array moved by one rounding unit of its dtype, each element up or down at random."""
    return [np.nextafter(a, np.where(rng.random(a.shape) < 0.5, -np.inf, np.inf).astype(a.dtype))
            if a.dtype.kind == "f" else a for a in arrays]  # the direction in a's dtype: a's own ulp


def moved_inputs(x: list[np.ndarray], rng) -> list[np.ndarray]:
    """The inputs moved by one ulp, except those holding whole numbers: token ids in a float input, where
    4.9999995 for 5 would pick another embedding row (a custom embedding's 0.017 of "sensitivity")."""
    return [a if a.dtype.kind != "f" or np.array_equal(a, np.round(a)) else one_ulp([a], rng)[0] for a in x]


# ---- one model's references, loaded once ---------------------------------------------------------------------

@dataclass
class Session:
    """The Keras reference and the port of one model file in each dtype, loaded when a check first needs them
    and shared by the checks of that dtype; `release(dtype)` frees them."""

    plan: object
    path: str
    batch: int = 0               # 0: `default_batch` for each dtype
    keras_models: dict = field(default_factory=dict)
    torch_models: dict = field(default_factory=dict)

    def batch_for(self, dtype: str) -> int:
        return self.batch or default_batch(self.plan, dtype)

    def keras(self, dtype: str):
        if dtype not in self.keras_models:
            version = self.plan.ctx.keras_version
            if dtype == "float32" or "float32" not in self.keras_models:
                base = in_keras(lambda: load_reference(self.path, version), "this file")
            else:
                base = self.keras_models["float32"]
            self.keras_models[dtype] = base if dtype == "float32" else in_keras(
                lambda: as_dtype(base, dtype, version), f"this model in {dtype}")
        return self.keras_models[dtype]

    def torch(self, dtype: str):
        if dtype not in self.torch_models:
            self.torch_models[dtype] = torch_model(self.plan, self.path, dtype)
        return self.torch_models[dtype]

    def release(self, dtype: str | None = None) -> None:
        for models in (self.keras_models, self.torch_models):
            for d in [d for d in models if dtype is None or d == dtype]:
                del models[d]
        gc.collect()
        _give_back_memory()


def _give_back_memory() -> None:
    """Return freed heap to the system (glibc keeps it otherwise, and the next dtype's models and activations
    come on top: a ResNet50 pass peaked 1 GB higher without this)."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass


def _caveat(plan, dtype: str) -> str:
    """float64 tolerances hold only where TensorFlow computes in float64 throughout; the row says where not."""
    return f" [{'; '.join(sorted(plan.ctx.caveats))}]" if dtype == "float64" and plan.ctx.caveats else ""


def _strict(plan, dtype: str, tol64: float) -> float:
    return tol64 if dtype == "float64" and not plan.ctx.caveats else STRICT["float32"]


def calibrated(check: str, metric: str, diff: float, strict: float, sensitivity: float) -> Result:
    """A row whose tolerance is the strict one, or FACTOR times Keras' distance from itself if that is larger."""
    wide = FACTOR * sensitivity > strict
    tol = float(f"{FACTOR * sensitivity:.2g}") if wide else strict
    return Result(check, metric + (f" (calibrated: {FACTOR} x Keras vs itself)" if wide else ""), diff, tol,
                  sensitivity=sensitivity)


def scaled_diffs(ours: list[np.ndarray], theirs: list[np.ndarray], groups: list[int]) -> list[float]:
    """Per tensor: max |a - b| over the largest |b| among the tensors of its group (its layer), so a tensor
    that is analytically zero (a bias gradient before BatchNormalization) is measured on its layer's scale."""
    if len(ours) != len(theirs) or len(theirs) != len(groups):
        raise ValueError("lists of different lengths")
    scale: dict[int, float] = {}
    for b, g in zip(theirs, groups, strict=True):
        scale[g] = max(scale.get(g, 0.0), float(np.max(np.abs(np.asarray(b, np.float64)))) if np.size(b) else 0.0)
    return [max_abs(a, b) / max(scale[g], 1e-30) for a, b, g in zip(ours, theirs, groups, strict=True)]


def worst_ratio(diffs: list[float], sens: list[float], strict: float) -> int:
    """The index whose difference is largest against what its own sensitivity allows."""
    return max(range(len(diffs)), key=lambda i: diffs[i] / max(strict, FACTOR * sens[i]), default=0)


# ---- forward and gradients --------------------------------------------------------------------------------------

class _Perturbed:
    """Within: the Keras model's weights moved by one ulp (then put back)."""

    def __init__(self, km, seed: int):
        self.km, self.rng = km, np.random.default_rng(seed + 3)

    def __enter__(self):
        self.saved = self.km.get_weights()
        set_weights(self.km, one_ulp(self.saved, self.rng))
        return self.rng

    def __exit__(self, *exc):
        set_weights(self.km, self.saved)


def _cotangents(shapes, dtype, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed + 1)
    return [rng.standard_normal(tuple(shape)).astype(dtype) for shape in shapes]


def keras_layer(km, conv):
    """The Keras layer a converter ported, found by its path from the outer model (a nested model's layer)."""
    layer = km
    for name in conv.path:
        layer = layer.get_layer(name)
    return layer


def _trainable(plan, km) -> list[tuple[object, list]]:
    """(converter, its Keras layer's trainable variables) for each layer that has any, in the port's order."""
    return [(conv, keras_layer(km, conv).trainable_weights) for conv, _ in plan.weighted
            if keras_layer(km, conv).trainable_weights]


def keras_pass(plan, km, x, seed: int, gradients: bool, dtype: str):
    """Keras' outputs (inference mode) and, if asked, its gradient of sum(out * c) for every trainable
    variable in the port's layer order, c a random cotangent drawn from `seed`: (outputs, grads, cotangents)."""
    import tensorflow as tf

    def run():
        with tf.GradientTape() as tape:
            outs = _listify(km(x if len(x) > 1 else x[0], training=False))
            cot = _cotangents([o.shape for o in outs], dtype, seed)
            loss = tf.add_n([tf.reduce_sum(o * c) for o, c in zip(outs, cot, strict=True)])
        grads = None
        if gradients:
            k_vars = [w for _, variables in _trainable(plan, km) for w in variables]
            grads = [np.asarray(tf.convert_to_tensor(g)) for g in tape.gradient(loss, k_vars)]  # Embedding: sparse
        return [np.asarray(o) for o in outs], grads, cot

    return in_keras(run, f"this model {'and its gradients ' if gradients else ''}in {dtype}")


def keras_gradients(plan, km, x, cot) -> list[np.ndarray]:
    """Keras' gradient of sum(out * c) for every trainable variable, in the port's layer order."""
    import tensorflow as tf

    def run():
        with tf.GradientTape() as tape:
            outs = _listify(km(x if len(x) > 1 else x[0], training=False))
            loss = tf.add_n([tf.reduce_sum(o * c) for o, c in zip(outs, cot, strict=True)])
        k_vars = [w for _, variables in _trainable(plan, km) for w in variables]
        return [np.asarray(tf.convert_to_tensor(g)) for g in tape.gradient(loss, k_vars)]

    return in_keras(run, f"this model's gradients in {np.asarray(cot[0]).dtype}")


def torch_gradients(plan, km, tm, x, cot) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Our outputs, and our gradient of sum(out * c) for every trainable Keras variable, mapped to Keras'
    layout by each layer's converter."""
    tm.zero_grad()
    outs = _listify(tm(*torch_inputs(plan, x)))
    sum(((o * torch.from_numpy(c)).sum() for o, c in zip(outs, cot, strict=True)), torch.zeros(())).backward()
    grads = []
    for conv, _ in _trainable(plan, km):
        expected = dict(plan.weighted)[conv]
        n = len(conv.state_prefix)
        state = {name[n:]: (p.grad if p.grad is not None else torch.zeros_like(p)).numpy()
                 for name, p in tm.named_parameters() if name.startswith(conv.state_prefix)}
        state.update({name[n:]: np.zeros(tuple(b.shape))  # buffers have no gradient
                      for name, b in tm.named_buffers() if name.startswith(conv.state_prefix)})
        grads += [a for a, w in zip(conv.to_keras(state), expected, strict=True) if w.trainable]
    tm.zero_grad(set_to_none=True)
    return [o.detach().numpy() for o in outs], grads


def compare(plan, path: str, dtype: str = "float32", seed: int = 0, session: Session | None = None,
            gradients: bool = True) -> list[Result]:
    """The forward check and (with `gradients`) the gradient check of one dtype, from one pass of each model:
    Keras, Keras with its weights and inputs moved by one ulp (its sensitivity), and the port.

    Outputs are compared on each output's own scale (a 1000-way softmax is ~1e-3 everywhere: an absolute
    difference would compare tiny numbers); gradients on their layer's scale. Each row reports what comes
    closest to its tolerance: the output, or the tensor."""
    s = session or Session(plan, path)
    km, tm = s.keras(dtype), s.torch(dtype)
    layers = [(conv, w) for conv, variables in _trainable(plan, km) for w in variables] if gradients else []
    batch = s.batch_for(dtype)
    x = make_inputs(plan, batch, seed, dtype)
    theirs, k_grads, cot = keras_pass(plan, km, x, seed, bool(layers), dtype)
    with _Perturbed(km, seed) as rng:
        moved, m_grads, _ = keras_pass(plan, km, moved_inputs(x, rng), seed, bool(layers), dtype)
    if layers:
        ours, o_grads = torch_gradients(plan, km, tm, x, cot)
    else:
        with torch.no_grad():
            ours = [o.numpy() for o in _listify(tm(*torch_inputs(plan, x)))]
    outputs = list(range(len(theirs)))  # each output on its own scale
    diffs, sens = scaled_diffs(ours, theirs, outputs), scaled_diffs(moved, theirs, outputs)
    strict = _strict(plan, dtype, STRICT["float64"])
    i = worst_ratio(diffs, sens, strict)
    rows = [calibrated(f"forward {dtype} (batch {batch}){_caveat(plan, dtype)}{_constant(theirs)}",
                       "max |out - keras| / max |keras|" + (f", output {i}" if len(diffs) > 1 else ""),
                       diffs[i], strict, sens[i])]
    if not gradients:
        return rows
    strict = _strict(plan, dtype, STRICT_GRAD64)
    name = f"gradients {dtype}, all {len(layers)} tensors (batch {batch}){_caveat(plan, dtype)}"
    if not layers:
        return rows + [Result(name, "no trainable variables", 0.0, strict)]
    groups = [id(conv) for conv, _ in layers]
    diffs, sens = scaled_diffs(o_grads, k_grads, groups), scaled_diffs(m_grads, k_grads, groups)
    i = worst_ratio(diffs, sens, strict)
    where = f"{layers[i][0].name}/{_var_name(layers[i][1])}"
    row = calibrated(name, f"max |grad - keras| / layer scale (worst: {where})", diffs[i], strict, sens[i])
    if not row.passed and dtype == "float32":
        row = _against_float64(plan, s, x, cot, o_grads, k_grads, layers, name) or row
    return rows + [row]


def _against_float64(plan, s: Session, x, cot, o_grads, k_grads, layers, name) -> Result | None:
    """A float32 gradient check that failed, decided in float64: the same inputs and cotangent through Keras
    and the port in float64. Where those agree to the strict float64 tolerance, the two compute the same
    gradients and the float32 gap is rounding (a saturated softmax: Keras float32 1e-5, torch 1e-15, exact
    1e-15; rounding crossing ReLU6's kinks in MobileNet at 32x32: 7.6e-4 in float32, 1.9e-13 in float64), which
    one ulp of perturbation did not reveal; the row passes and says so. A wrong port stays wrong in float64.
    None when Keras cannot run the model in float64."""
    def run():
        wide = [a.astype(np.float64) if a.dtype.kind == "f" else a for a in x]
        cot64 = [c.astype(np.float64) for c in cot]
        km64, tm64 = s.keras("float64"), s.torch("float64")
        return keras_gradients(plan, km64, wide, cot64), torch_gradients(plan, km64, tm64, wide, cot64)[1]
    try:
        theirs, ours = run()
    except KerasCannotRun:
        return None
    groups = [id(conv) for conv, _ in layers]
    diffs = scaled_diffs(ours, theirs, groups)
    i = max(range(len(diffs)), key=diffs.__getitem__)
    where = f"{layers[i][0].name}/{_var_name(layers[i][1])}"
    f32 = max(scaled_diffs(o_grads, k_grads, groups))
    return Result(f"{name} [float32 gap {f32:.2g} decided in float64]",
                  f"max |grad - keras| / layer scale in float64, same inputs (worst: {where})", diffs[i],
                  STRICT_GRAD64)


def _constant(outputs: list[np.ndarray]) -> str:
    """A warning when every sample of the batch gets the same outputs: the model ignores its input (saturated
    activations, a degenerate weight draw), and a forward check then sees only its last layers."""
    same = all(len(o) > 1 and np.array_equal(o, np.broadcast_to(o[:1], o.shape)) for o in outputs)
    return " [WARNING: every sample gives the same outputs: the model ignores its input]" if same else ""


def check_forward(plan, path: str, dtype: str = "float32", seed: int = 0, session: Session | None = None) -> Result:
    return compare(plan, path, dtype, seed, session, gradients=False)[0]


def check_gradients(plan, path: str, dtype: str = "float32", seed: int = 0, session: Session | None = None) -> Result:
    return compare(plan, path, dtype, seed, session)[1]


def _var_name(variable) -> str:
    return str(getattr(variable, "path", None) or variable.name).split("/")[-1].split(":")[0]


def keras_cannot_run(plan, path: str, session: Session | None = None) -> str | None:
    """Why Keras itself cannot load or run this model here, or None. Keras cannot read some files it wrote (a
    masked .h5), and TensorFlow's CPU kernels refuse channels_first convolutions and pooling (NHWC only)."""
    s = session or Session(plan, path)
    try:
        km = s.keras("float32")
    except KerasCannotRun as e:
        return f"Keras cannot load this file itself ({first_line(e, 300)})"
    import tensorflow as tf
    if any(layer.config.get("data_format") == "channels_first" for layer in plan.graph.layers) \
            and not tf.config.list_physical_devices("GPU"):
        # Measured: a 3x3 stride-2 "same" Conv2D, channels_first, float32: 1.3 away from a float64 reference,
        # while its channels_last twin (same weights, transposed input) agrees to 1e-6; float64 raises.
        return ("TensorFlow's CPU kernels do not support channels_first (NHWC only: float64 raises, and float32 "
                "went through oneDNN to wrong numbers in our checks), so Keras on this CPU is no reference; "
                "parity_tests checks channels_first ports against their Keras-checked channels_last twins")
    try:
        x = make_inputs(plan, 2, 0)
        km(x if len(x) > 1 else x[0], training=False)
    except Exception as e:
        return f"Keras cannot run this model on this machine ({first_line(e, 300)})"
    return None


def guarded(name: str, check) -> list[Result]:
    """`check()` (one Result or a list), or one "not run" row saying why Keras could not run it here."""
    try:
        out = check()
    except KerasCannotRun as e:
        return [Result(name, "-", float("nan"), 0.0, not_run=str(e))]
    except UnsupportedError as e:  # what `torchport fit` refuses (an activity regularizer...): no training rows
        return [Result(name, "-", float("nan"), 0.0, not_run=f"torchport fit does not train it: {e}")]
    return out if isinstance(out, list) else [out]


def port_checks(plan, path: str, session: Session | None = None) -> list[Result]:
    """Forward and gradients, float32 then float64; the float64 twin is built from the float32 model, which
    is then freed, and the float64 models are freed at the end."""
    s = session or Session(plan, path)
    results = guarded("forward and gradients float32", lambda: compare(plan, path, "float32", session=s))
    results += guarded("forward and gradients float64", lambda: (s.keras("float64"), s.release("float32"),
                                                                 compare(plan, path, "float64", session=s))[-1])
    s.release()
    return results


def port_parity(path: str, plan) -> tuple[list[Result] | None, str | None]:
    """The port's forward and gradient checks against Keras: (results, None), or (None, why) when Keras
    itself cannot load or run this model here."""
    s = Session(plan, path)
    try:
        why = keras_cannot_run(plan, path, s)
        return (None, why) if why else (port_checks(plan, path, s), None)
    finally:
        s.release()


def port_report(plan, results: list[Result] | None, why: str | None = None) -> str:
    """parity.md: the results of `port_parity`, as `torchport parity` prints them."""
    keras = import_keras()
    import tensorflow as tf

    head = [f"# Parity of `{plan.file_name}` ({plan.title}) against Keras", "",
            f"Keras {keras.__version__}, TensorFlow {tf.__version__}, torch {torch.__version__}; "
            "same weights, seeded inputs, inference mode. \"Keras vs itself\": how far Keras moves when its weights "
            f"and inputs move by one rounding unit; a check passes within its strict tolerance or within {FACTOR} "
            "times that.", ""]
    if results is None:
        return "\n".join(head + [f"{why}: nothing to compare against.", ""])
    return "\n".join(head + ["```", format_table(results), "```", "", summary_line(results), ""])


# ---- training parity (`torchport parity --model`) -------------------------------------------------------------

AUGMENTATION = ("RandomFlip", "RandomRotation", "RandomZoom", "RandomTranslation", "RandomContrast",
                "RandomBrightness", "RandomCrop")


def _augmentation_off(entry: dict) -> None:
    """A Random* layer entry made deterministic: Identity (RandomCrop: CenterCrop, the crop it makes)."""
    cfg = entry.get("config", {})
    keep = {k: cfg[k] for k in ("name", "trainable", "dtype") if k in cfg}
    if entry["class_name"] == "RandomCrop":
        keep.update(height=cfg["height"], width=cfg["width"])
    entry["class_name"] = "CenterCrop" if entry["class_name"] == "RandomCrop" else "Identity"
    entry["config"] = keep


def _dropout_off(config) -> None:
    """Every dropout rate in a Keras config set to 0, every augmentation layer made deterministic: two
    frameworks cannot draw the same masks and transforms."""
    if isinstance(config, dict):
        if config.get("class_name") in AUGMENTATION and isinstance(config.get("config"), dict):
            _augmentation_off(config)
        inner = config.get("config")
        cls = str(config.get("class_name", ""))
        if ("Dropout" in cls or cls.endswith("StochasticDepth")) and isinstance(inner, dict) and \
                isinstance(inner.get("rate"), (int, float)):  # a drop probability (MinMaxNorm has a `rate` too)
            inner["rate"] = 0.0
        for key in ("dropout", "recurrent_dropout"):
            if isinstance(config.get(key), (int, float)):
                config[key] = 0.0
        for v in config.values():
            _dropout_off(v)
    elif isinstance(config, list):
        for v in config:
            _dropout_off(v)


def training_reference(path: str, keras_version: str, dtype: str):
    """The Keras model in `dtype` with dropout off, its weights the file's."""
    return as_dtype(load_reference(path, keras_version, "float32"), dtype, keras_version, edit=_dropout_off)


def random_data(plan, n: int, seed: int, loss_names: list, dtype: str) -> dict:
    """Inputs of the model's input shapes and labels that fit each output's loss, seeded, under the names
    `torchport fit` reads (x_train, y_train; x_train_<input>, y_train_<output> for several)."""
    rng = np.random.default_rng(seed + 7)
    xs, ys = fit_keys(plan, "train")
    data = dict(zip(xs, make_inputs(plan, n, seed, dtype), strict=True))  # in Keras' layout, as drawn
    for key, t, loss_name in zip(ys, plan.outputs, loss_names, strict=True):
        out = t.shape
        classes = out[-1]
        if loss_name == "sparse_categorical_crossentropy":
            y = rng.integers(0, classes, (n, *out[:-1]))
        elif loss_name == "categorical_crossentropy":
            y = np.eye(classes, dtype=dtype)[rng.integers(0, classes, (n, *out[:-1]))]
        elif loss_name == "binary_crossentropy":
            y = rng.integers(0, 2, (n, *out)).astype(dtype)
        else:
            y = rng.standard_normal((n, *out)).astype(dtype)
        data[key] = y
    return data


def _keras_compile(km, compile_config, keras2: bool, drop_metric=lambda m: False):
    """Compile the reference as Keras compiles a loaded file: `compile_from_config` for a .keras file's
    compile_config, Keras' own legacy reader for an .h5's training_config (loss and metric objects with their
    options included). `drop_metric` leaves metrics out (top-k in float64: TensorFlow has no such kernel)."""
    cc = copy.deepcopy(compile_config or {})  # Keras' deserialisation edits what it is given
    for key in ("metrics", "weighted_metrics"):
        if cc.get(key):
            cc[key] = _kept(cc[key], drop_metric)
    if "optimizer" in cc:
        km.compile_from_config(cc)
        return
    if keras2:
        from tf_keras.src.saving.legacy.saving_utils import compile_args_from_training_config
    else:
        from keras.src.legacy.saving.saving_utils import compile_args_from_training_config
    km.compile(**compile_args_from_training_config(cc))


def _kept(metrics, drop):
    """A metrics entry (a list, per-output lists, a dict by output) without the metrics `drop` picks."""
    if isinstance(metrics, dict) and "class_name" not in metrics:
        return {k: _kept(v, drop) for k, v in metrics.items()}
    if isinstance(metrics, list):  # an output's emptied list stays in place (None): the others keep their order
        kept = [_kept(m, drop) for m in metrics]
        return [k for k, m in zip(kept, metrics, strict=True) if k is not None or isinstance(m, list)] or None
    return None if drop(metrics) else metrics


def _flat_metrics(metrics) -> list:
    if isinstance(metrics, dict) and "class_name" not in metrics:
        return [m for v in metrics.values() for m in _flat_metrics(v)]
    if isinstance(metrics, list):
        return [m for v in metrics for m in _flat_metrics(v)]
    return [] if metrics is None else [metrics]


def _is_top_k(metric) -> bool:
    name = metric if isinstance(metric, str) else str(metric.get("class_name", "")) + str(metric.get("config", ""))
    return "top_k" in name.lower() or "topk" in name.lower()


@dataclass
class Trajectory:
    """A training run seen step by step: the running loss after each step and, for the reference run, each
    step's weights (every weighted layer's arrays in Keras' order); a run compared against a reference
    keeps only its distance from it at each step (memory: one run's snapshots)."""

    reference: Trajectory | None = None
    losses: list = field(default_factory=list)
    weights: list = field(default_factory=list)     # the reference's snapshots, one per step
    distances: list = field(default_factory=list)   # another run's weights' distance from the reference's
    history: dict = field(default_factory=dict)

    def record(self, loss: float, layers) -> None:
        snapshot = [[np.array(a, np.float64) for a in arrays] for arrays in layers()]
        if self.reference is None:
            self.weights.append(snapshot)
        else:
            self.distances.append(_distance(snapshot, self.reference.weights[len(self.losses)]))
        self.losses.append(loss)


def _distance(ours: list[list[np.ndarray]], theirs: list[list[np.ndarray]]) -> float:
    """The largest difference of any tensor, on its layer's scale (the largest |value| among that layer's
    arrays, Keras' side)."""
    flat_o = [a for layer in ours for a in layer]
    flat_t = [a for layer in theirs for a in layer]
    groups = [i for i, layer in enumerate(theirs) for _ in layer]
    return max(scaled_diffs(flat_o, flat_t, groups), default=0.0)


def _keras_run(keras, km, data, batch, epochs, weighted, plan, class_weight=None, reference=None) -> Trajectory:
    """Keras' `fit` with a callback recording each step (loss: Keras' running mean; weights), on the arrays
    `torchport fit` reads (several inputs and outputs as lists, sample weights, class weights)."""
    run = Trajectory(reference)
    layers = [keras_layer(km, conv) for conv, _ in weighted]

    class Steps(keras.callbacks.Callback):
        def on_train_batch_end(self, batch_index, logs=None):
            run.record(float(logs["loss"]), lambda: [layer.get_weights() for layer in layers])

    def one(arrays: list):
        return arrays[0] if len(arrays) == 1 else list(arrays)

    parts = splits(data, plan)
    train, val = parts["train"], parts.get("val")
    run.history = km.fit(one(train.x), one(train.y), sample_weight=train.sample_weight, class_weight=class_weight,
                         batch_size=batch, epochs=epochs, shuffle=False, verbose=0, callbacks=[Steps()],
                         validation_data=None if val is None else (one(val.x), one(val.y))).history
    return run


PERTURBED_RUNS = 2  # Keras' spread from itself: two runs from weights moved by one ulp (each run a sample)


def check_training(plan, path: str, arrays: dict | None = None, epochs: int = 2, batch: int = 32,
                   dtype: str = "float64", seed: int = 0, class_weight: dict | None = None) -> list[Result]:
    """`fit` in both frameworks on the same data in the same order (shuffle off, dropout off), the model's
    own compile settings, seen step by step: the running loss and every weight after each step, and the
    History per epoch. Beside it, Keras against itself: the same fit from weights moved by one ulp, twice.

    Keras' spread from itself sets what each step may differ by. While it stays within 1e-12 (float64) the
    steps are checked strictly (1e-9); until it passes 1e-8 each step is checked against FACTOR times it
    (its running maximum: rounding grows step by step). Beyond 1e-8 a run is chaotic: the rounding has grown
    enough to move activations across ReLU6's and max pooling's kinks, and each crossing jumps the runs apart
    at a step no implementation can predict (MobileNetV2 at batch 8: torchport 6.7e-8 -> 4.7e-4 at step 13,
    Keras against itself at step 15). Then only the end of the run is compared, against FACTOR times
    Keras' spread there, and the rows say the run is chaotic, from when, and by how much. The History is
    compared over the epochs that end before the chaos; later ones follow the weights (a discrete metric
    such as an accuracy over 16 samples flips a sample at random once runs jump apart)."""
    keras = reference_keras(path, plan.ctx.keras_version)
    previous = keras.config.floatx() if hasattr(keras, "config") else keras.backend.floatx()
    set_floatx = keras.config.set_floatx if hasattr(keras, "config") else keras.backend.set_floatx
    strict = 1e-9 if dtype == "float64" else 1e-4
    set_floatx(dtype)  # else Keras keeps its loss and learning rate in float32
    try:
        km = training_reference(path, plan.ctx.keras_version, dtype)
        ours_plan = plan if plan.dtype == dtype else plan_file(path, dtype)
        ours_plan.lr_dtype = dtype
        if arrays is None:  # and a validation set after it, as x_test / y_test would be
            data = random_data(plan, 10 * batch + batch // 2, seed, _loss_names(plan), dtype)
            n = 8 * batch + batch // 2
            data = {**{k: v[:n] for k, v in data.items()},
                    **{k.replace("_train", "_test", 1): v[n:] for k, v in data.items()}}
        else:
            data = dict(arrays)
        data = {k: v.astype(dtype) if v.dtype.kind == "f" else v for k, v in data.items()}
        drop_top_k = dtype == "float64"  # TensorFlow's in_top_k has no float64 kernel: Keras cannot run those
        start = km.get_weights()

        def keras_fit(weights, reference=None):  # compiled afresh each time: a fresh optimizer
            set_weights(km, weights)
            _keras_compile(km, plan.compile_config, plan.ctx.keras2, _is_top_k if drop_top_k else (lambda m: False))
            return in_keras(lambda: _keras_run(keras, km, data, batch, epochs, ours_plan.weighted, ours_plan,
                                                           class_weight, reference),
                            f"fit in {dtype}")

        theirs = keras_fit(start)
        rng = np.random.default_rng(seed + 5)
        itself = [keras_fit(one_ulp(start, rng), theirs) for _ in range(PERTURBED_RUNS)]
        km = None  # freed before the port trains
        ours = _torch_run(ours_plan, path, data, batch, epochs, seed, theirs, class_weight)
    finally:
        set_floatx(previous)
    return _training_rows(plan, ours, theirs, itself, epochs, dtype, strict, drop_top_k)


def _torch_run(plan, path, data, batch, epochs, seed, reference: Trajectory, class_weight=None) -> Trajectory:
    tm = plan.module()
    for m in tm.modules():
        if isinstance(m, torch.nn.modules.dropout._DropoutNd):
            m.p = 0.0
        if type(m).__name__ in AUGMENTATION and type(m).__module__ == augmentation.__name__:
            m.forward = _identity if type(m).__name__ != "RandomCrop" else \
                (lambda x, m=m: center_crop(x, m.height, m.width))
    cfg = FitConfig(model=path, data="", epochs=epochs, batch_size=batch, shuffle=False, seed=seed,
                    class_weight=class_weight)
    s = setup(plan, data, cfg, tm)
    run = Trajectory(reference)

    class Steps(engine.Callback):
        def on_train_batch_end(self, step, aggregator):
            state = {k: v.detach() for k, v in s.model.state_dict().items()}
            run.record(aggregator.running()["loss"], lambda: [  # each layer's arrays, as Keras' get_weights()
                [a for _, arrays in slots for a in arrays] for slots in plan.keras_arrays(state).values()])

    run.history = engine.fit(s.model, s.optimizer, s.compiled.loss, s.train_loader, epochs,
                             metrics=s.compiled.metrics, val_loader=s.val_loader, verbose=0,
                             callbacks=[Steps()]).history
    return run


def _identity(x):
    return x


CHAOTIC = 1e-8  # float64: Keras' spread from itself beyond which rounding starts to cross kinks


def _training_rows(plan, ours: Trajectory, theirs: Trajectory, itself: list[Trajectory], epochs: int, dtype: str,
                   strict: float, drop_top_k: bool) -> list[Result]:
    name = f"training {epochs} epochs {dtype}"
    n = len(theirs.losses)

    def rel(a, b):
        return abs(a - b) / max(abs(b), 1e-30)

    loss_d = np.array([rel(ours.losses[t], theirs.losses[t]) for t in range(n)])
    loss_k = np.maximum.accumulate([max(rel(k.losses[t], theirs.losses[t]) for k in itself) for t in range(n)])
    w_d = np.array(ours.distances)
    w_k = np.maximum.accumulate([max(k.distances[t] for k in itself) for t in range(n)])
    spread = np.maximum(loss_k, w_k)  # Keras' distance from itself, its running maximum
    quiet = int(np.sum(spread <= CHAOS)) or 1    # steps checked strictly
    calm = int(np.sum(spread <= CHAOTIC)) or 1   # steps before the run turns chaotic
    chaotic = calm < n
    rows = [Result(f"{name}: first {quiet} of {n} steps (Keras within {CHAOS:g} of itself), loss and weights",
                   "max rel |loss - keras|, max |w - keras| / layer scale",
                   float(max(loss_d[:quiet].max(), w_d[:quiet].max())), strict)]
    span = f"steps 1-{calm}" + (f" (chaotic from step {calm + 1}: one ulp moved Keras {spread[-1]:.2g} from "
                                "itself by the end)" if chaotic else "")
    for what, d, k, metric in (("loss", loss_d, loss_k, "max rel |loss - keras| so far"),
                               ("weights", w_d, w_k, "max |w - keras| / layer scale so far")):
        envelope = np.maximum.accumulate(d)[:calm]
        t = worst_ratio(list(envelope), list(k[:calm]), strict)
        rows.append(calibrated(f"{name}: {what} after each of {span}", f"{metric} (worst: step {t + 1})",
                               float(envelope[t]), strict, float(k[t])))
    if chaotic:
        rows.append(calibrated(f"{name}: weights at the end of the chaotic run", "max |w - keras| / layer scale",
                               float(w_d[-1]), strict, float(w_k[-1])))
    per_epoch = -(-n // epochs)
    calm_epochs = sum(1 for e in range(epochs) if min(n, (e + 1) * per_epoch) <= calm)
    for key in theirs.history:
        if calm_epochs == 0:  # an accuracy over 16 validation samples flips one sample at random once chaotic
            rows.append(Result(f"{name}: {key}", "-", float("nan"), 0.0, not_run=(
                f"the run is chaotic from step {calm + 1}, within its first epoch: the History follows the weights, "
                "compared at the end of the run")))
            continue
        h_t = np.asarray(theirs.history[key], np.float64)[:calm_epochs]
        h_o = np.asarray(ours.history.get(key, [np.nan] * epochs), np.float64)[:calm_epochs]
        h_k = [np.asarray(k.history[key], np.float64)[:calm_epochs] for k in itself]
        scale = np.maximum(np.abs(h_t), 1e-30)
        d = np.abs(h_o - h_t) / scale
        pairs = [np.abs(a - b) / scale for i, a in enumerate([h_t, *h_k]) for b in h_k[i:]]
        k = np.maximum.accumulate(np.max(pairs, axis=0))  # Keras' spread among its own runs, so far
        e = worst_ratio(list(d), list(k), strict)
        later = f" (epochs 1-{calm_epochs}: later ones chaotic, judged by the weights)" if calm_epochs < epochs else ""
        rows.append(calibrated(f"{name}: {key}{later}", f"max rel |{key} - keras| per epoch (worst: epoch {e + 1})",
                               float(d[e]), strict, float(k[e])))
    if drop_top_k and any(_is_top_k(m) for m in _flat_metrics((plan.compile_config or {}).get("metrics"))):
        rows[0].check += " (top-k metrics left out: TensorFlow has no float64 in_top_k)"
    return rows


def _loss_names(plan) -> list:
    """Each output's loss name (None: no loss), "crossentropy" resolved as for labels of the output's shape."""
    shapes = [(None, *t.shape) for t in plan.outputs]
    losses = compiling.resolve_outputs(plan.compile_config, shapes, shapes, io_names(plan)[1]).losses
    return [None if loss is None else loss.name for loss in losses]


def check_optimizer(plan, path: str, steps: int = 1000, seed: int = 0) -> Result:
    """The model's own optimizer (compile settings) on the same random gradients in Keras and torchport,
    a 64-vector in float32, compared every 100th step."""
    import tensorflow as tf

    keras = reference_keras(path, plan.ctx.keras_version)
    cc = plan.compile_config or {}
    kopt = keras.optimizers.deserialize(copy.deepcopy(cc.get("optimizer", cc.get("optimizer_config"))))
    shapes = [(None, *t.shape) for t in plan.outputs]
    compiled = compiling.resolve_outputs(cc, shapes, shapes, io_names(plan)[1])
    rng = np.random.default_rng(seed)
    w0 = rng.normal(size=64).astype("float32")
    grads = rng.normal(size=(steps, 64)).astype("float32")
    var = tf.Variable(w0)
    p = torch.tensor(w0, requires_grad=True)
    opt = compiled.make_optimizer([p], "float32")
    largest = optimizer_gap(kopt, var, opt, p, grads)
    return Result(f"{compiled.optimizer}, {steps} steps", "max rel |w - keras| every 100th", largest, 1e-5)


def check_structure(plan, path: str, session: Session | None = None) -> list[Result]:
    """The summary table is Keras' own text; the parameter count is Keras'."""
    km = (session or Session(plan, path)).keras("float32")
    lines = []
    if not plan.ctx.keras2:
        km.summary(print_fn=lambda s, **kw: lines.append(s))
    same = plan.summary.strip() == "\n".join(lines).strip() if lines else True
    return [Result("structure: summary text", "differs from Keras' model.summary()", 0.0 if same else 1.0, 0.0),
            Result("structure: parameters", "|count - Keras' count|", abs(plan.param_count() - km.count_params()),
                   0.0)]


def model_checks(plan, path: str, arrays: dict | None = None, session: Session | None = None,
                 batch_size: int = 32) -> list[Result]:
    s = session or Session(plan, path)
    results = check_structure(plan, path, s) + port_checks(plan, path, s)
    s.release()
    if plan.compile_config:
        results += guarded("optimizer, 1000 steps", lambda: check_optimizer(plan, path))
        results += guarded("training 2 epochs float64", lambda: check_training(plan, path, arrays, batch=batch_size))
    return results
