"""Preprocessing and augmentation layers in a model, checked against Keras: ported forward and gradients
(Normalization adapted or given, inverted; per-channel Rescaling; Resizing; CenterCrop; the Random* layers,
the identity at inference), and the augmentation's training-mode transforms at fixed factors, where Keras'
draw is known, equal to Keras' own output."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from port_helpers import assert_all, port_checks

from torchport import keras_compat as kc
from torchport.parity import model as pm
from torchport.porting.plan import plan_file


def _case(keras, name):
    L = keras.layers
    rng = np.random.default_rng(0)
    img = (10, 12, 3)
    if name == "normalization_adapted":
        norm = L.Normalization(axis=-1)
        norm.adapt(rng.normal(3, 2, (50, *img)).astype("float32"))
        return [norm, L.Conv2D(4, 3)], img
    if name == "normalization_given":  # ConvNeXt's and EfficientNetV2's form
        return [L.Normalization(mean=[0.485, 0.456, 0.406], variance=[0.052, 0.05, 0.051]), L.Conv2D(4, 3)], img
    if name == "normalization_vector_inverted":
        return [L.Dense(5), L.Normalization(mean=2.0, variance=4.0, invert=True)], (7,)
    if name == "normalization_two_axes":
        norm = L.Normalization(axis=(1, 2))
        norm.adapt(rng.normal(1, 3, (40, 6, 4)).astype("float32"))
        return [norm, L.Flatten(), L.Dense(3)], (6, 4)
    if name == "rescaling_per_channel":  # EfficientNet's 1/sqrt(stddev) per channel
        return [L.Rescaling([0.5, 0.25, 2.0], offset=-1), L.Conv2D(4, 3)], img
    if name == "resizing_bilinear":
        return [L.Resizing(7, 9), L.Conv2D(4, 3)], img
    if name == "resizing_nearest_up":
        return [L.Resizing(15, 20, interpolation="nearest"), L.Conv2D(4, 3)], img
    if name == "resizing_crop_to_aspect_ratio":
        return [L.Resizing(8, 8, crop_to_aspect_ratio=True), L.Conv2D(4, 3)], img
    if name == "center_crop":
        return [L.CenterCrop(6, 8), L.Conv2D(4, 3)], img
    if name == "augmentation":  # keras.io's image classification from scratch, and the rest
        return [L.RandomFlip("horizontal"), L.RandomRotation(0.1), L.RandomZoom(0.2), L.RandomTranslation(0.1, 0.1),
                L.RandomContrast(0.2), L.RandomBrightness(0.1), L.RandomCrop(10, 12), L.Conv2D(4, 3)], img
    raise KeyError(name)


CASES = ["normalization_adapted", "normalization_given", "normalization_vector_inverted", "normalization_two_axes",
         "rescaling_per_channel", "resizing_bilinear", "resizing_nearest_up", "resizing_crop_to_aspect_ratio",
         "center_crop", "augmentation"]


# Keras 3 cannot save its augmentation layers to .h5 (it fails deep-copying their seed generator), nor load its
# own .h5 of a Normalization over two axes (it builds the mean as (4,), the file holds (6, 4)): .keras only
KERAS_ONLY = {"augmentation", "normalization_two_axes"}


@pytest.mark.parametrize("name, fmt", [(n, f) for n in CASES for f in ("keras", "h5")
                                       if f == "keras" or n not in KERAS_ONLY])
def test_preprocessing_layers_port(keras, tmp_path, name, fmt):
    keras.utils.set_random_seed(0)
    layers, shape = _case(keras, name)
    model = keras.Sequential([keras.Input(shape), *layers])
    plan, results = port_checks(keras, tmp_path, model, name, fmt)
    assert_all(results)
    if name == "normalization_adapted":  # Keras' three variables, back as Keras stores them
        arrays = plan.keras_arrays()[model.layers[0].name][0][1]
        for ours, theirs in zip(arrays, model.layers[0].get_weights(), strict=True):
            np.testing.assert_array_equal(ours, theirs)


def test_an_adapted_normalization_is_what_makes_float64_agree(keras, tmp_path):
    """Planted: the adapted mean dropped. The float64 forward check must fail."""
    keras.utils.set_random_seed(0)
    layers, shape = _case(keras, "normalization_adapted")
    model = keras.Sequential([keras.Input(shape), *layers])
    model.save(tmp_path / "n.keras")
    plan = plan_file(str(tmp_path / "n.keras"))
    assert pm.check_forward(plan, str(tmp_path / "n.keras"), "float64").passed
    key = next(k for k in plan.state if k.endswith(".mean"))
    plan.state[key] = plan.state[key] * 0
    x = pm.make_inputs(plan, 4, 0)
    theirs = np.asarray(model(x[0]))
    ours = plan.module()(*pm.torch_inputs(plan, x)).detach().numpy()
    assert np.abs(ours - theirs).max() > 0.1


FILLS = [(mode, interp) for mode in ("reflect", "wrap", "constant", "nearest") for interp in ("bilinear", "nearest")]


@pytest.mark.parametrize("mode, interp", FILLS)
def test_a_fixed_rotation_in_training_is_keras_rotation(keras, mode, interp):
    x = np.random.default_rng(0).uniform(0, 255, (3, 9, 11, 2)).astype("float32")
    theirs = np.asarray(keras.layers.RandomRotation((0.1, 0.1), fill_mode=mode, interpolation=interp,
                                                    fill_value=3.0)(x, training=True))
    ours = kc.RandomRotation((0.1, 0.1), fill_mode=mode, interpolation=interp, fill_value=3.0).train()(
        torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-3)


@pytest.mark.parametrize("layer, args", [
    ("RandomZoom", ((0.3, 0.3), (-0.2, -0.2))), ("RandomZoom", ((-0.3, -0.3),)),
    ("RandomTranslation", ((0.2, 0.2), (-0.35, -0.35))), ("RandomBrightness", ((0.1, 0.1),)),
])
@pytest.mark.parametrize("mode", ["reflect", "wrap"])
def test_fixed_zooms_translations_and_brightness_in_training_are_keras(keras, layer, args, mode):
    x = np.random.default_rng(1).uniform(0, 255, (3, 9, 11, 2)).astype("float32")
    kw = {"fill_mode": mode} if layer != "RandomBrightness" else {}
    theirs = np.asarray(getattr(keras.layers, layer)(*args, **kw)(x, training=True))
    ours = getattr(kc, layer)(*args, **kw).train()(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()))
    np.testing.assert_allclose(ours.permute(0, 2, 3, 1).numpy(), theirs, atol=1e-3)


def test_random_layers_draw_in_training_and_are_the_identity_at_inference():
    torch.manual_seed(0)
    x = torch.rand(64, 2, 5, 6)
    flip = kc.RandomFlip("horizontal")
    assert torch.equal(flip.eval()(x), x)
    out = flip.train()(x)
    flipped = torch.tensor([torch.equal(o, i.flip(-1)) for o, i in zip(out, x, strict=True)])
    kept = torch.tensor([torch.equal(o, i) for o, i in zip(out, x, strict=True)])
    assert bool((flipped | kept).all()) and 16 < int(flipped.sum()) < 48  # each with probability 1/2
    contrast = kc.RandomContrast([0, 0.5], value_range=(0, 1))
    assert torch.equal(contrast.eval()(x), x)
    y = contrast.train()(x)
    mean = x.mean((2, 3), keepdim=True)
    factor = ((y - mean) / (x - mean)).flatten(1)  # one factor per image, in [1, 1.5] (before clipping)
    unclipped = (y > 0) & (y < 1)
    f = torch.stack([row[keep.flatten()].median() for row, keep in zip(factor, unclipped, strict=True)])
    assert float(f.min()) >= 1 - 1e-5 and float(f.max()) <= 1.5 + 1e-5 and float(f.std()) > 0.05
    crop = kc.RandomCrop(3, 4)
    assert torch.equal(crop.eval()(x), x)  # Keras 3 crops only in training
    assert crop.train()(x).shape == (64, 2, 3, 4)
