"""The numerics a run computes with, and the optional speed-ups that trade exact parity for speed.

`numerics(device, tf32)`: the one place that sets torch's precision and determinism flags for `fit`,
`evaluate` and `bench`, and puts the user's own back afterwards. TF32 stays off unless asked (torch
enables it for cuDNN convolutions by default, which would move float32 results by ~1e-3 relative); on CUDA
cuDNN is deterministic and not benchmarking (convolution backward otherwise uses atomics), so a resumed
run ends bit for bit where an uninterrupted one does.

Opt-in: AMP autocast (bf16, or fp16 with a gradient scaler; bf16 on GPUs before compute capability 8.0
is emulated and slow, so it becomes fp16 there, with one line), and torch.compile (mode "default" or
"reduce-overhead", CUDA graphs), falling back to eager in one line when the compiler is missing or fails
(on a small CPU it costs more than it saves: README's speed section has the measurement).
"""
from __future__ import annotations

import contextlib
import copy
import sys
from dataclasses import dataclass

import torch

from .distributed import unwrap
from .errors import first_line


@dataclass(frozen=True)
class Numerics:
    """How `fit` computes beyond the model itself. The defaults give Keras' numbers; `amp` and `tf32` trade
    them for speed and are opt-in."""

    amp: str | None = None       # "bf16" / "fp16": autocast the forward pass and loss (fp16 with loss scaling)
    tf32: bool = False           # TF32 matmuls and convolutions on Ampere+ GPUs
    cuda_graphs: bool = True     # on CUDA, replay the step as a CUDA graph once proven equal to eager


EXACT = Numerics()


def _precision_api() -> bool:
    """torch >= 2.9 says TF32 per backend with `fp32_precision`; older torch with `allow_tf32`."""
    return hasattr(getattr(torch.backends.cudnn, "conv", None), "fp32_precision")


def _flags() -> dict:
    cudnn = torch.backends.cudnn
    state = {"deterministic": cudnn.deterministic, "benchmark": cudnn.benchmark}
    if _precision_api():
        state.update(matmul=torch.backends.cuda.matmul.fp32_precision, conv=cudnn.conv.fp32_precision,
                     rnn=cudnn.rnn.fp32_precision)
    else:
        state.update(matmul=torch.backends.cuda.matmul.allow_tf32, conv=cudnn.allow_tf32)
    return state


def _apply(state: dict) -> None:
    cudnn = torch.backends.cudnn
    cudnn.deterministic, cudnn.benchmark = state["deterministic"], state["benchmark"]
    if _precision_api():
        torch.backends.cuda.matmul.fp32_precision = state["matmul"]
        cudnn.conv.fp32_precision = state["conv"]
        cudnn.rnn.fp32_precision = state["rnn"]
    else:
        torch.backends.cuda.matmul.allow_tf32 = state["matmul"]
        cudnn.allow_tf32 = state["conv"]


@contextlib.contextmanager
def numerics(device, tf32: bool = False):
    """Within: TF32 as asked (off by default), and on CUDA deterministic cuDNN; then the caller's flags."""
    saved = _flags()
    wanted = dict(saved)
    if _precision_api():
        wanted.update(matmul="tf32" if tf32 else "ieee", conv="tf32" if tf32 else "ieee",
                      rnn="tf32" if tf32 else "ieee")
    else:
        wanted.update(matmul=tf32, conv=tf32)
    if torch.device(device).type == "cuda":
        wanted.update(deterministic=True, benchmark=False)
    _apply(wanted)
    try:
        yield
    finally:
        _apply(saved)


def set_tf32(enabled: bool) -> None:
    """TF32 on or off for the rest of the process (prefer `numerics`, which restores the user's flags)."""
    flags = _flags()
    if _precision_api():
        flags.update(matmul="tf32" if enabled else "ieee", conv="tf32" if enabled else "ieee",
                     rnn="tf32" if enabled else "ieee")
    else:
        flags.update(matmul=enabled, conv=enabled)
    _apply(flags)


def resolve_amp(device, amp: str | None, warn=None) -> str | None:
    """bf16 on a GPU before compute capability 8.0 (Colab's T4) is emulated: use fp16 there, saying so."""
    device = torch.device(device)
    if amp == "bf16" and device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        if major < 8:
            (warn or (lambda m: print(m, file=sys.stderr)))(
                f"torchport: warning: bf16 is emulated on this GPU (compute capability {major}.{minor}): "
                "using fp16 with loss scaling instead")
            return "fp16"
    return amp


def autocast(device: torch.device, amp: str | None):
    """A context for the forward pass: autocast to bf16/fp16, or nothing."""
    if not amp:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


def grad_scaler(device: torch.device, amp: str | None):
    """fp16 needs loss scaling; bf16 and float32 do not (a disabled scaler is a no-op)."""
    return torch.amp.GradScaler(device.type, enabled=amp == "fp16")


def maybe_compile(model: torch.nn.Module, mode: str | None, train_step=None) -> torch.nn.Module:
    """torch.compile(model) if asked and it works on this machine; else the eager model, with one line.

    Compiled with static shapes (a last partial batch gets its own graph instead of a dynamic-shape
    recompile). `train_step(model)` runs one training step on the compiled model inside `fork_rng` and
    with the weights and optimizer state saved and put back: a compiler that fails only at the backward
    pass fails here, and the warm-up leaves no trace in the run.
    """
    if not mode:
        return model
    try:
        compiled = torch.compile(model, mode=mode, dynamic=False)
        if train_step is not None:
            with torch.random.fork_rng(devices=_devices(model)):
                train_step(compiled)
        compiled.train()
        return compiled
    except Exception as e:  # no C++ compiler, no triton, an unsupported op: eager is always correct
        print(f"torchport: warning: torch.compile unavailable here ({first_line(e, 160)}); running eagerly",
              file=sys.stderr)
        model.train()
        return model


def training_warmup(optimizer, loss_fn, batch):
    """A `train_step` for `maybe_compile`: one step on `batch` (take it from an unshuffled loader: drawing
    from the training loader would move its permutation), with the weights and the optimizer's state put
    back afterwards."""
    def step(model):
        weights = copy.deepcopy(unwrap(model).state_dict())
        state = copy.deepcopy(optimizer.state_dict())
        x, y = batch
        model.train()
        loss_fn(model(x), y).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        unwrap(model).load_state_dict(weights)
        optimizer.load_state_dict(state)
    return step


def _devices(model) -> list:
    p = next(model.parameters(), None)
    return [p.device] if p is not None and p.device.type == "cuda" else []
