"""`torchport bench`: torchport against the originals on this machine, printed as a table."""
from __future__ import annotations

import contextlib
import gzip
import importlib.util
import io
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn as nn

from . import engine
from .callbacks import Callback
from .cifar10 import Cifar10Config, SimpleCNN, load_data, make_loader
from .datasets.cifar import find_cifar
from .datasets.idx import find_mnist_files
from .errors import UsageError
from .fastpaths import numerics
from .keras_compat import KerasSGD, categorical_accuracy, categorical_crossentropy
from .keras_env import import_keras
from .mnist import MnistConfig, MnistModel, train_tutorial
from .originals import mnist_notebook as nb
from .originals.keras_models import keras_cifar
from .outputs import write_atomic


def _decompressed_torchvision_root(data_dir: str) -> str:
    """A temp root with `MNIST/raw/` holding the decompressed idx files, as torchvision reads them."""
    files = find_mnist_files(data_dir)
    root = tempfile.mkdtemp(prefix="torchport-mnist-")
    raw = os.path.join(root, "MNIST", "raw")
    os.makedirs(raw)
    for path in files.values():
        name = os.path.basename(path)
        opener = gzip.open if name.endswith(".gz") else open
        with opener(path, "rb") as src, open(os.path.join(raw, name.removesuffix(".gz")), "wb") as dst:
            shutil.copyfileobj(src, dst)
    return root


def bench_mnist(data_dir: str, device, epochs: list[int] | None = None) -> dict:
    """The full tutorial run twice in this process: torchport, then the notebook's own pipeline and loops.
    The settings are the port's own defaults (`MnistConfig`); `epochs` shortens the phases."""
    cfg = MnistConfig(data_dir=data_dir, device=str(device))
    if epochs is not None:
        cfg.epochs = list(epochs)
    seed = cfg.seed
    # torch's first optimizer imports its compiler stack (about 1 s): pay it before either clock starts
    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    with contextlib.redirect_stdout(io.StringIO()):
        t0 = time.perf_counter()
        _, history, _ = train_tutorial(cfg)
        _sync(device)
        ours = time.perf_counter() - t0

        root = _decompressed_torchvision_root(data_dir)
        try:
            torch.manual_seed(seed)
            t0 = time.perf_counter()
            train_loader, val_loader = nb.loaders(root, device, seed=seed)
            model = MnistModel(784, hidden_size=32, out_size=10).to(device)
            original = [nb.evaluate(model, val_loader)]
            for n, lr in zip(cfg.epochs, cfg.lr, strict=True):
                original += nb.fit(n, lr, model, train_loader, val_loader)
            _sync(device)
            theirs = time.perf_counter() - t0
        finally:
            shutil.rmtree(root, ignore_errors=True)
    return {"torchport_s": ours, "original_s": theirs, "speedup": theirs / ours,
            "torchport_val_acc": history[-1]["val_acc"], "original_val_acc": original[-1]["val_acc"]}


# ---- CIFAR-10 CNN: training step, inference, memory, FLOP floor ----------------------------------------

def training_flops(model, example) -> tuple[float, float]:
    """(forward, forward + backward) FLOPs of one batch: 2 per multiply-add of every conv and dense layer.

    Backward costs twice the forward (input and weight gradients), less the input gradient of the first
    layer, which nothing needs.
    """
    macs = []

    def hook(mod, inp, out):
        if isinstance(mod, nn.Conv2d):
            macs.append(out.numel() * mod.in_channels * mod.kernel_size[0] * mod.kernel_size[1] // mod.groups)
        else:
            macs.append(out.numel() * mod.in_features)

    hooks = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model.eval()(example)
    for h in hooks:
        h.remove()
    forward = 2.0 * sum(macs)
    return forward, forward + 2 * forward - 2.0 * macs[0]


def training_bytes(model, example) -> float:
    """The bytes a training step must move at least, in float32: every parameter read by the forward
    pass and by the backward pass, its gradient written, and the update's 3 reads and 2 writes (8
    passes); every activation written forward, read and its gradient written and read backward (4)."""
    params = sum(p.numel() for p in model.parameters())
    acts = []
    hooks = [m.register_forward_hook(lambda mod, i, o: acts.append(o.numel()))
             for m in model.modules() if not list(m.children())]
    with torch.no_grad():
        model.eval()(example)
    for h in hooks:
        h.remove()
    return 4.0 * (8 * params + 4 * sum(acts))


def bandwidth_bytes_per_s(device, mib: int = 256, seconds: float = 1.0) -> float:
    """This machine's memory bandwidth: a large copy (read + write), best of the repeats in `seconds`."""
    src = torch.ones(mib * 2**18, device=device)  # mib MiB of float32
    dst = torch.empty_like(src)
    dst.copy_(src)
    best, t_end = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        _sync(device)
        t0 = time.perf_counter()
        dst.copy_(src)
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * src.numel() * 4 / best


def matmul_flops_per_s(device, n: int = 2048, seconds: float = 2.0) -> float:
    """This machine's fp32 matmul rate with torch: the yardstick of the FLOP floor."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    for _ in range(3):
        a @ b
    _sync(device)
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        reps += 1
    _sync(device)
    return 2.0 * n ** 3 * reps / (time.perf_counter() - t0)


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def _median_window_ms(stamps: list[float], window: int, warmup: int) -> float:
    """Median ms/step over consecutive windows of `window` steps, after `warmup` steps."""
    s = stamps[warmup:]
    windows = [(s[i + window] - s[i]) / window for i in range(0, len(s) - window, window)]
    return 1e3 * statistics.median(windows)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _inference_split(n_test: int, batch: int) -> tuple[int, int]:
    """(warm-up images, last image) for the inference clock: up to 256 images of warm-up and 4096 in all,
    fewer on a small test set (the bundled sample has 250), whole batches, at least one batch timed."""
    end = min(n_test, 4096)
    warm = min(256, end // 4) // batch * batch
    if end - warm < batch:
        raise ValueError(f"{n_test} test images are too few to time inference at batch {batch}")
    return warm, end


def _tiled(x, y, n: int):
    """The first n samples, repeating the set when it is smaller (the bundled sample on a GPU machine):
    the time of a step does not depend on the pixels."""
    reps = -(-n // len(x))
    return (np.concatenate([x] * reps)[:n], np.concatenate([y] * reps)[:n]) if reps > 1 else (x[:n], y[:n])


def worker_torchport(data_dir, steps: int, window: int, warmup: int, device: str, cuda_graphs: bool = True) -> dict:
    """A real training run's process: data resident as uint8, the seed's model, KerasSGD, the engine
    (on CUDA: the whole step as a CUDA graph, or eager with `cuda_graphs=False`)."""
    cfg = Cifar10Config()  # the port's defaults: batch 32, lr 0.01, momentum 0.9, seed 7
    device = torch.device(device)
    torch.manual_seed(cfg.seed)
    with contextlib.redirect_stderr(io.StringIO()):
        (x, y), (xt, yt) = load_data(data_dir)
    if len(x) < steps * cfg.batch_size:
        x, y = _tiled(x, y, steps * cfg.batch_size)
    loader = make_loader(x, y, cfg.batch_size, device, shuffle=True, seed=cfg.seed)
    n = steps * cfg.batch_size
    loader.x, loader.y = loader.x[:n], loader.y[:n]  # all data resident, as the script holds it; `steps` batches
    model = SimpleCNN().to(device, memory_format=torch.channels_last)
    opt = KerasSGD(model.parameters(), learning_rate=cfg.lr, momentum=cfg.momentum)
    stamps: list[float] = []

    class Clock(Callback):
        def on_train_batch_end(self, step, aggregator):
            if step % window == 0:  # a synchronised stamp every `window` steps: no sync in between
                _sync(device)
                stamps.append(time.perf_counter())

    engine.fit(model, opt, categorical_crossentropy, loader, 1, metrics={"accuracy": categorical_accuracy},
               callbacks=[Clock()], verbose=0, numerics=engine.Numerics(cuda_graphs=cuda_graphs))
    ms = _median_window_ms(stamps, 1, warmup // window) / window
    warm, end = _inference_split(len(xt), cfg.batch_size)  # the same split as the Keras side
    test = make_loader(xt[:end], yt[:end], cfg.batch_size, device)
    model.eval()
    with torch.no_grad():
        for i, (xb, _) in enumerate(test):
            if i * cfg.batch_size == warm:
                _sync(device)
                t0 = time.perf_counter()
            model(xb)
        _sync(device)
    out = {"ms_per_step": ms, "images_per_s": (end - warm) / (time.perf_counter() - t0),
           "peak_rss_mb": _peak_rss_mb()}
    if device.type == "cuda":
        out["max_memory_allocated_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out


def worker_keras(data_dir, steps: int, window: int, warmup: int) -> dict:
    """The seed's script in its own process: float32 arrays, to_categorical, model.fit at batch 32."""
    cfg = Cifar10Config()
    keras = import_keras()
    with contextlib.redirect_stderr(io.StringIO()):
        (X_train, y_train), (X_test, y_test) = load_data(data_dir)
    X_train = X_train.astype("float32") / 255.0
    X_test = X_test.astype("float32") / 255.0
    y_train = keras.utils.to_categorical(y_train)
    if len(X_train) < steps * cfg.batch_size:
        X_train, y_train = _tiled(X_train, y_train, steps * cfg.batch_size)
    model = keras_cifar(keras, seed=cfg.seed)
    model.compile(loss="categorical_crossentropy", metrics=["accuracy"],
                  optimizer=keras.optimizers.SGD(learning_rate=cfg.lr, momentum=cfg.momentum))
    stamps: list[float] = []

    class Clock(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            stamps.append(time.perf_counter())

    n = min(len(X_train), steps * cfg.batch_size)
    model.fit(X_train[:n], y_train[:n], epochs=1, batch_size=cfg.batch_size, verbose=0, callbacks=[Clock()])
    ms = _median_window_ms(stamps, window, warmup)
    warm, end = _inference_split(len(X_test), cfg.batch_size)
    model.predict(X_test[:warm or cfg.batch_size], batch_size=cfg.batch_size, verbose=0)
    t0 = time.perf_counter()
    model.predict(X_test[warm:end], batch_size=cfg.batch_size, verbose=0)
    ips = (end - warm) / (time.perf_counter() - t0)
    import tensorflow as tf
    return {"ms_per_step": ms, "images_per_s": ips, "peak_rss_mb": _peak_rss_mb(), "version": tf.__version__,
            "gpu": bool(tf.config.list_physical_devices("GPU"))}


def _in_subprocess(kind: str, hide_gpus: bool = False, **kw) -> dict:
    """Run a worker in a fresh interpreter so its peak memory is its own (`hide_gpus`: TensorFlow on CPU)."""
    code = (f"import json, sys; from torchport import bench; "
            f"print('RESULT' + json.dumps(bench.worker_{kind}(**json.loads(sys.argv[1]))))")
    p = subprocess.run([sys.executable, "-c", code, json.dumps(kw)], capture_output=True, text=True,
                       env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3",
                            **({"CUDA_VISIBLE_DEVICES": "-1"} if hide_gpus else {})})
    lines = [line for line in p.stdout.splitlines() if line.startswith("RESULT")]
    if p.returncode != 0 or not lines:
        raise RuntimeError(f"bench worker {kind} failed:\n{p.stderr[-2000:]}")
    return json.loads(lines[-1][len("RESULT"):])


def run_bench(cifar_dir, mnist_dir, device, quick: bool = False, with_keras: bool = True) -> dict:
    steps, window, warmup = (60, 10, 20) if quick else (400, 20, 40)
    fwd, train = training_flops(SimpleCNN(), torch.zeros(32, 3, 32, 32))

    with numerics(device):  # the fp32 floor: TF32 off, as the runs
        rate = matmul_flops_per_s(device, n=4096 if torch.device(device).type == "cuda" else 2048,
                                  seconds=1.0 if quick else 3.0)
    floor_ms = 1e3 * train / rate
    moved = training_bytes(SimpleCNN(), torch.zeros(32, 3, 32, 32))
    bandwidth = bandwidth_bytes_per_s(device)
    res = {"device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads(),
           "train_gflop_per_step": train / 1e9, "matmul_gflops": rate / 1e9, "floor_ms_per_step": floor_ms,
           "train_mb_per_step": moved / 1e6, "bandwidth_gb_s": bandwidth / 1e9,
           "bytes_floor_ms_per_step": 1e3 * moved / bandwidth}
    ours = _in_subprocess("torchport", data_dir=cifar_dir, steps=steps, window=window, warmup=warmup,
                          device=str(device))
    res["torchport"] = {**ours, "x_floor": ours["ms_per_step"] / floor_ms}
    if with_keras and importlib.util.find_spec("tensorflow") is not None:
        theirs = _in_subprocess("keras", data_dir=cifar_dir, steps=steps, window=window, warmup=warmup)
        res["keras"] = {**theirs, "x_floor": theirs["ms_per_step"] / floor_ms}
        res["speedup_train"] = theirs["ms_per_step"] / ours["ms_per_step"]
        res["speedup_infer"] = ours["images_per_s"] / theirs["images_per_s"]
        res["memory_ratio"] = ours["peak_rss_mb"] / theirs["peak_rss_mb"]
    if torch.device(device).type == "cuda":
        res["seed_table"] = _seed_table(cifar_dir, res, steps, window, warmup, with_keras)
    if mnist_dir is not None:
        res["mnist"] = bench_mnist(mnist_dir, device, epochs=[1, 1] if quick else None)
    return res


STEPS_PER_EPOCH = 1563  # 50,000 images at batch 32
SEED_PUBLISHED = {"Keras CPU (seed, published)": 125.0, "Keras GPU (seed, published, Colab)": 4.0}


def _seed_table(cifar_dir, res, steps, window, warmup, with_keras) -> dict:
    """The seed's CPU-vs-GPU comparison on this machine: ms/step for each engine on each device."""
    rows = {"torchport GPU, CUDA graph": res["torchport"]["ms_per_step"]}
    eager = _in_subprocess("torchport", data_dir=cifar_dir, steps=steps, window=window, warmup=warmup,
                           device="cuda", cuda_graphs=False)
    rows["torchport GPU, eager"] = eager["ms_per_step"]
    cpu_steps = max(60, steps // 4)
    rows["torchport CPU"] = _in_subprocess("torchport", data_dir=cifar_dir, steps=cpu_steps, window=10, warmup=20,
                                           device="cpu")["ms_per_step"]
    if with_keras and importlib.util.find_spec("tensorflow") is not None:
        keras = res.get("keras")
        if keras and keras.get("gpu"):
            rows["Keras GPU"] = keras["ms_per_step"]
        rows["Keras CPU"] = _in_subprocess("keras", hide_gpus=True, data_dir=cifar_dir, steps=cpu_steps,
                                           window=10, warmup=20)["ms_per_step"]
    rows.update(SEED_PUBLISHED)
    return {"ms_per_step": rows, "max_memory_allocated_mb": res["torchport"].get("max_memory_allocated_mb"),
            "gpu_floor_ms_per_step": res["floor_ms_per_step"]}


def format_seed_table(t: dict) -> list[str]:
    lines = ["", f"The seed's comparison (GPU fp32 floor {t['gpu_floor_ms_per_step']:.3f} ms/step; torchport's peak "
             f"GPU memory {t['max_memory_allocated_mb'] or 0:.0f} MiB):", "",
             "| run | ms/step | s/epoch | 25 epochs (s) |", "|---|---|---|---|"]
    for name, ms in t["ms_per_step"].items():
        epoch_s = ms * STEPS_PER_EPOCH / 1e3
        lines.append(f"| {name} | {ms:.2f} | {epoch_s:.1f} | {25 * epoch_s:.0f} |")
    return lines


def _faster_or_slower(ratio: float) -> str:
    """Keras' time / torchport's, said the way round it is (0.88 reads "1.14x slower", not "0.88x faster")."""
    return f"{ratio:.2f}x faster" if ratio >= 1 else f"{1 / ratio:.2f}x slower"


def format_markdown(r: dict) -> str:
    k = r.get("keras")
    lines = [f"Device: {r['device']} ({r['threads']} threads), torch {r['torch']}"
             + (f", TensorFlow {k['version']}" if k else ""),
             f"CIFAR-10 CNN training step at batch 32: {r['train_gflop_per_step']:.2f} GFLOP; fp32 matmul "
             f"{r['matmul_gflops']:.0f} GFLOP/s, so the FLOP floor is {r['floor_ms_per_step']:.1f} ms/step.",
             f"It moves at least {r['train_mb_per_step']:.0f} MB; memory bandwidth {r['bandwidth_gb_s']:.1f} GB/s, "
             f"so the bytes floor is {r['bytes_floor_ms_per_step']:.1f} ms/step (the two overlap at best).", "",
             "| measure | torchport | Keras (TF) | ratio |", "|---|---|---|---|"]
    t = r["torchport"]
    def kv(key, fmt):
        return fmt.format(k[key]) if k else "n/a"

    lines.append(f"| train ms/step (median) | {t['ms_per_step']:.1f} | {kv('ms_per_step', '{:.1f}')} | "
                 + (f"{_faster_or_slower(r['speedup_train'])} |" if k else "|"))
    lines.append(f"| x FLOP floor | {t['x_floor']:.2f} | {kv('x_floor', '{:.2f}')} | |")
    both = r["floor_ms_per_step"] + r["bytes_floor_ms_per_step"]
    theirs = f"{k['ms_per_step'] / both:.2f}" if k else "n/a"
    lines.append(f"| x (FLOP + bytes floors) | {t['ms_per_step'] / both:.2f} | {theirs} | |")
    lines.append(f"| inference images/s | {t['images_per_s']:.0f} | {kv('images_per_s', '{:.0f}')} | "
                 + (f"{r['speedup_infer']:.2f}x |" if k else "|"))
    lines.append(f"| peak RSS MB (train process) | {t['peak_rss_mb']:.0f} | {kv('peak_rss_mb', '{:.0f}')} | "
                 + (f"{100 * r['memory_ratio']:.0f}% of Keras |" if k else "|"))
    if "seed_table" in r:
        lines += format_seed_table(r["seed_table"])
    if "mnist" in r:
        m = r["mnist"]
        lines += ["", "| MNIST tutorial run | torchport | original pipeline | speedup |", "|---|---|---|---|",
                  f"| seconds | {m['torchport_s']:.1f} | {m['original_s']:.1f} | {m['speedup']:.1f}x |",
                  f"| final val_acc | {m['torchport_val_acc']:.4f} | {m['original_val_acc']:.4f} | |"]
    return "\n".join(lines)


def main(args) -> int:
    if args.cifar_dir and find_cifar(args.cifar_dir) is None:
        raise UsageError(f"--cifar-dir {args.cifar_dir}: no CIFAR-10 data there")
    if args.mnist_dir and find_mnist_files(args.mnist_dir) is None:
        raise UsageError(f"--mnist-dir {args.mnist_dir}: no MNIST data there")
    r = run_bench(args.cifar_dir, args.mnist_dir, args.device, quick=args.quick, with_keras=not args.no_keras)
    md = format_markdown(r)
    print(md)
    write_atomic(os.path.join(args.out, "bench.json"), lambda f: f.write(json.dumps(r, indent=2).encode()))
    write_atomic(os.path.join(args.out, "bench.md"), lambda f: f.write((md + "\n").encode()))
    print(f"Wrote {args.out}/bench.json and bench.md")
    return 0
