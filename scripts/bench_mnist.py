"""The MNIST tutorial run, torchport against the notebook's original pipeline (same process, same data).

    python scripts/bench_mnist.py --data-dir DATA/mnist
"""
import argparse

import torch

from torchport.bench import bench_mnist

p = argparse.ArgumentParser()
p.add_argument("--data-dir", required=True)
p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
args = p.parse_args()
r = bench_mnist(args.data_dir, torch.device(args.device))
print(f"torchport: {r['torchport_s']:.1f} s (final val_acc {r['torchport_val_acc']:.4f})")
print(f"original:  {r['original_s']:.1f} s (final val_acc {r['original_val_acc']:.4f})")
print(f"speedup:   {r['speedup']:.1f}x")
