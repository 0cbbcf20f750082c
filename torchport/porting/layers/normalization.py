"""Converters of BatchNormalization and LayerNormalization."""
from __future__ import annotations

import numpy as np

from ..convert import KERAS, Converter, Weight, torch_dim
from ..registry import converter


def _axes(conv: Converter, rank: int) -> list[int]:
    """Keras' `axis` (an int or a list; tf.keras 2 stores positive axes, batch included) as positive axes."""
    axis = conv.opt("axis", -1)
    axes = axis if isinstance(axis, list) else [axis]
    if not axes or not all(isinstance(a, int) and not isinstance(a, bool) and -rank <= a < rank for a in axes):
        conv.bad(f"axis = {axis!r}")
    axes = sorted({a % rank for a in axes})
    if 0 in axes:
        conv.fail("normalising over the batch axis is not supported")
    return axes


@converter("BatchNormalization")
class BatchNormalization(Converter):
    passes_mask = True

    def setup(self):
        t = self.inputs[0]
        axes = _axes(self, t.rank)
        if len(axes) != 1:
            self.fail(f"axis={self.opt('axis')!r}: one feature axis is supported")
        self.axis = axes[0]
        self.features = self.feature_dim(t, self.axis - 1)
        self.eps = self.float_opt("epsilon", 1e-3)
        self.momentum = self.float_opt("momentum", 0.99)
        self.center, self.scale = bool(self.opt("center", True)), bool(self.opt("scale", True))
        if self.opt("renorm"):
            self.fail("renorm is not supported")
        if t.mask is not None:
            self.fail("a masked input is not supported (Keras would use the mask for the batch statistics)")

    def weights(self):
        f = (self.features,)
        return ([Weight("gamma", f)] if self.scale else []) + ([Weight("beta", f)] if self.center else []) + \
            [Weight("moving_mean", f, trainable=False), Weight("moving_variance", f, trainable=False)]

    def module(self):
        self.ctx.uses.add("kc")
        t = self.inputs[0]
        dim = torch_dim(self.axis, t.rank, t.layout)
        dim_src = "" if dim == 1 else f", dim={dim if dim < t.rank - 1 else -1}"
        frozen = ", trainable=False" if self.opt("trainable") is False else ""
        return (f"kc.BatchNormalization({self.features}, eps={self.eps!r}, momentum={self.momentum!r}{dim_src}"
                f"{frozen})")

    def note(self):
        if self.opt("trainable") is False:
            return "trainable=False: inference mode in training too, as Keras 3 runs a frozen BatchNormalization"
        return "Keras' moving-average update (biased variance)"

    def init_lines(self):
        frozen = ([] if self.scale else ["weight"]) + ([] if self.center else ["bias"])
        return [f"self.{self.attr}.{p}.requires_grad_(False)  # Keras has no {'gamma' if p == 'weight' else 'beta'}"
                for p in frozen]

    def forward(self, ins, outs):
        return [f"{outs[0]} = self.{self.attr}({ins[0]})"]

    def to_torch(self, arrays):
        arrays = list(arrays)
        f = self.features
        gamma = arrays.pop(0) if self.scale else np.ones(f, arrays[0].dtype)
        beta = arrays.pop(0) if self.center else np.zeros(f, arrays[0].dtype)
        return {"weight": gamma, "bias": beta, "running_mean": arrays[0], "running_var": arrays[1],
                "num_batches_tracked": np.zeros((), np.int64)}

    def to_keras(self, state):
        return ([state["weight"]] if self.scale else []) + ([state["bias"]] if self.center else []) + \
            [state["running_mean"], state["running_var"]]


@converter("LayerNormalization")
class LayerNormalization(Converter):
    passes_mask = True

    def setup(self):
        t = self.inputs[0]
        self.axes = _axes(self, t.rank)
        if self.axes != list(range(self.axes[0], t.rank)):
            self.fail(f"axis={self.opt('axis')!r}: only the trailing axes are supported")
        self.shape = tuple(self.feature_dim(t, a - 1) for a in self.axes)
        self.eps = self.float_opt("epsilon", 1e-3)
        self.center, self.scale = bool(self.opt("center", True)), bool(self.opt("scale", True))
        self.rms = bool(self.opt("rms_scaling", False))
        if self.rms:  # Keras 3: gamma always, no beta
            self.center, self.scale = False, True

    def wanted_layout(self, i, t):
        return KERAS  # torch's LayerNorm normalises the trailing dimensions

    def weights(self):
        return ([Weight("gamma", self.shape)] if self.scale else []) + \
            ([Weight("beta", self.shape)] if self.center else [])

    def module(self):
        if self.rms:
            self.ctx.uses.add("kc")
            return f"kc.RMSScaledLayerNorm({self.shape[0] if len(self.shape) == 1 else self.shape}, eps={self.eps!r})"
        shape = self.shape[0] if len(self.shape) == 1 else self.shape
        affine = "" if (self.scale and self.center) else f", elementwise_affine=True, bias={self.center}"
        if not self.scale and not self.center:
            affine = ", elementwise_affine=False"
        return f"nn.LayerNorm({shape}, eps={self.eps!r}{affine})"

    def note(self):
        return "Keras 3's rms_scaling: x * rsqrt(var(x) + eps) * gamma" if self.rms else None

    def init_lines(self):
        if self.center and not self.scale:
            return [f"self.{self.attr}.weight.requires_grad_(False)  # Keras has no gamma"]
        return []

    def forward(self, ins, outs):
        return [f"{outs[0]} = self.{self.attr}({ins[0]})"]

    def to_torch(self, arrays):
        arrays = list(arrays)
        out = {}
        if self.scale:
            out["weight"] = arrays.pop(0)
        elif self.center:
            out["weight"] = np.ones(self.shape, arrays[0].dtype)
        if self.center:
            out["bias"] = arrays.pop(0)
        return out

    def to_keras(self, state):
        return ([state["weight"]] if self.scale else []) + ([state["bias"]] if self.center else [])

