"""Parity of a ported Keras model file: the port against the Keras that wrote the file, same weights.

The reference is loaded with `safe_mode` (Keras refuses Lambda bytecode itself; torchport already did),
by Keras 3 for Keras 3 files and by tf_keras for tf.keras 2 files. Inputs are drawn from a seeded numpy
Generator in the model's input shapes: images in [0, 1], token ids in the Embedding's vocabulary with
padding zeros in front (masks exercised), other inputs standard normal. Everything runs in inference mode.
"""
from __future__ import annotations

import copy

import numpy as np
import torch

from .. import engine
from ..errors import first_line
from ..keras_env import import_keras
from ..keras_fit import compile as compiling
from ..keras_fit.run import FitConfig, setup
from ..porting.plan import plan_file
from ..porting.convert import NCHW
from .core import (
    KerasCannotRun, Result, format_table, in_keras, max_abs, max_rel, optimizer_gap, summary_line, worst,
)

FLOAT64_POLICY = {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float64"},
                  "registered_name": None}


def reference_keras(path: str, keras_version: str):
    """The `keras` module that wrote the file: Keras 3, or tf_keras for a tf.keras 2 file."""
    keras = import_keras()
    if keras_version.startswith("2."):
        import tf_keras
        return tf_keras
    return keras


def load_reference(path: str, keras_version: str, dtype: str = "float32"):
    keras = reference_keras(path, keras_version)
    model = keras.models.load_model(path, compile=False, safe_mode=True) if not keras_version.startswith("2.") \
        else keras.models.load_model(path, compile=False)
    if dtype == "float32":
        return model
    config = model.get_config()
    _set_dtype(config, "float64", keras_version.startswith("2."))
    twin = model.__class__.from_config(config)
    twin.set_weights([w.astype("float64") for w in model.get_weights()])
    return twin


def _set_dtype(obj, dtype: str, keras2: bool) -> None:
    """Every layer config's dtype policy (and float inputs' dtype) to `dtype`, recursively."""
    if isinstance(obj, dict):
        if "dtype" in obj and (isinstance(obj["dtype"], dict) or obj["dtype"] in ("float32", "float64")):
            obj["dtype"] = dtype if keras2 or not isinstance(obj["dtype"], dict) else dict(FLOAT64_POLICY)
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


def check_forward(plan, path: str, dtype: str = "float32", batch: int = 8, seed: int = 0) -> Result:
    km = load_reference(path, plan.ctx.keras_version, dtype)
    tm = torch_model(plan, path, dtype)
    x = make_inputs(plan, batch, seed, dtype)
    theirs = in_keras(lambda: [np.asarray(o) for o in _listify(km(x if len(x) > 1 else x[0], training=False))],
                      f"this model in {dtype}")
    with torch.no_grad():
        ours = [o.numpy() for o in _listify(tm(*torch_inputs(plan, x)))]
    diff = worst((ours, theirs), lambda a, b: max_abs(a, b) / max(1.0, float(np.max(np.abs(b)))))
    return Result(f"forward {dtype} (batch {batch}){_caveat(plan, dtype)}", "max |out - keras| / max(1, |keras|)",
                  diff, _tolerance(plan, dtype, 1e-10, 1e-5))


def _float32_inside(plan) -> list[str]:
    return sorted(plan.ctx.caveats)


def _tolerance(plan, dtype: str, tol64: float, tol32: float) -> float:
    """float64 tolerances hold only where TensorFlow computes in float64 throughout."""
    return tol64 if dtype == "float64" and not _float32_inside(plan) else tol32


def _caveat(plan, dtype: str) -> str:
    return f" [{'; '.join(_float32_inside(plan))}]" if dtype == "float64" and _float32_inside(plan) else ""


def _cotangents(outs, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed + 1)
    return [rng.standard_normal(tuple(o.shape)).astype(o.detach().numpy().dtype) for o in outs]


def keras_gradients(plan, km, x, cot) -> list[np.ndarray]:
    """Keras' gradient of sum(out * c) for every trainable variable, in the port's layer order."""
    import tensorflow as tf

    def run():
        with tf.GradientTape() as tape:
            k_outs = _listify(km(x if len(x) > 1 else x[0], training=False))
            loss = tf.add_n([tf.reduce_sum(o * c) for o, c in zip(k_outs, cot, strict=True)])
        k_vars = [w for conv, _ in plan.weighted for w in km.get_layer(conv.name).trainable_weights]
        return [np.asarray(tf.convert_to_tensor(g)) for g in tape.gradient(loss, k_vars)]  # Embedding: sparse

    return in_keras(run, f"this model's gradients in {np.asarray(cot[0]).dtype}")


def gradient_pairs(plan, km, tm, x, seed: int):
    """(ours, theirs): the gradient of sum(out * c) (c a fixed random cotangent) for every trainable
    Keras variable, ours mapped to Keras' layout by each layer's converter."""
    if not any(p.requires_grad for p in tm.parameters()):
        return [], []
    xs = torch_inputs(plan, x)
    tm.zero_grad()
    outs = _listify(tm(*xs))
    cot = _cotangents(outs, seed)
    sum(((o * torch.from_numpy(c)).sum() for o, c in zip(outs, cot, strict=True)), torch.zeros(())).backward()
    ours = []
    for conv, expected in plan.weighted:
        if not km.get_layer(conv.name).trainable_weights:
            continue
        state = {name[len(conv.attr) + 1:]: (p.grad if p.grad is not None else torch.zeros_like(p)).numpy()
                 for name, p in tm.named_parameters() if name.startswith(conv.attr + ".")}
        state.update({name[len(conv.attr) + 1:]: np.zeros(tuple(b.shape))  # buffers have no gradient
                      for name, b in tm.named_buffers() if name.startswith(conv.attr + ".")})
        ours += [a for a, w in zip(conv.to_keras(state), expected, strict=True) if w.trainable]
    return ours, keras_gradients(plan, km, x, cot)


SENSITIVITY_FACTOR = 30  # float32 error of a correct run / the float64 gradients' change under 2^-24 input noise


def float32_sensitivity(plan, path: str, x, cot, seed: int) -> float:
    """How much the float64 gradients move when the inputs move by float32 rounding (relative 2^-24, random
    signs): the conditioning of this model at these inputs. A saturated softmax makes its gradients a
    difference of nearly equal numbers, and then two correct float32 runs (torch's and TensorFlow's
    reductions in another order) disagree far beyond 1e-5."""
    km64 = load_reference(path, plan.ctx.keras_version, "float64")
    rng = np.random.default_rng(seed + 2)
    up = [a.astype(np.float64) if a.dtype == np.float32 else a for a in x]
    nudged = [a * (1 + rng.choice([-1.0, 1.0], a.shape) * 2.0 ** -24) if a.dtype == np.float64 else a for a in up]
    cot64 = [c.astype(np.float64) for c in cot]
    return worst((keras_gradients(plan, km64, nudged, cot64), keras_gradients(plan, km64, up, cot64)), max_rel)


def check_gradients(plan, path: str, dtype: str = "float32", batch: int = 8, seed: int = 0) -> Result:
    """Our gradients against Keras' in the same dtype. In float32 the tolerance is 1e-5, or, where the model
    is ill-conditioned at these inputs, 30 times the gradients' sensitivity to float32 rounding of the
    inputs (measured on Keras' float64 model), whichever is larger; the row says so when it widens."""
    km = load_reference(path, plan.ctx.keras_version, dtype)
    tm = torch_model(plan, path, dtype)
    x = make_inputs(plan, batch, seed, dtype)
    ours, theirs = gradient_pairs(plan, km, tm, x, seed)
    diff, tolerance = worst((ours, theirs), max_rel), _tolerance(plan, dtype, 1e-9, 1e-5)
    metric = "max rel |grad - keras|"
    if dtype == "float32" and diff > tolerance:
        with torch.no_grad():
            cot = _cotangents(_listify(tm(*torch_inputs(plan, x))), seed)
        sensitivity = float32_sensitivity(plan, path, x, cot, seed)
        if SENSITIVITY_FACTOR * sensitivity > tolerance:
            tolerance = float(f"{SENSITIVITY_FACTOR * sensitivity:.2g}")
            metric += f" (ill-conditioned: float32 sensitivity {sensitivity:.2g})"
    return Result(f"gradients {dtype}, all {len(theirs)} tensors (batch {batch}){_caveat(plan, dtype)}",
                  metric, diff, tolerance)


def keras_cannot_run(plan, path: str) -> str | None:
    """Why Keras itself cannot load or run this model here, or None. Keras cannot read some files it wrote (a
    masked .h5), and TensorFlow's CPU kernels refuse channels_first convolutions and pooling (NHWC only)."""
    try:
        km = load_reference(path, plan.ctx.keras_version)
    except Exception as e:
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
    return out if isinstance(out, list) else [out]


def port_checks(plan, path: str) -> list[Result]:
    return [r for dtype in ("float32", "float64") for r in guarded(f"forward {dtype}", lambda d=dtype: check_forward(
            plan, path, d))] + \
        [r for dtype in ("float32", "float64") for r in guarded(f"gradients {dtype}", lambda d=dtype: check_gradients(
            plan, path, d))]


def port_parity(path: str, plan) -> tuple[list[Result] | None, str | None]:
    """The port's forward and gradient checks against Keras: (results, None), or (None, why) when Keras
    itself cannot load or run this model here."""
    why = keras_cannot_run(plan, path)
    return (None, why) if why else (port_checks(plan, path), None)


def port_report(plan, results: list[Result] | None, why: str | None = None) -> str:
    """parity.md: the results of `port_parity`, as `torchport parity` prints them."""
    keras = import_keras()
    import tensorflow as tf

    head = [f"# Parity of `{plan.file_name}` ({plan.title}) against Keras", "",
            f"Keras {keras.__version__}, TensorFlow {tf.__version__}, torch {torch.__version__}; "
            "same weights, seeded inputs, inference mode.", ""]
    if results is None:
        return "\n".join(head + [f"{why}: nothing to compare against.", ""])
    return "\n".join(head + ["```", format_table(results), "```", "", summary_line(results), ""])


# ---- training parity (`torchport parity --model`) -------------------------------------------------------------

def _dropout_off(config) -> None:
    """Every dropout rate in a Keras config set to 0: two frameworks cannot draw the same masks."""
    if isinstance(config, dict):
        if "rate" in config and isinstance(config["rate"], (int, float)):
            config["rate"] = 0.0
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
    model = load_reference(path, keras_version, "float32")
    config = model.get_config()
    _dropout_off(config)
    if dtype == "float64":
        _set_dtype(config, "float64", keras_version.startswith("2."))
    twin = model.__class__.from_config(config)
    twin.set_weights([w.astype(dtype) for w in model.get_weights()])
    return twin


def random_data(plan, n: int, seed: int, loss_name: str, dtype: str) -> dict:
    """x_train of the model's input shape and labels that fit its loss, seeded (when no --data is given)."""
    rng = np.random.default_rng(seed + 7)
    x = make_inputs(plan, n, seed, dtype)[0]
    out = plan.outputs[0].shape
    classes = out[-1]
    if loss_name == "sparse_categorical_crossentropy":
        y = rng.integers(0, classes, (n, *out[:-1]))
    elif loss_name == "categorical_crossentropy":
        y = np.eye(classes, dtype=dtype)[rng.integers(0, classes, (n, *out[:-1]))]
    elif loss_name == "binary_crossentropy":
        y = rng.integers(0, 2, (n, *out)).astype(dtype)
    else:
        y = rng.standard_normal((n, *out)).astype(dtype)
    return {"x_train": x, "y_train": y}  # x in Keras' layout, as make_inputs draws it


def _keras_compile(km, compile_config, keras2: bool, drop_metric=lambda m: False):
    """Compile the reference as Keras compiles a loaded file: `compile_from_config` for a .keras file's
    compile_config, Keras' own legacy reader for an .h5's training_config (loss and metric objects with their
    options included). `drop_metric` leaves metrics out (top-k in float64: TensorFlow has no such kernel)."""
    cc = copy.deepcopy(compile_config or {})  # Keras' deserialisation edits what it is given
    if isinstance(cc.get("metrics"), list):
        cc["metrics"] = [m for m in cc["metrics"] if not drop_metric(m)] or None
    if "optimizer" in cc:
        km.compile_from_config(cc)
        return
    if keras2:
        from tf_keras.src.saving.legacy.saving_utils import compile_args_from_training_config
    else:
        from keras.src.legacy.saving.saving_utils import compile_args_from_training_config
    km.compile(**compile_args_from_training_config(cc))


def _is_top_k(metric) -> bool:
    name = metric if isinstance(metric, str) else str(metric.get("class_name", "")) + str(metric.get("config", ""))
    return "top_k" in name.lower() or "topk" in name.lower()


def check_training(plan, path: str, arrays: dict | None = None, epochs: int = 2, batch: int = 32,
                   dtype: str = "float64", seed: int = 0) -> list[Result]:
    """`fit` in both frameworks on the same data in the same order (shuffle off, dropout off), the model's
    own compile settings: loss and metrics per epoch, and every final weight (BatchNorm statistics too)."""
    keras = reference_keras(path, plan.ctx.keras_version)
    previous = keras.config.floatx() if hasattr(keras, "config") else keras.backend.floatx()
    set_floatx = keras.config.set_floatx if hasattr(keras, "config") else keras.backend.set_floatx
    set_floatx(dtype)  # else Keras keeps its loss and learning rate in float32
    try:
        km = training_reference(path, plan.ctx.keras_version, dtype)
        ours_plan = plan if plan.dtype == dtype else plan_file(path, dtype)
        ours_plan.lr_dtype = dtype
        tm = ours_plan.module()
        for m in tm.modules():
            if isinstance(m, torch.nn.modules.dropout._DropoutNd):
                m.p = 0.0
        loss_name = _loss_name(plan, arrays)
        if arrays is None:  # and a validation set after it, as x_test / y_test would be
            data = random_data(plan, 10 * batch + batch // 2, seed, loss_name, dtype)
            n = 8 * batch + batch // 2
            data = {"x_train": data["x_train"][:n], "y_train": data["y_train"][:n],
                    "x_test": data["x_train"][n:], "y_test": data["y_train"][n:]}
        else:
            data = dict(arrays)
        data = {k: v.astype(dtype) if v.dtype.kind == "f" else v for k, v in data.items()}
        drop_top_k = dtype == "float64"  # TensorFlow's in_top_k has no float64 kernel: Keras cannot run those
        _keras_compile(km, plan.compile_config, plan.ctx.keras2, _is_top_k if drop_top_k else (lambda m: False))
        val = (data["x_test"], data["y_test"]) if "x_test" in data else None
        kh = in_keras(lambda: km.fit(data["x_train"], data["y_train"], batch_size=batch, epochs=epochs,
                                     shuffle=False, validation_data=val, verbose=0).history, f"fit in {dtype}")
        cfg = FitConfig(model=path, data="", epochs=epochs, batch_size=batch, shuffle=False, seed=seed)
        s = setup(ours_plan, data, cfg, tm)
        th = engine.fit(s.model, s.optimizer, s.compiled.loss, s.train_loader, epochs, metrics=s.compiled.metrics,
                        val_loader=s.val_loader, verbose=0).history
    finally:
        set_floatx(previous)
    tol = 1e-9 if dtype == "float64" else 1e-4
    results = []
    for key in kh:
        results.append(Result(f"training {epochs} epochs {dtype}: {key}", f"max rel |{key} - keras| per epoch",
                              worst(([th.get(key, [np.nan] * epochs)], [kh[key]]), max_rel), tol))
    if drop_top_k and any(_is_top_k(m) for m in (plan.compile_config or {}).get("metrics") or []):
        results[0].check += " (top-k metrics left out: TensorFlow has no float64 in_top_k)"
    ours_w = [a for slots in ours_plan.keras_arrays(s.model.state_dict()).values() for _, arrs in slots for a in arrs]
    theirs_w = [w for conv, _ in ours_plan.weighted for w in km.get_layer(conv.name).get_weights()]
    results.append(Result(f"training {epochs} epochs {dtype}: weights", "max rel |w - keras|",
                          worst((ours_w, theirs_w), max_rel), tol))
    return results


def _loss_name(plan, arrays) -> str:
    out_shape = (None, *plan.outputs[0].shape)
    y_shape = arrays["y_train"].shape if arrays is not None else out_shape
    return compiling.resolve(plan.compile_config, y_shape, out_shape).loss.name


def check_optimizer(plan, path: str, steps: int = 1000, seed: int = 0) -> Result:
    """The model's own optimizer (compile settings) on the same random gradients in Keras and torchport,
    a 64-vector in float32, compared every 100th step."""
    import tensorflow as tf

    keras = reference_keras(path, plan.ctx.keras_version)
    cc = plan.compile_config or {}
    kopt = keras.optimizers.deserialize(copy.deepcopy(cc.get("optimizer", cc.get("optimizer_config"))))
    compiled = compiling.resolve(cc, (None, *plan.outputs[0].shape), (None, *plan.outputs[0].shape))
    rng = np.random.default_rng(seed)
    w0 = rng.normal(size=64).astype("float32")
    grads = rng.normal(size=(steps, 64)).astype("float32")
    var = tf.Variable(w0)
    p = torch.tensor(w0, requires_grad=True)
    opt = compiled.make_optimizer([p], "float32")
    largest = optimizer_gap(kopt, var, opt, p, grads)
    return Result(f"{compiled.optimizer}, {steps} steps", "max rel |w - keras| every 100th", largest, 1e-5)


def check_structure(plan, path: str) -> list[Result]:
    """The summary table is Keras' own text; the parameter count is Keras'."""
    km = load_reference(path, plan.ctx.keras_version)
    lines = []
    if not plan.ctx.keras2:
        km.summary(print_fn=lambda s, **kw: lines.append(s))
    same = plan.summary.strip() == "\n".join(lines).strip() if lines else True
    return [Result("structure: summary text", "differs from Keras' model.summary()", 0.0 if same else 1.0, 0.0),
            Result("structure: parameters", "|count - Keras' count|", abs(plan.param_count() - km.count_params()),
                   0.0)]


def model_checks(plan, path: str, arrays: dict | None = None) -> list[Result]:
    results = check_structure(plan, path) + port_checks(plan, path)
    if plan.compile_config and len(plan.inputs) == 1 and len(plan.outputs) == 1:
        results += guarded("optimizer, 1000 steps", lambda: check_optimizer(plan, path))
        results += guarded("training 2 epochs float64", lambda: check_training(plan, path, arrays))
    return results
