"""keras.io examples rebuilt (torchport/originals/keras_zoo.py: KERAS_IO), compiled as each example compiles
its model, ported and checked against Keras: forward and gradients in float32 and float64; and the
transfer-learning one, a frozen keras.applications base nested in the model, trained by torchport and by
Keras' fit in float64, step by step."""
from __future__ import annotations

import pytest
from port_helpers import assert_all

from torchport.originals.keras_zoo import KERAS_IO, build
from torchport.parity import model as pm
from torchport.porting.plan import plan_file


@pytest.mark.parametrize("name", sorted(KERAS_IO))
def test_keras_io_examples_port(keras, tmp_path, name):
    model = build(keras, name)
    path = str(tmp_path / f"{name}.keras")
    model.save(path)
    plan = plan_file(path)
    results = pm.port_checks(plan, path)
    assert_all(results)
    forward32 = next(r for r in results if r.check.startswith("forward float32"))
    assert forward32.diff <= 1e-4  # the bar, on the output's scale


def test_transfer_learning_trains_in_float64_as_keras_fit(keras, tmp_path):
    keras.config.set_floatx("float64")
    try:
        model = build(keras, "transfer_learning")
        path = str(tmp_path / "transfer_learning.keras")
        model.save(path)
    finally:
        keras.config.set_floatx("float32")
    plan = plan_file(path)
    assert "self.mobilenetv2_0_35_96.requires_grad_(False)" in plan.source
    results = pm.check_training(plan, path, epochs=2, batch=8)
    assert_all(results)
    assert all(r.diff <= 1e-9 for r in results if r.check.startswith("training")), results
