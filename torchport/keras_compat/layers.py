"""Keras' Dropout for torch, with a fast CPU mask.

Inverted dropout like Keras (keep with probability 1 - rate, scale kept values by 1 / (1 - rate); the
identity at inference). On CPU torch draws its Bernoulli mask one float at a time (about 13 ms for the
CNN's 1M activations at batch 32, a third of the step); here the mask comes from 16-bit uniform integers
cut out of 64-bit random words, 10x faster. The keep probability is then (65536 - round(rate * 65536)) /
65536: 0.8000031 for rate 0.2, exactly 0.5 for 0.5. Other devices use torch's own fused dropout.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def keep_mask(shape, rate: float, device=None) -> torch.Tensor:
    """A boolean mask, each element True with probability 1 - rate (to 16-bit resolution)."""
    n = 1
    for d in shape:
        n *= d
    # all 64 bits random (torch's full-range path for from=-2**63): 4 lanes of 16 bits per word. (3 lanes from
    # random_(0, 2**48) drew a third more words and copied a strided mask: 3.4-3.9 vs 2.5-3.0 ms for the
    # first layer's ReLU+dropout forward and backward at batch 32, 2-core CPU.)
    words = torch.empty(-(-n // 4), dtype=torch.int64, device=device).random_(-2 ** 63, None)
    lanes = words.view(torch.int16)[:n]
    threshold = round(rate * 65536) - 32768  # int16 lanes are uniform on [-32768, 32767]
    return (lanes >= threshold).view(shape)


class Dropout(nn.Dropout):
    """`noise_dims`: Keras' noise_shape, as the torch dimensions drawn per element (the others share one
    draw: (0,) is EfficientNet's drop-connect, one keep-or-drop per sample)."""

    def __init__(self, p: float = 0.5, noise_dims: tuple | None = None):
        super().__init__(p)
        self.noise_dims = noise_dims

    def forward(self, x):
        if not self.training or self.p == 0:
            return x
        if self.noise_dims is not None:
            shape = [x.shape[d] if d in self.noise_dims else 1 for d in range(x.dim())]
            keep = torch.rand(shape, device=x.device, dtype=x.dtype) >= self.p
            return x * keep.to(x.dtype) * (1.0 / (1.0 - self.p))
        if x.device.type != "cpu":
            return F.dropout(x, self.p, True)
        mask = keep_mask(x.shape, self.p)
        if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last):
            mask = mask.view(x.shape[0], x.shape[2], x.shape[3], x.shape[1]).permute(0, 3, 1, 2)
        return x * mask.to(x.dtype).mul_(1.0 / (1.0 - self.p))  # bool * float would take a slow path


class BatchNormalization(nn.modules.batchnorm._BatchNorm):
    """Keras' BatchNormalization over dimension `dim` (1 for NCHW images, -1 for Keras' feature axis).

    Inference: (x - moving_mean) * rsqrt(moving_variance + eps) * gamma + beta, written as TensorFlow
    writes it. Training differs from torch in two ways that change every step: the moving statistics
    are updated as moving * momentum + batch * (1 - momentum) with Keras' momentum (0.99: the weight of
    the OLD value), and the moving variance takes the biased batch variance (torch: unbiased).
    `weight`, `bias`, `running_mean`, `running_var` are Keras' gamma, beta, moving_mean, moving_variance.
    `trainable=False` is Keras 3's frozen BatchNormalization (a fine-tuning base): it normalises with the
    moving statistics in training too and never updates them (unfreeze: set `trainable` and requires_grad).
    """

    def __init__(self, num_features: int, eps: float = 1e-3, momentum: float = 0.99, dim: int = 1,
                 trainable: bool = True, device=None, dtype=None):
        super().__init__(num_features, eps=eps, momentum=1.0 - momentum, affine=True, track_running_stats=True,
                         device=device, dtype=dtype)
        self.keras_momentum = momentum
        self.dim = dim
        self.trainable = trainable
        if not trainable:
            self.requires_grad_(False)

    def _check_input_dim(self, x):
        if x.shape[self.dim] != self.num_features:
            raise ValueError(f"expected {self.num_features} features on dimension {self.dim}, got {tuple(x.shape)}")

    def forward(self, x):
        self._check_input_dim(x)
        dim = self.dim % x.dim()
        shape = [1] * x.dim()
        shape[dim] = self.num_features
        if self.training and self.trainable:
            # Torch's fused batch norm normalises with the batch's statistics (biased variance, as Keras' moments)
            # in one kernel forward and one backward; Keras' moving-average rule is applied apart from one
            # var_mean. The same numbers as TensorFlow's x * inv + (beta - mean * inv) to rounding (float64
            # training parity <= 1e-9), with a tenth of the kernels: 9 elementwise ops and their backward
            # were 16% of MobileNetV2's step (`mul` alone, 940 calls).
            # (features last, as after a Conv1D: moving them to dimension 1 for the kernel costs what it saves)
            axes = [d for d in range(x.dim()) if d != dim]
            if dim == 1 and x.numel() > self.num_features:  # (torch's kernel refuses one value per channel)
                with torch.no_grad():
                    var, mean = torch.var_mean(x, axes, correction=0)
                out = F.batch_norm(x, None, None, self.weight, self.bias, True, 0.0, self.eps)
            else:
                mean = x.mean(axes)
                var = (x - mean.view(shape).detach()).square().mean(axes)  # tf.nn.moments: biased
                inv = torch.rsqrt(var.view(shape) + self.eps) * self.weight.view(shape)
                out = x * inv + (self.bias.view(shape) - mean.view(shape) * inv)
            with torch.no_grad():
                m = self.keras_momentum
                self.running_mean.mul_(m).add_(mean.detach() * (1.0 - m))
                self.running_var.mul_(m).add_(var.detach() * (1.0 - m))
                self.num_batches_tracked.add_(1)
            return out
        else:
            mean, var = self.running_mean.view(shape), self.running_var.view(shape)
        inv = torch.rsqrt(var + self.eps) * self.weight.view(shape)
        return x * inv + (self.bias.view(shape) - mean * inv)


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None, dim: int = 1) -> torch.Tensor:
    """GlobalAveragePooling1D with Keras' mask: the mean over the unmasked steps only."""
    if mask is None:
        return x.mean(dim)
    keep = mask.unsqueeze(-1).to(x.dtype)
    return (x * keep).sum(dim) / keep.sum(dim)


class RMSScaledLayerNorm(nn.Module):
    """Keras 3's LayerNormalization(rms_scaling=True) over the trailing `len(shape)` dimensions:
    x * rsqrt(var(x) + eps) * gamma (the variance, as Keras computes it, not the mean square; no beta)."""

    def __init__(self, shape, eps: float = 1e-3):
        super().__init__()
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        self.weight = nn.Parameter(torch.ones(shape))
        self.eps = eps
        self.dims = tuple(range(-len(shape), 0))

    def forward(self, x):
        return x * torch.rsqrt(x.var(self.dims, keepdim=True, correction=0) + self.eps) * self.weight


class LayerScale(nn.Module):
    """ConvNeXt's LayerScale: x * gamma over the last (channel) axis."""

    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * self.gamma


class StochasticDepth(nn.Module):
    """ConvNeXt's StochasticDepth: in training, each sample kept with probability 1 - rate and scaled by
    1 / (1 - rate) (Keras: floor(keep + uniform)); the identity at inference."""

    def __init__(self, rate: float):
        super().__init__()
        self.rate = rate

    def forward(self, x):
        if not self.training or self.rate == 0:
            return x
        keep = 1.0 - self.rate
        mask = torch.floor(keep + torch.rand((x.shape[0],) + (1,) * (x.dim() - 1), device=x.device, dtype=x.dtype))
        return x / keep * mask
