"""Cross-framework parity checks: torchport against TensorFlow/Keras on the same weights.

Each check builds the Keras reference, copies the same weights into both frameworks and returns
`Result`s (check, metric, max difference, tolerance). `parity_tests/` asserts them (with hypothesis
drawing more inputs); `torchport parity` prints them as a table. Keras is imported through
`keras_env.import_keras()` (torch's compiler stack must load before TensorFlow).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from . import engine
from .cifar10 import SimpleCNN
from .device import TensorLoader
from .keras_compat import KerasSGD, categorical_accuracy, categorical_crossentropy
from .keras_io import keras_layout, keras_to_torch, to_keras_layout, weighted_layers
from .mnist import MnistModel

CIFAR_SHAPE = (32, 32, 3)


@dataclass
class Result:
    check: str
    metric: str
    diff: float
    tol: float

    @property
    def passed(self) -> bool:
        return bool(self.diff <= self.tol)


def max_abs(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)))) if np.size(a) else 0.0


def max_rel(a, b) -> float:
    """max |a - b| / max |b|: relative to the reference's scale (robust where b crosses zero)."""
    b = np.asarray(b, np.float64)
    return max_abs(a, b) / max(float(np.max(np.abs(b))), 1e-30)


# ---- the Keras references -------------------------------------------------------------------------------

def keras_cifar(keras, dtype="float32", rates=(0.2, 0.5)):
    """The seed's model, layer for layer (names reset so they read conv2d, dropout, ... as in the seed)."""
    keras.utils.clear_session()
    L = keras.layers
    return keras.Sequential([
        keras.Input(shape=CIFAR_SHAPE, dtype=dtype),
        L.Conv2D(filters=32, kernel_size=(3, 3), padding="same", activation="relu", dtype=dtype),
        L.Dropout(rates[0], dtype=dtype),
        L.Conv2D(filters=32, kernel_size=(3, 3), activation="relu", padding="same", dtype=dtype),
        L.MaxPooling2D(pool_size=(2, 2), dtype=dtype),
        L.Flatten(dtype=dtype),
        L.Dense(512, activation="relu", dtype=dtype),
        L.Dropout(rates[1], dtype=dtype),
        L.Dense(10, activation="softmax", dtype=dtype),
    ])


def keras_mnist(keras, dtype="float32"):
    """The Keras equivalent of MnistModel: Flatten -> Dense(32, relu) -> Dense(10) (logits)."""
    keras.utils.clear_session()
    L = keras.layers
    return keras.Sequential([keras.Input(shape=(28, 28), dtype=dtype), L.Flatten(dtype=dtype),
                             L.Dense(32, activation="relu", dtype=dtype), L.Dense(10, dtype=dtype)])


def twins(keras, which="cifar", dtype="float32", rates=(0.2, 0.5)):
    """(keras_model, torch_model) holding the same weights (Keras' own glorot draw)."""
    km = keras_cifar(keras, dtype, rates) if which == "cifar" else keras_mnist(keras, dtype)
    tm = SimpleCNN() if which == "cifar" else MnistModel()
    if which == "cifar":
        tm.dropout.p, tm.dropout_1.p = rates
    tm = tm.to(torch.float64 if dtype == "float64" else torch.float32)
    keras_to_torch(km, tm)
    return km, tm


def to_nchw(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def torch_probs(tm, x: np.ndarray) -> np.ndarray:
    tm.eval()
    with torch.no_grad():
        xt = to_nchw(x) if x.ndim == 4 else torch.from_numpy(x)
        out = tm(xt)
        return (torch.softmax(out, -1) if isinstance(tm, SimpleCNN) else out).numpy()


def forward_diff(km, tm, x: np.ndarray) -> float:
    """max |torch - keras| of the inference-mode outputs (probabilities for the CNN, logits for MNIST)."""
    return max_abs(torch_probs(tm, x), np.asarray(km(x, training=False)))


# ---- checks ----------------------------------------------------------------------------------------------

def check_structure(keras) -> list[Result]:
    from .keras_compat.summary import summary_rows

    out = []
    for which, example in (("cifar", torch.zeros(1, 3, 32, 32)), ("mnist", None)):
        km, tm = twins(keras, which)
        if which == "cifar":
            rows = summary_rows(tm, example)
            ours = [(n, s, p) for n, _, s, p in rows]
            theirs = [(l.name, str(tuple(l.output.shape)), l.count_params()) for l in km.layers]
            mismatches = sum(a != b for a, b in zip(ours, theirs)) + abs(len(ours) - len(theirs))
            out.append(Result("structure cifar10", "layers differing (name, shape, params)", mismatches, 0))
        ours_p = [p.numel() for _, l in weighted_layers(tm) for p in (l.weight, l.bias)]
        theirs_p = [int(np.prod(w.shape)) for w in km.get_weights()]
        out.append(Result(f"structure {which} parameter tensors", "param count difference",
                          abs(sum(ours_p) - sum(theirs_p)) + sum(a != b for a, b in zip(ours_p, theirs_p)), 0))
    return out


def check_forward(keras, which="cifar", batch=16, dtype="float32", x=None, seed=0) -> Result:
    km, tm = twins(keras, which, dtype)
    rng = np.random.default_rng(seed)
    shape = CIFAR_SHAPE if which == "cifar" else (28, 28)
    x = rng.uniform(-0.5, 1.5, (batch, *shape)).astype(dtype) if x is None else x.astype(dtype)
    diff = forward_diff(km, tm, x)
    return Result(f"forward {which} {dtype} (batch {len(x)})", "max |out - keras|", diff,
                  1e-10 if dtype == "float64" else 1e-5)


def check_loss(keras, seed=0) -> list[Result]:
    """Loss on the softmax output: TF's logits path (in a tf.function, as fit runs) and the clipped path."""
    import tensorflow as tf
    from keras.src.backend.torch import nn as keras_torch_nn  # Keras' torch-backend formula, as written there

    km, tm = twins(keras, "cifar")
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, (32, *CIFAR_SHAPE)).astype("float32")
    x[:4] *= 60.0  # saturates the softmax: probabilities of exactly 0 and 1
    y = np.eye(10, dtype="float32")[rng.integers(0, 10, 32)]

    @tf.function
    def keras_loss(x, y):
        return keras.losses.categorical_crossentropy(y, km(x, training=False))

    theirs = np.asarray(keras_loss(x, y))
    tm.eval()
    with torch.no_grad():
        logits = tm(to_nchw(x))
        ours = torch.stack([categorical_crossentropy(logits[i:i + 1], torch.from_numpy(y[i:i + 1])) for i in range(32)])
        ours_clipped = torch.stack([categorical_crossentropy(logits[i:i + 1], torch.from_numpy(y[i:i + 1]), clipped=True)
                                    for i in range(32)])
        keras_clipped = keras_torch_nn.categorical_crossentropy(torch.from_numpy(y), torch.softmax(logits, -1))
    saturated = float(np.max(theirs[:4]))
    return [Result("loss, TF logits path", "max rel |loss - keras|", max_rel(ours.numpy(), theirs), 1e-5),
            Result("loss, saturated logits reach", "keras loss beyond the clip (>16.1)",
                   0.0 if saturated > -math.log(1e-7) + 1 else 1.0, 0.0),
            Result("loss, clipped path (torch backend)", "max rel |loss - keras|",
                   max_rel(ours_clipped.numpy(), keras_clipped.numpy()), 1e-6)]


def _keras_grads(keras, km, forward, x, y):
    """Mean loss and gradients in Keras, the loss traced in a tf.function as `fit` does (the logits path)."""
    import tensorflow as tf

    @tf.function
    def loss_fn(x, y):
        return tf.reduce_mean(keras.losses.categorical_crossentropy(y, forward(x)))

    with tf.GradientTape() as tape:
        loss = loss_fn(x, y)
    return float(loss), [np.asarray(g) for g in tape.gradient(loss, km.trainable_variables)]


def _torch_grads(tm, x, y):
    tm.zero_grad()
    loss = categorical_crossentropy(tm(to_nchw(x)), torch.from_numpy(y))
    loss.backward()
    grads = [keras_layout(p.grad.numpy()) for _, layer in weighted_layers(tm) for p in (layer.weight, layer.bias)]
    return float(loss.detach()), grads


def check_gradients(keras, batch=16, seed=0) -> Result:
    km, tm = twins(keras, "cifar")
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, (batch, *CIFAR_SHAPE)).astype("float32")
    y = np.eye(10, dtype="float32")[rng.integers(0, 10, batch)]
    _, theirs = _keras_grads(keras, km, lambda x: km(x, training=False), x, y)
    tm.eval()
    _, ours = _torch_grads(tm, x, y)
    return Result(f"gradients, all 8 tensors (batch {batch})", "max rel |grad - keras|",
                  max(max_rel(a, b) for a, b in zip(ours, theirs)), 1e-5)


def check_train_mode(keras, batch=8, seed=0) -> Result:
    """A training-mode step with the same dropout masks injected into both frameworks."""
    km, tm = twins(keras, "cifar")
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, (batch, *CIFAR_SHAPE)).astype("float32")
    y = np.eye(10, dtype="float32")[rng.integers(0, 10, batch)]
    m1 = (rng.uniform(size=(batch, 32, 32, 32)) > 0.2).astype("float32") / 0.8   # inverted dropout, NHWC
    m2 = (rng.uniform(size=(batch, 512)) > 0.5).astype("float32") / 0.5
    conv2d, _, conv2d_1, pool, flatten, dense, _, dense_1 = km.layers

    def keras_masked(x):  # the Sequential's own layers, the dropouts replaced by the fixed masks
        h = conv2d(x) * m1
        h = flatten(pool(conv2d_1(h)))
        return dense_1(dense(h) * m2)

    k_loss, theirs = _keras_grads(keras, km, keras_masked, x, y)
    tm.train()
    hooks = [tm.dropout.register_forward_hook(lambda m, i, o: i[0] * to_nchw(m1)),
             tm.dropout_1.register_forward_hook(lambda m, i, o: i[0] * torch.from_numpy(m2))]
    t_loss, ours = _torch_grads(tm, x, y)
    for h in hooks:
        h.remove()
    return Result("train mode, injected dropout masks", "max rel |loss, grads - keras|",
                  max([abs(t_loss - k_loss) / abs(k_loss)] + [max_rel(a, b) for a, b in zip(ours, theirs)]), 1e-5)


def check_optimizer(keras, variant="momentum", steps=1000, seed=0) -> Result:
    """The same random gradients through Keras' SGD and KerasSGD; compared every 100th step."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    w0 = rng.normal(size=64).astype("float32")
    grads = rng.normal(size=(steps, 64)).astype("float32")
    kw = dict(learning_rate=0.01, momentum=0.9, nesterov=variant == "nesterov")
    if variant == "legacy decay":
        import tf_keras
        kopt = tf_keras.optimizers.legacy.SGD(decay=0.01 / 25, **kw)
        var = tf.Variable(w0)
        ours_opt_kw = dict(decay=0.01 / 25, legacy_decay=True)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            kopt = keras.optimizers.SGD(decay=0.01 / 25, **kw)  # Keras 3: decay ignored
        var = keras.Variable(w0)
        ours_opt_kw = dict(decay=0.01 / 25)
    p = torch.tensor(w0, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        opt = KerasSGD([p], **kw, **ours_opt_kw)
    worst = 0.0
    for t in range(steps):
        kopt.apply_gradients([(tf.constant(grads[t]), var)])
        p.grad = torch.from_numpy(grads[t])
        opt.step()
        if (t + 1) % 100 == 0:
            worst = max(worst, max_rel(p.detach().numpy(), np.asarray(var)))
    return Result(f"SGD {variant}, {steps} steps", "max rel |w - keras| every 100th", worst, 1e-5)


def _sample_subset(n):
    import contextlib
    import io

    from .cifar10 import load_data
    with contextlib.redirect_stderr(io.StringIO()):
        (x, y), _ = load_data(None)
    return x[:n], y[:n]


def _sample_loader(x_u8, y_u8, batch, dtype):
    """Keras-layout uint8 images and labels -> unshuffled batches of x / 255 and one-hot targets."""
    return TensorLoader(to_nchw(x_u8), torch.from_numpy(y_u8.ravel().astype(np.int64)), batch,
                        transform=lambda a, b: (a.to(dtype) / 255.0, F.one_hot(b, 10).to(dtype)))


def check_short_training(keras, epochs=2, batch=32, dtype="float64") -> list[Result]:
    """Real CIFAR-10 images (the bundled sample), same order, dropout off: fit in both, compare.

    float64 by default: in float32 the two frameworks' last-bit differences flip near-tied max-pool
    winners and near-zero ReLUs (real images have flat regions), and SGD then amplifies each flip; the
    trajectories part after a few dozen steps although every single step agrees to 1e-6 (see
    check_gradients). In float64 such flips need ties within 1e-16, and the trajectories stay together.
    """
    previous = keras.config.floatx()
    keras.config.set_floatx(dtype)  # else Keras computes the loss and keeps lr in float32
    try:
        return _short_training(keras, epochs, batch, dtype)
    finally:
        keras.config.set_floatx(previous)


def _short_training(keras, epochs, batch, dtype):
    x_u8, y_u8 = _sample_subset(1000)  # 32 batches, the last of 8
    x = x_u8.astype(dtype) / 255.0
    y = np.eye(10, dtype=dtype)[y_u8.ravel()]
    km, tm = twins(keras, "cifar", dtype=dtype, rates=(0.0, 0.0))
    torch_dtype = torch.float64 if dtype == "float64" else torch.float32
    km.compile(loss="categorical_crossentropy", optimizer=keras.optimizers.SGD(learning_rate=0.01, momentum=0.9),
               metrics=["accuracy"])
    kh = km.fit(x, y, batch_size=batch, epochs=epochs, shuffle=False, verbose=0).history
    loader = _sample_loader(x_u8, y_u8, batch, torch_dtype)
    th = engine.fit(tm, KerasSGD(tm.parameters(), learning_rate=0.01, momentum=0.9), categorical_crossentropy,
                    loader, epochs, metrics={"accuracy": categorical_accuracy}, verbose=0).history
    ours_w = [a for _, layer in weighted_layers(tm) for a in to_keras_layout(layer)]
    epochs = f"{epochs} epochs {dtype}"
    return [Result(f"training {epochs}: loss", "max |loss - keras| per epoch", max_abs(th["loss"], kh["loss"]), 1e-4),
            Result(f"training {epochs}: accuracy", "max |acc - keras| per epoch",
                   max_abs(th["accuracy"], kh["accuracy"]), 1e-4),
            Result(f"training {epochs}: weights", "max rel |w - keras|",
                   max(max_rel(a, b) for a, b in zip(ours_w, km.get_weights())), 1e-4)]


def check_metrics(keras, seed=0) -> list[Result]:
    """Accuracy with exact ties, and an epoch's aggregation with a partial last batch (Keras' evaluate)."""
    rng = np.random.default_rng(seed)
    probs = rng.integers(0, 3, (200, 10)).astype("float32")  # many exact ties
    y = np.eye(10, dtype="float32")[rng.integers(0, 10, 200)]
    theirs = np.asarray(keras.metrics.categorical_accuracy(y, probs))
    ours = (torch.from_numpy(probs).argmax(-1) == torch.from_numpy(y).argmax(-1)).float().numpy()
    x_u8, y_u8 = _sample_subset(1000)
    km, tm = twins(keras, "cifar")
    km.compile(loss="categorical_crossentropy", metrics=["accuracy"])
    k_loss, k_acc = km.evaluate(x_u8.astype("float32") / 255.0, np.eye(10, dtype="float32")[y_u8.ravel()],
                                batch_size=32, verbose=0)
    loader = _sample_loader(x_u8, y_u8, 32, torch.float32)
    res = engine.evaluate(tm, loader, categorical_crossentropy, {"accuracy": categorical_accuracy})
    return [Result("categorical accuracy with ties", "samples differing", float(np.sum(ours != theirs)), 0),
            Result("epoch aggregation, partial batch: loss", "|loss - keras evaluate|", abs(res["loss"] - k_loss), 1e-5),
            Result("epoch aggregation, partial batch: accuracy", "|acc - keras evaluate|",
                   abs(res["accuracy"] - k_acc), 1e-6)]


def check_init(keras, seed=0) -> list[Result]:
    """torch's init against Keras-drawn kernels: bounds, and a two-sample KS test (alpha 0.001)."""
    from scipy.stats import ks_2samp

    out = []
    torch.manual_seed(seed)
    tm = SimpleCNN()
    keras.utils.set_random_seed(seed)  # a fixed draw: the test is deterministic, not flaky at alpha
    km = keras_cifar(keras)
    rng = np.random.default_rng(seed)
    for (name, layer), kern in zip(weighted_layers(tm), km.get_weights()[0::2]):
        a = layer.weight.detach().numpy().ravel()
        b = kern.ravel()
        a = rng.choice(a, min(a.size, 20000), replace=False)
        b = rng.choice(b, min(b.size, 20000), replace=False)
        n, m = a.size, b.size
        critical = 1.949 * math.sqrt((n + m) / (n * m))  # c(alpha = 0.001)
        out.append(Result(f"init {name} (KS vs Keras draw)", "KS statistic D", float(ks_2samp(a, b).statistic), critical))
        out.append(Result(f"init {name} bounds", "max |w| / Keras max |w| - 1",
                          max(0.0, float(np.abs(a).max() / np.abs(kern).max() - 1)), 0.01))
    return out


def run_all(keras) -> list[Result]:
    results = check_structure(keras)
    for which in ("cifar", "mnist"):
        for dtype in ("float32", "float64"):
            results.append(check_forward(keras, which, 16, dtype))
    results += check_loss(keras)
    results.append(check_gradients(keras))
    results.append(check_train_mode(keras))
    for variant in ("momentum", "nesterov", "legacy decay"):
        results.append(check_optimizer(keras, variant))
    results += check_short_training(keras)
    results += check_metrics(keras)
    results += check_init(keras)
    return results


def format_table(results: list[Result]) -> str:
    rows = [("check", "metric", "max diff", "tolerance", "result")]
    rows += [(r.check, r.metric, f"{r.diff:.3g}", f"{r.tol:.3g}", "pass" if r.passed else "FAIL") for r in results]
    w = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = [" | ".join(c.ljust(w[i]) for i, c in enumerate(r)) for r in rows]
    lines.insert(1, "-+-".join("-" * x for x in w))
    return "\n".join(lines)


def main() -> int:
    """`torchport parity`: run every check, print the table and the versions; non-zero on any failure."""
    import importlib.util

    from .errors import UsageError

    if importlib.util.find_spec("tensorflow") is None:
        raise UsageError("torchport parity needs TensorFlow/Keras: pip install 'torchport[keras]'")
    from .keras_env import import_keras
    keras = import_keras()
    import tensorflow as tf
    results = run_all(keras)
    print(f"torchport parity: Keras {keras.__version__}, TensorFlow {tf.__version__}, torch {torch.__version__}")
    print(format_table(results))
    failed = [r for r in results if not r.passed]
    print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0
