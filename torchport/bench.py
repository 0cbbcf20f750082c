"""`torchport bench`: torchport against the originals on this machine, printed as a table."""
from __future__ import annotations

import contextlib
import gzip
import io
import os
import shutil
import tempfile
import time


def _decompressed_torchvision_root(data_dir: str) -> str:
    """A temp root with `MNIST/raw/` holding the decompressed idx files, as torchvision reads them."""
    from .datasets.idx import find_mnist_files

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


def bench_mnist(data_dir: str, device, epochs=(5, 5), lrs=(0.5, 0.1), seed: int = 0) -> dict:
    """The full tutorial run twice in this process: torchport, then the notebook's own pipeline and loops."""
    import torch

    from .mnist import MnistModel, train_tutorial
    from .originals import mnist_notebook as nb

    with contextlib.redirect_stdout(io.StringIO()):
        t0 = time.perf_counter()
        _, history, _ = train_tutorial(data_dir, device, seed, epochs, lrs)
        if device.type == "cuda":
            torch.cuda.synchronize()
        ours = time.perf_counter() - t0

        root = _decompressed_torchvision_root(data_dir)
        try:
            torch.manual_seed(seed)
            t0 = time.perf_counter()
            train_loader, val_loader = nb.loaders(root, device, seed=seed)
            model = MnistModel(784, hidden_size=32, out_size=10).to(device)
            original = [nb.evaluate(model, val_loader)]
            for n, lr in zip(epochs, lrs):
                original += nb.fit(n, lr, model, train_loader, val_loader)
            theirs = time.perf_counter() - t0
        finally:
            shutil.rmtree(root, ignore_errors=True)
    return {"torchport_s": ours, "original_s": theirs, "speedup": theirs / ours,
            "torchport_val_acc": history[-1]["val_acc"], "original_val_acc": original[-1]["val_acc"]}
