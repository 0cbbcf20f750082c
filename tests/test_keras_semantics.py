"""The Keras log line, categorical cross-entropy and accuracy, checked against hand values."""
import io
import math

import numpy as np
import pytest
import torch

from torchport import TensorLoader, engine
from torchport.keras_compat import categorical_accuracy, categorical_crossentropy, format_epoch_line
from torchport.keras_compat.progbar import ProgbarLogger, format_step_time


def test_seed_log_line_reproduced():
    logs = {"loss": 1.69634, "accuracy": 0.38341, "val_loss": 1.37841, "val_accuracy": 0.50294}
    line = format_epoch_line(1563, 1563, 195.9, logs)
    assert line == ("1563/1563 - 196s - 125ms/step - accuracy: 0.3834 - loss: 1.6963 - val_accuracy: 0.5029 "
                    "- val_loss: 1.3784")


@pytest.mark.parametrize("seconds, text", [
    (0.0, "0s/step"), (0.0004, "400us/step"), (0.00000049, "0us/step"), (0.000999, "999us/step"),
    (0.001, "1ms/step"), (0.1254, "125ms/step"), (0.9994, "999ms/step"), (1.0, "1s/step"), (2.6, "3s/step")])
def test_step_time_units(seconds, text):
    assert format_step_time(seconds) == text


def test_small_metrics_use_exponent_and_width_pads_the_step_count():
    line = format_epoch_line(7, 10, 0.5, {"loss": 0.0009, "accuracy": 1.0, "zz": 0.001})
    assert line == " 7/10 - 0s - 71ms/step - accuracy: 1.0000 - loss: 9.0000e-04 - zz: 1.0000e-03"


def test_progbar_prints_header_and_line_per_epoch():
    out = io.StringIO()
    m = torch.nn.Linear(2, 3)
    torch.nn.init.zeros_(m.weight), torch.nn.init.zeros_(m.bias)  # logits 0: loss ln 3, argmax ties to 0
    data = TensorLoader(torch.zeros(5, 2), torch.zeros(5, dtype=torch.long), 2)
    engine.fit(m, torch.optim.SGD(m.parameters(), 0.0), torch.nn.functional.cross_entropy, data, 2,
               metrics={"accuracy": categorical_accuracy}, verbose=0, callbacks=[ProgbarLogger(2, file=out)])
    lines = out.getvalue().splitlines()
    assert lines[0] == "Epoch 1/2" and lines[2] == "Epoch 2/2"
    assert lines[1].startswith("3/3 - 0s - ") and " - accuracy: " in lines[1] and " - loss: 1.0986" in lines[1]
    assert " - accuracy: 1.0000 - loss" in lines[1]


def test_categorical_crossentropy_paths_against_float64_reference():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(6, 10)) * 3
    y = np.eye(10)[rng.integers(0, 10, 6)]
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    want = -(y * np.log(p)).sum(1).mean()
    zt, yt = torch.tensor(z), torch.tensor(y)
    assert categorical_crossentropy(zt, yt).item() == pytest.approx(want, rel=1e-12)
    assert categorical_crossentropy(zt, yt.argmax(1)).item() == pytest.approx(want, rel=1e-12)
    assert categorical_crossentropy(zt, yt, clipped=True).item() == pytest.approx(want, rel=1e-12)


def test_saturated_logits_differ_exactly_as_keras_paths_do():
    z = torch.tensor([[100.0, 0.0, -100.0]])
    y = torch.tensor([[0.0, 0.0, 1.0]])
    assert categorical_crossentropy(z, y).item() == pytest.approx(200.0)  # logits path: exact
    assert categorical_crossentropy(z, y, clipped=True).item() == pytest.approx(-math.log(1e-7), rel=1e-6)


def test_categorical_accuracy_ties_go_to_the_smallest_index():
    out = torch.tensor([[0.5, 0.5, 0.0], [0.2, 0.4, 0.4], [0.1, 0.1, 0.1]])
    y = torch.tensor([[1.0, 0, 0], [0, 0, 1.0], [0, 1.0, 0]])
    assert categorical_accuracy(out, y).item() == pytest.approx(1 / 3)  # only row 0: argmax 0 == 0
