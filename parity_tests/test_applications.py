"""Every keras.applications family, its first member at its smallest input (10 classes), ported and checked
against Keras: forward float32 (float64 and the gradients too for the families that are quick to run). The
other members, native input sizes and every family's gradients are in `scripts/port_zoo.py --applications`
(CI's time: the whole set with gradients took 4.9 minutes on the 2-core machine)."""
from __future__ import annotations

import pytest
from port_helpers import assert_all

from torchport.originals.keras_zoo import APPLICATIONS, application
from torchport.parity import model as pm
from torchport.porting.plan import plan_file


# families whose gradients and float64 twin take seconds here (NASNet's 742 tensors at 224x224 take a minute)
QUICK = {"VGG", "ResNet", "MobileNetV2", "MobileNetV3", "EfficientNet", "ConvNeXt"}


@pytest.mark.parametrize("family", sorted(APPLICATIONS))
def test_every_applications_family_ports(keras, tmp_path, family):
    members, size = APPLICATIONS[family]
    # MobileNetV3 with include_preprocessing is the keras.io MobileNetV3 example's
    kwargs = {"include_preprocessing": False} if family == "MobileNetV3" else {}
    model = application(keras, members[0], size, classes=10, **kwargs)
    path = str(tmp_path / f"{members[0]}.keras")
    model.save(path)
    plan = plan_file(path)
    results = pm.compare(plan, path, "float32", 0, gradients=family in QUICK)
    if family in QUICK:
        results.append(pm.check_forward(plan, path, "float64"))
    assert_all(results)
    assert plan.param_count() == model.count_params()


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
