"""Converters of the preprocessing and augmentation layers a model holds: Rescaling, Normalization,
Resizing, CenterCrop, and the Random* augmentation layers (the identity at inference, active in training)."""
from __future__ import annotations

import numpy as np

from ..convert import NCHW, Converter, Out, Weight
from ..registry import converter


def _torch_order(conv: Converter, shape: tuple) -> tuple:
    """A shape in Keras' order (batch excluded) as torch holds a tensor of the layer's input layout."""
    t = conv.inputs[0]
    return (shape[-1], *shape[:-1]) if t.layout == NCHW else tuple(shape)


class _Image(Converter):
    """A layer of (N, H, W, C) images: works on torch's (N, C, H, W)."""

    passes_mask = True

    def setup(self):
        if self.inputs[0].rank != 4:
            self.fail("only batches of images (rank 4) are supported")
        if self.opt("data_format") not in (None, "channels_last"):
            self.fail("data_format='channels_first' is not supported")
        self.image_setup()

    def image_setup(self):
        pass

    def wanted_layout(self, i, t):
        return NCHW


@converter("Rescaling")
class Rescaling(Converter):
    passes_mask = True

    def setup(self):
        self.per_channel = False
        values = {}
        for key in ("scale", "offset"):
            v = self.opt(key, 1.0 if key == "scale" else 0.0)
            if isinstance(v, dict):
                self.fail(f"{key} given as a tensor object is not supported")
            if isinstance(v, list):  # per channel: Keras broadcasts it over the last axis
                flat = np.asarray(v, dtype=np.float64).reshape(-1)
                if flat.size != self.feature_dim() or not np.isfinite(flat).all():
                    self.bad(f"{key} = {v!r} is not one finite number per channel")
                self.per_channel = True
                values[key] = [self.ctx.keras_float(float(a)) for a in flat]
            else:
                # Keras casts both through a float32 tensor first: a float64 model multiplies by float32(1/255)
                values[key] = self.ctx.keras_float(self.float_opt(key, 1.0 if key == "scale" else 0.0))
        self.scale, self.offset = values["scale"], values["offset"]

    def module(self):
        if not self.per_channel:
            return None
        self.ctx.uses.add("kc")
        return f"kc.Rescaling({self._shape()})"

    def _shape(self):
        t = self.inputs[0]
        return _torch_order(self, (1,) * (len(t.shape) - 1) + (t.shape[-1],))

    def constants(self):
        if not self.per_channel:
            return {}
        n = self.inputs[0].shape[-1]
        return {key: np.broadcast_to(np.asarray(v, np.float64), (n,)).reshape(self._shape())
                for key, v in (("scale", self.scale), ("offset", self.offset))}

    def note(self):
        return "a per-channel scale and offset" if self.per_channel else None

    def forward(self, ins, outs):
        if self.per_channel:
            return [f"{outs[0]} = self.{self.attr}({ins[0]})"]
        expr = f"{ins[0]} * {self.scale!r}"
        if not self.offset:
            return [f"{outs[0]} = {expr}"]
        sign = "-" if self.offset < 0 else "+"
        return [f"{outs[0]} = {expr} {sign} {abs(self.offset)!r}"]


@converter("Normalization")
class Normalization(Converter):
    passes_mask = True

    def setup(self):
        t = self.inputs[0]
        rank = t.rank
        axis = self.opt("axis", -1)
        axes = [] if axis is None else axis if isinstance(axis, (list, tuple)) else [axis]
        if not all(isinstance(a, int) and not isinstance(a, bool) and -rank <= a < rank for a in axes):
            self.bad(f"axis = {axis!r}")
        self.keep = sorted({a % rank for a in axes})
        if 0 in self.keep:
            self.fail("normalising per batch position (axis 0) is not supported")
        self.keep_shape = tuple(self.feature_dim(t, a - 1) for a in self.keep)
        # the statistics' shape broadcast against the input (batch excluded), in Keras' order
        self.broadcast = tuple(t.shape[a - 1] if a in self.keep else 1 for a in range(1, rank))
        self.invert = bool(self.opt("invert", False))
        self.given = self.opt("mean") is not None
        if self.given:
            try:  # Keras makes a float32 tensor of them first, in a float64 model too
                self.values = {k: np.broadcast_to(np.vectorize(self.ctx.keras_float)(
                    np.asarray(self.opt(k), np.float64)), self.keep_shape) for k in ("mean", "variance")}
            except ValueError:
                self.bad(f"mean/variance do not broadcast to the kept axes' shape {self.keep_shape}")

    def weights(self):
        if self.given:
            return []
        return [Weight("mean", self.keep_shape, trainable=False), Weight("variance", self.keep_shape, trainable=False),
                Weight("count", (), trainable=False)]

    def module(self):
        self.ctx.uses.add("kc")
        extra = (", invert=True" if self.invert else "") + (", adapted=False" if self.given else "")
        return f"kc.Normalization({_torch_order(self, self.broadcast)}{extra})"

    def note(self):
        return "(x - mean) / max(sqrt(variance), 1e-7)" + (", inverted" if self.invert else "") + \
            (": mean and variance from the config" if self.given else ": adapted mean and variance")

    def _to_torch_shape(self, a):
        a = np.asarray(a).reshape(self.broadcast)
        return np.moveaxis(a, -1, 0) if self.inputs[0].layout == NCHW else a

    def constants(self):
        return {k: self._to_torch_shape(v) for k, v in self.values.items()} if self.given else {}

    def forward(self, ins, outs):
        return [f"{outs[0]} = self.{self.attr}({ins[0]})"]

    def to_torch(self, arrays):
        return {"mean": self._to_torch_shape(arrays[0]), "variance": self._to_torch_shape(arrays[1]),
                "count": np.asarray(arrays[2]).reshape(())}

    def to_keras(self, state):
        def back(a):
            a = np.asarray(a)
            a = np.moveaxis(a, 0, -1) if self.inputs[0].layout == NCHW else a
            return a.reshape(self.keep_shape)
        return [back(state["mean"]), back(state["variance"]), np.asarray(state["count"]).astype(np.int64)]


@converter("Resizing")
class Resizing(_Image):
    def image_setup(self):
        self.size = (self.int_opt("height"), self.int_opt("width"))
        self.interpolation = self.choice("interpolation", ("bilinear", "nearest", "bicubic"), "bilinear")
        if self.interpolation == "bicubic":
            self.fail("interpolation='bicubic' is not supported (TensorFlow's Keys cubic is not torch's)")
        self.crop = bool(self.opt("crop_to_aspect_ratio", False))
        if self.opt("pad_to_aspect_ratio"):
            self.fail("pad_to_aspect_ratio is not supported")
        if self.opt("antialias"):
            self.fail("antialias=True is not supported")

    def outputs(self):
        t = self.inputs[0]
        return [Out((*self.size, t.shape[-1]), NCHW)]

    def forward(self, ins, outs):
        self.ctx.uses.add("kc")
        if self.interpolation == "bilinear" or self.crop:
            self.ctx.caveats.add("TensorFlow's bilinear resize computes in float32")
        crop = ", crop_to_aspect_ratio=True" if self.crop else ""
        return [f"{outs[0]} = kc.resize({ins[0]}, {self.size}, {self.interpolation!r}{crop})  # tf.image.resize"]


@converter("CenterCrop")
class CenterCrop(_Image):
    def image_setup(self):
        self.size = (self.int_opt("height"), self.int_opt("width"))

    def outputs(self):
        return [Out((*self.size, self.inputs[0].shape[-1]), NCHW)]

    def forward(self, ins, outs):
        self.ctx.uses.add("kc")
        return [f"{outs[0]} = kc.center_crop({ins[0]}, {self.size[0]}, {self.size[1]})"]


# ---- augmentation: the identity at inference; in training a torch draw with Keras' parameters ----------------

class _Augmentation(_Image):
    note_text = "the identity at inference; in training torch's draws, not Keras'"

    def note(self):
        return self.note_text

    def image_setup(self):
        seed = self.opt("seed")
        if seed is not None and not isinstance(seed, int):
            self.bad(f"seed = {seed!r}")
        self.args = self.arguments()

    def _factor(self, key, default=None):
        v = self.opt(key, default)
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) or (
            isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(a, (int, float)) for a in v))
        if not ok:
            self.bad(f"{key} = {v!r} is not a number or a (low, high) pair")
        return list(v) if isinstance(v, (list, tuple)) else v

    def _fill(self) -> str:
        mode = self.choice("fill_mode", ("reflect", "wrap", "constant", "nearest"), "reflect")
        interp = self.choice("interpolation", ("bilinear", "nearest"), "bilinear")
        value = self.float_opt("fill_value", 0.0)
        return f"fill_mode={mode!r}, interpolation={interp!r}" + (f", fill_value={value!r}" if value else "")

    def arguments(self) -> str:
        raise NotImplementedError

    def module(self):
        self.ctx.uses.add("kc")
        return f"kc.{self.layer.class_name}({self.args})"

    def forward(self, ins, outs):
        return [f"{outs[0]} = self.{self.attr}({ins[0]})"]


@converter("RandomFlip")
class RandomFlip(_Augmentation):
    def arguments(self):
        return repr(self.choice("mode", ("horizontal", "vertical", "horizontal_and_vertical"),
                                "horizontal_and_vertical"))


@converter("RandomRotation")
class RandomRotation(_Augmentation):
    def arguments(self):
        return f"{self._factor('factor')!r}, {self._fill()}"


@converter("RandomZoom")
class RandomZoom(_Augmentation):
    def arguments(self):
        width = self.opt("width_factor")
        width = None if width is None else self._factor("width_factor")
        return f"{self._factor('height_factor')!r}, {width!r}, {self._fill()}"


@converter("RandomTranslation")
class RandomTranslation(_Augmentation):
    def arguments(self):
        return f"{self._factor('height_factor')!r}, {self._factor('width_factor')!r}, {self._fill()}"


class _ValueRange(_Augmentation):
    def value_range(self):
        v = self.opt("value_range", [0, 255])
        if not (isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(a, (int, float)) for a in v)):
            self.bad(f"value_range = {v!r}")
        return tuple(sorted(v))


@converter("RandomContrast")
class RandomContrast(_ValueRange):
    def arguments(self):
        return f"{self._factor('factor')!r}, value_range={self.value_range()!r}"


@converter("RandomBrightness")
class RandomBrightness(_ValueRange):
    def arguments(self):
        return f"{self._factor('factor')!r}, value_range={self.value_range()!r}"


@converter("RandomCrop")
class RandomCrop(_Augmentation):
    note_text = "training: a random window (torch's draw); inference: the input unchanged, as Keras 3 runs it"

    def arguments(self):
        self.size = (self.int_opt("height"), self.int_opt("width"))
        return f"{self.size[0]}, {self.size[1]}"

    def outputs(self):
        return [Out((*self.size, self.inputs[0].shape[-1]), NCHW)]

