"""What every training run is configured with (`train mnist`, `train cifar10`, `fit`): the seed, the device,
where outputs and checkpoints go, how much it prints. Each run's own settings extend this base.

Fields declared `compare=False` may differ between a run and its resume (output folders, verbosity); the
others make up the run's identity, which a checkpoint must share (`checkpoint.run_identity`).
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(kw_only=True)
class RunConfig:
    seed: int = 0
    device: str = "cpu"
    out: str = field(default="runs", compare=False)
    verbose: int = field(default=2, compare=False)          # Keras' fit: 0 silent, 1 progress bar, 2 one line
    checkpoint_dir: str | None = field(default=None, compare=False)
    resume: bool = field(default=False, compare=False)
    keep_checkpoints: int = field(default=3, compare=False)
    resume_hint: str = field(default="the same command with --resume", compare=False)
