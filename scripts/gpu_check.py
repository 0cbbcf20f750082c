"""One command on a GPU machine, under 10 minutes, writing gpu_check.json and gpu_check.md:

    python scripts/gpu_check.py [--out runs/gpu_check] [--device cuda] [--quick]

environment (torch, CUDA, cuDNN, compute capability, precision flags); a sync audit (100 training steps
under `torch.cuda.set_sync_debug_mode("error")`, fp32 graphed and eager, bf16); speed (eager NCHW,
channels-last, the whole step as a CUDA graph, bf16, fp16, torch.compile, CUDA graphs via compile's
reduce-overhead); GPU-vs-CPU parity on the bundled sample (logits, loss, every gradient, weights after 4
steps, dropout off; TF32 off, and how far TF32 moves it); determinism (two 300-step runs, and the CUDA-graph
step against eager, torch.equal); resume bit-exact after SIGINT and SIGKILL; a GPU model.pt loaded on a
CPU-only process. On a machine without CUDA it runs what it can on the CPU and says so.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

from torchport import engine
from torchport.callbacks import Callback
from torchport.cifar10 import SimpleCNN, load_data, make_loader
from torchport.fastpaths import _flags, maybe_compile, numerics, training_warmup
from torchport.keras_compat import KerasSGD, categorical_accuracy, categorical_crossentropy


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def sample(n=None):
    with contextlib.redirect_stderr(io.StringIO()):
        (x, y), (xt, yt) = load_data(None)
    return (x[:n], y[:n]) if n else (x, y)


def environment(device) -> dict:
    env = {"python": platform.python_version(), "torch": torch.__version__, "device": str(device),
           "default_flags": {k: str(v) for k, v in _flags().items()}}
    with numerics(device):
        env["torchport_flags"] = {k: str(v) for k, v in _flags().items()}
    if device.type == "cuda":
        env.update(cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(),
                   gpu=torch.cuda.get_device_name(device),
                   capability=".".join(map(str, torch.cuda.get_device_capability(device))))
    return env


def _setup(device, n_steps, dropout=True, channels_last=True, seed=7):
    x, y = sample()
    reps = -(-n_steps * 32 // len(x))
    x, y = np.concatenate([x] * reps)[:n_steps * 32], np.concatenate([y] * reps)[:n_steps * 32]
    torch.manual_seed(seed)
    model = SimpleCNN()
    if not dropout:
        model.dropout.p = model.dropout_1.p = 0.0
    model = model.to(device, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    loader = make_loader(x, y, 32, device, shuffle=True, seed=seed)
    if not channels_last:
        loader.transform = lambda a, b: (a.permute(0, 3, 1, 2).float().div_(255).contiguous(), b)
    return model, KerasSGD(model.parameters(), learning_rate=0.01, momentum=0.9), loader


class SyncAudit(Callback):
    """Raise on any host synchronisation between the end of step 0 and the end of the last step."""

    def __init__(self, last):
        self.last = last

    def on_train_batch_end(self, step, aggregator):
        if step == 0:
            torch.cuda.set_sync_debug_mode("error")
        if step == self.last:
            torch.cuda.set_sync_debug_mode("default")


def sync_audit(device, amp=None, steps=100, cuda_graphs=True) -> str:
    if device.type != "cuda":
        return "skipped (no CUDA)"
    model, opt, loader = _setup(device, steps + 1)
    try:
        engine.fit(model, opt, categorical_crossentropy, loader, 1, metrics={"accuracy": categorical_accuracy},
                   callbacks=[SyncAudit(steps)], verbose=0, numerics=engine.Numerics(amp, cuda_graphs=cuda_graphs))
        return f"no synchronisation in {steps} steps"
    except RuntimeError as e:
        return f"SYNC: {str(e).splitlines()[0][:200]}"
    finally:
        torch.cuda.set_sync_debug_mode("default")


class Stamps(Callback):
    def __init__(self, device):
        self.device, self.t = device, []

    def on_train_batch_end(self, step, aggregator):
        if step % 10 == 0:
            sync(self.device)
            self.t.append(time.perf_counter())


def speed(device, steps) -> dict:
    out = {}
    variants = [("eager fp32 NCHW", dict(channels_last=False, cuda_graphs=False)),
                ("eager fp32 channels-last", dict(cuda_graphs=False)),
                ("bf16 autocast", dict(amp="bf16")), ("fp16 autocast", dict(amp="fp16")),
                ("torch.compile", dict(compile="default"))]
    if device.type == "cuda":
        variants += [("CUDA graph fp32 channels-last (the default)", {}),
                     ("torch.compile reduce-overhead (CUDA graphs)", dict(compile="reduce-overhead"))]
    for name, kw in variants:
        try:
            model, opt, loader = _setup(device, steps, channels_last=kw.get("channels_last", True))
            if kw.get("compile"):
                test_batch = next(iter(make_loader(*sample(32), 32, device)))
                model = maybe_compile(model, kw["compile"], training_warmup(opt, categorical_crossentropy,
                                                                          test_batch))
            stamps = Stamps(device)
            engine.fit(model, opt, categorical_crossentropy, loader, 1, metrics={"accuracy": categorical_accuracy},
                       callbacks=[stamps], verbose=0,
                       numerics=engine.Numerics(kw.get("amp"), cuda_graphs=kw.get("cuda_graphs", True)))
            windows = np.diff(stamps.t)[2:] / 10  # after 20 warm-up steps
            out[name] = round(1e3 * float(np.median(windows)), 3)
        except Exception as e:  # one variant failing (no bf16 on this CPU...) says so and the rest go on
            out[name] = f"failed: {str(e).splitlines()[0][:120]}"
    if device.type == "cuda":
        out["max_memory_allocated_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return out


def parity(device, tf32=False) -> dict:
    """The same initial weights, data and order on the CPU and on `device`, dropout off."""
    x, y = sample(32 * 4)
    runs = {}
    for dev in (torch.device("cpu"), device):
        torch.manual_seed(3)
        model = SimpleCNN()
        model.dropout.p = model.dropout_1.p = 0.0
        model = model.to(dev)
        opt = KerasSGD(model.parameters(), learning_rate=0.01, momentum=0.9)
        loader = make_loader(x, y, 32, dev)
        with numerics(dev, tf32):
            xb, yb = next(iter(loader))
            logits = model(xb)
            loss = categorical_crossentropy(logits, yb)
            loss.backward()
            grads = [p.grad.detach().cpu().clone() for p in model.parameters()]
            opt.zero_grad()
        engine.fit(model, opt, categorical_crossentropy, loader, 1, verbose=0, numerics=engine.Numerics(tf32=tf32))
        runs[dev.type] = (logits.detach().cpu(), float(loss), grads, [p.detach().cpu() for p in model.parameters()])
    (lc, sc, gc, wc), (lg, sg, gg, wg) = runs["cpu"], runs[device.type]

    def rel(a, b):
        return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))
    return {"logits": rel(lg, lc), "loss": abs(sg - sc) / abs(sc), "gradients": max(rel(a, b) for a, b in
                                                                                      zip(gg, gc, strict=True)),
            "weights after 4 steps": max(rel(a, b) for a, b in zip(wg, wc, strict=True))}


def determinism(device, steps) -> dict:
    """Two runs of the default step torch.equal, and the CUDA-graph step torch.equal to eager."""
    finals = []
    for graphs in (True, True, False):
        model, opt, loader = _setup(device, steps)
        torch.manual_seed(7)
        engine.fit(model, opt, categorical_crossentropy, loader, 1, verbose=0,
                   numerics=engine.Numerics(cuda_graphs=graphs))
        finals.append([p.detach().cpu() for p in model.parameters()])
    same = all(torch.equal(a, b) for a, b in zip(finals[0], finals[2], strict=True))
    return {"two runs": all(torch.equal(a, b) for a, b in zip(finals[0], finals[1], strict=True)),
            "CUDA graph vs eager": same if device.type == "cuda" else "n/a (no CUDA)"}


def _finished_checkpoints(folder: str) -> list[str]:
    """Checkpoints on disk, not the hidden temp file of one being written (renamed into place when done)."""
    if not os.path.isdir(folder):
        return []
    return sorted(f for f in os.listdir(folder) if f.endswith(".pt") and not f.startswith("."))


def resume_checks(device) -> dict:
    """`train cifar10` on the bundled sample, interrupted (SIGINT mid-run, SIGKILL) and resumed, against an
    uninterrupted run; then its model.pt loaded in a process that sees no GPU."""
    import signal
    tmp = tempfile.mkdtemp(prefix="gpu-check-")
    env = {**os.environ, "TORCHPORT_OFFLINE": "1", "TORCHPORT_DATA": os.path.join(tmp, "none")}
    # 12 epochs of the 1,000-image sample (32 steps each): the signal comes as the first checkpoint appears,
    # so a fast GPU is still mid-run; the exit code proves the run was interrupted (130, -9), not finished.
    base = [sys.executable, "-m", "torchport", "train", "cifar10", "--epochs", "12", "--device", device.type,
            "--verbose", "0"]
    subprocess.run(base + ["--out", f"{tmp}/ref"], env=env, check=True, capture_output=True)
    out = {}
    for sig in (signal.SIGINT, signal.SIGKILL):
        ck, run = f"{tmp}/ck-{sig.name}", f"{tmp}/run-{sig.name}"
        p = subprocess.Popen(base + ["--out", run, "--checkpoint-dir", ck], env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        t_end = time.time() + 300
        while time.time() < t_end and not _finished_checkpoints(ck):
            time.sleep(0.005)
        p.send_signal(sig)
        code = p.wait()
        at_stop = _finished_checkpoints(ck)
        if code != {signal.SIGINT: 130, signal.SIGKILL: -9}[sig]:
            out[f"resume after {sig.name}"] = f"INCONCLUSIVE: exit code {code}, not interrupted ({at_stop})"
            continue
        subprocess.run(base + ["--out", run, "--checkpoint-dir", ck, "--resume"], env=env, check=True,
                       capture_output=True)
        a = torch.load(f"{tmp}/ref/model.pt", weights_only=True)
        b = torch.load(f"{run}/model.pt", weights_only=True)
        same = all(torch.equal(a[k], b[k]) for k in a) and open(f"{tmp}/ref/history.json").read() == \
            open(f"{run}/history.json").read()
        out[f"resume after {sig.name}"] = ("bit-identical" if same else "DIFFERS") + \
            f" (exit {code}; checkpoints then: {', '.join(at_stop)})"
    r = subprocess.run([sys.executable, "-c", "import torch, sys; s = torch.load(sys.argv[1], weights_only=True); "
                        "print(all(t.device.type == 'cpu' for t in s.values()))", f"{tmp}/ref/model.pt"],
                       env={**env, "CUDA_VISIBLE_DEVICES": ""}, capture_output=True, text=True)
    out["model.pt on a CPU-only process"] = "loads, CPU tensors" if r.stdout.strip() == "True" else r.stderr[-200:]
    return out


def markdown(report: dict) -> str:
    lines = ["# torchport GPU check", "", f"{report['date']}, {report['seconds']:.0f} s", "", "## Environment", ""]
    lines += [f"- {k}: {v}" for k, v in report["environment"].items()]
    lines += ["", "## Sync audit (100 training steps)", ""] + [f"- {k}: {v}" for k, v in report["sync"].items()]
    lines += ["", "## Speed, seed CNN at batch 32 (ms/step, median of 10-step windows)", "", "| variant | ms/step |",
              "|---|---|"] + [f"| {k} | {v} |" for k, v in report["speed"].items()]
    for key in ("parity, TF32 off", "parity, TF32 on"):
        lines += ["", f"## GPU vs CPU {key} (max relative difference)", ""]
        lines += [f"- {k}: {v:.3g}" for k, v in report[key].items()]
    d = report["determinism"]
    lines += ["", f"## Determinism ({d['steps']} steps, torch.equal): two runs {d['two runs']}; CUDA graph vs eager "
              f"{d['CUDA graph vs eager']}", "", "## Checkpoints", ""]
    lines += [f"- {k}: {v}" for k, v in report["checkpoints"].items()]
    return "\n".join(lines) + "\n"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="runs/gpu_check")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--quick", action="store_true", help="fewer steps (a smoke run)")
    args = p.parse_args()
    device = torch.device(args.device)
    steps = 60 if args.quick else 200
    t0 = time.time()
    report = {"date": time.strftime("%Y-%m-%d %H:%M"), "environment": environment(device)}
    report["sync"] = {"fp32 CUDA graph": sync_audit(device), "fp32 eager": sync_audit(device, cuda_graphs=False),
                      "bf16": sync_audit(device, "bf16"), "fp16 (GradScaler)": sync_audit(device, "fp16")}
    report["speed"] = speed(device, steps)
    report["parity, TF32 off"] = parity(device) if device.type == "cuda" else {"skipped (no CUDA)": 0.0}
    report["parity, TF32 on"] = parity(device, tf32=True) if device.type == "cuda" else {"skipped (no CUDA)": 0.0}
    report["determinism"] = {"steps": 60 if args.quick else 300, **determinism(device, 60 if args.quick else 300)}
    report["checkpoints"] = resume_checks(device)
    report["seconds"] = time.time() - t0
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "gpu_check.json"), "w") as f:
        json.dump(report, f, indent=2)
    text = markdown(report)
    with open(os.path.join(args.out, "gpu_check.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
