"""`torchport fit` on the seed CNN's .keras against `torchport train cifar10`: the same training step through
the two doors, timed in one process, alternated, best of `--rounds`; prints the ratio.

    python scripts/bench_fit.py [--cifar-dir DATA/cifar10] [--steps 200] [--rounds 3]
"""
import argparse
import tempfile
import time

import numpy as np
import torch

from torchport import engine
from torchport.callbacks import Callback


class Stamps(Callback):
    def __init__(self):
        self.t = []

    def on_train_batch_end(self, step, aggregator):
        self.t.append(time.perf_counter())


def seed_door(x, y, steps):
    """`torchport train cifar10`'s objects: SimpleCNN, KerasSGD, the uint8 loader, the logits loss."""
    from torchport.cifar10 import SimpleCNN, make_loader
    from torchport.keras_compat import KerasSGD, categorical_accuracy, categorical_crossentropy
    torch.manual_seed(7)
    model = SimpleCNN().to(memory_format=torch.channels_last)
    loader = make_loader(x[:steps * 32], y[:steps * 32], 32, "cpu", shuffle=True, seed=7)
    return model, KerasSGD(model.parameters(), learning_rate=0.01, momentum=0.9), categorical_crossentropy, \
        {"accuracy": categorical_accuracy}, loader


def fit_door(path, x, y, steps):
    """`torchport fit`'s objects for the seed CNN's .keras: the generated module, the compile settings."""
    from torchport.keras_fit.run import FitConfig, setup
    from torchport.porting.plan import plan_file
    arrays = {"x_train": x[:steps * 32].astype("float32") / 255.0,
              "y_train": np.eye(10, dtype="float32")[y[:steps * 32].ravel()]}
    s = setup(plan_file(path), arrays, FitConfig(model=path, data="", seed=7))
    return s.model, s.optimizer, s.compiled.loss, s.compiled.metrics, s.train_loader


def ms_per_step(door) -> float:
    model, opt, loss, metrics, loader = door
    stamps = Stamps()
    engine.fit(model, opt, loss, loader, 1, metrics=metrics, callbacks=[stamps], verbose=0)
    t = np.diff(stamps.t)[10:]  # after warm-up
    return 1e3 * float(np.median(t))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--cifar-dir", default=None)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    import json
    import os

    from torchport.cifar10 import load_data
    from torchport.originals.seed_cnn import write_keras_file

    (x, y), _ = load_data(args.cifar_dir, log=lambda *a, **k: None)
    steps = min(args.steps, len(x) // 32)
    path = write_keras_file(os.path.join(tempfile.mkdtemp(), "seed_cnn.keras"))
    seed, fit = [], []
    for _ in range(args.rounds):  # alternate: the machine's speed drifts minute to minute
        seed.append(ms_per_step(seed_door(x, y, steps)))
        fit.append(ms_per_step(fit_door(path, x, y, steps)))
    print(json.dumps({"steps": steps, "train_cifar10_ms": seed, "fit_ms": fit}))
    print(f"train cifar10: {min(seed):.1f} ms/step; fit on the seed CNN's .keras: {min(fit):.1f} ms/step; "
          f"fit / train = {min(fit) / min(seed):.3f} (best of {args.rounds}, {steps} steps at batch 32)")


if __name__ == "__main__":
    main()
