"""Optional speed-ups that trade exact parity for speed, all off by default.

- TF32 matmuls/convolutions on Ampere+ GPUs (torch enables TF32 for cuDNN convolutions by default:
  we switch it off unless asked, so the default keeps float32 parity with Keras).
- AMP autocast (bf16, or fp16 with a gradient scaler) for the forward pass and loss.
- torch.compile (mode "default" or "reduce-overhead", which uses CUDA graphs for batch-32 launch
  overhead), with a one-line fallback to eager when the compiler is missing or fails.
Measured on the 2-core CPU: torch.compile costs about 30 s and runs slower (53 vs 34 ms/step), so it
stays opt-in.
"""
from __future__ import annotations

import contextlib
import sys

import torch


def set_tf32(enabled: bool) -> None:
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled


def autocast(device: torch.device, amp: str | None):
    """A context for the forward pass: autocast to bf16/fp16, or nothing."""
    if not amp:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


def grad_scaler(device: torch.device, amp: str | None):
    """fp16 needs loss scaling; bf16 and float32 do not (a disabled scaler is a no-op)."""
    return torch.amp.GradScaler(device.type, enabled=amp == "fp16")


def maybe_compile(model: torch.nn.Module, mode: str | None, example: torch.Tensor) -> torch.nn.Module:
    """torch.compile(model) if asked and it works on this machine; else the eager model, with one line."""
    if not mode:
        return model
    try:
        compiled = torch.compile(model, mode=mode)
        with torch.no_grad():
            compiled.eval()(example)  # compilation happens here, so a missing compiler shows now
        compiled.train()
        return compiled
    except Exception as e:  # no C++ compiler, no triton, an unsupported op: eager is always correct
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        print(f"torchport: warning: torch.compile unavailable here ({first}); running eagerly", file=sys.stderr)
        model.train()
        return model
