"""Where the CIFAR-10 step's time goes on this machine: torch.profiler over 20 training steps at batch 32.

    python scripts/profile_step.py [--steps 20] [--device cpu]

Prints each op's self time per step (ms) and its share, heaviest first: the "profile before and after" of
the speed work. The step is the engine's own (`engine.fit` on the seed's model with KerasSGD).
"""
from __future__ import annotations

import argparse

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

from torchport import engine
from torchport.callbacks import Callback
from torchport.cifar10 import SimpleCNN, make_loader
from torchport.keras_compat import KerasSGD, categorical_accuracy, categorical_crossentropy


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--top", type=int, default=15)
    args = ap.parse_args()
    device = torch.device(args.device)
    rng = np.random.default_rng(0)
    n = (args.warmup + args.steps) * 32
    x = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 10, (n, 1))
    torch.manual_seed(7)
    model = SimpleCNN().to(device, memory_format=torch.channels_last)
    opt = KerasSGD(model.parameters(), learning_rate=0.01, momentum=0.9)
    prof = profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else []))

    class Window(Callback):  # profile the steps after the warm-up
        def on_train_batch_end(self, step, aggregator):
            if step == args.warmup - 1:
                prof.__enter__()

    engine.fit(model, opt, categorical_crossentropy, make_loader(x, y, 32, device, shuffle=True, seed=7), 1,
               metrics={"accuracy": categorical_accuracy}, callbacks=[Window()], verbose=0)
    prof.__exit__(None, None, None)
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events) / args.steps / 1e3
    print(f"{args.steps} steps at batch 32 on {device} ({torch.get_num_threads()} threads): "
          f"{total:.2f} ms/step of op self time")
    print(f"{'op':<40} {'ms/step':>8} {'share':>6}")
    for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[:args.top]:
        ms = e.self_cpu_time_total / args.steps / 1e3
        print(f"{e.key[:40]:<40} {ms:8.2f} {100 * ms / total:5.1f}%")


if __name__ == "__main__":
    main()
