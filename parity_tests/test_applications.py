"""Every keras.applications family, its first member at its smallest input (10 classes), ported and checked
against Keras: forward float32 (float64 and the gradients too for four families). The other members and the
native input sizes are in `scripts/port_zoo.py --applications` (CI's time: every family with gradients and
float64 took 4.9 minutes on the 2-core machine, this about 2.5)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from port_helpers import assert_all

from torchport.originals.keras_zoo import APPLICATIONS, application
from torchport.parity import model as pm
from torchport.porting.plan import plan_file


# families also checked with the calibrated rows, gradients and float64 (depthwise convolutions, squeeze-and-
# excite broadcasting, recorded operations, drop-connect); the others' gradients are in port_zoo.py's runs
QUICK = {"MobileNetV2", "MobileNetV3", "EfficientNet", "EfficientNetV2"}


@pytest.mark.parametrize("family", sorted(APPLICATIONS))
def test_every_applications_family_ports(keras, tmp_path, family):
    """The model in memory and its port on the same two images: the logits' float32 difference on their own
    scale (the suite's budget: one pass each; `parity --model` and port_zoo.py add the calibrated rows)."""
    members, size = APPLICATIONS[family]
    # MobileNetV3 with include_preprocessing is the keras.io MobileNetV3 example's
    kwargs = {"include_preprocessing": False} if family == "MobileNetV3" else {}
    model = application(keras, members[0], size, classes=10, classifier_activation=None, **kwargs)
    path = str(tmp_path / f"{members[0]}.keras")
    model.save(path)
    plan = plan_file(path)
    assert plan.param_count() == model.count_params()
    x = pm.make_inputs(plan, 2, 0)
    theirs = np.asarray(model(x[0], training=False))
    with torch.no_grad():
        ours = plan.module()(*pm.torch_inputs(plan, x)).numpy()
    if family not in QUICK:
        assert np.abs(ours - theirs).max() / np.abs(theirs).max() <= 1e-4
    else:  # the calibrated rows decide (EfficientNet's logits at 32x32 move 1.7e-4 in float32), and float64:
        # gradients too
        results = pm.compare(plan, path, "float32", 0, gradients=True)  # (calibrated to Keras' own spread)
        results.append(pm.check_forward(plan, path, "float64"))
        assert_all(results)


def test_convnext_stochastic_depth_and_layer_scale(keras, tmp_path):
    """keras.applications' own ConvNeXt classes in a residual block, as ConvNeXt's builder uses them with a
    drop_path_rate (the public constructors build with 0, where StochasticDepth is left out)."""
    from keras.src.applications.convnext import LayerScale, StochasticDepth
    from port_helpers import port_checks, randomize
    L = keras.layers
    inp = keras.Input((6, 6, 8))
    x = L.DepthwiseConv2D(3, padding="same")(inp)
    x = L.LayerNormalization(epsilon=1e-6)(x)
    x = L.Dense(16, activation="gelu")(x)
    x = L.Dense(8)(x)
    x = LayerScale(1e-1, 8)(x)
    x = StochasticDepth(drop_path_rate=0.1)(x)
    model = keras.Model(inp, L.Add()([inp, x]))
    randomize(model)
    plan, results = port_checks(keras, tmp_path, model, "convnext_block")
    assert_all(results)
    assert "kc.StochasticDepth(0.1)" in plan.source and "kc.LayerScale(8)" in plan.source
