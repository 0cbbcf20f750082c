"""Keras 3 ignores SGD's `decay` with a warning; KerasSGD's default does the same, word for word."""
import warnings

import torch

from torchport import KerasSGD
from torchport.keras_compat.optim import KERAS3_DECAY_WARNING


def test_keras3_ignores_decay_with_the_same_warning(keras):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        opt = keras.optimizers.SGD(learning_rate=0.01, momentum=0.9, decay=0.01 / 25, nesterov=False)
    keras_msgs = [str(w.message) for w in caught]
    assert KERAS3_DECAY_WARNING in keras_msgs
    assert float(opt.learning_rate) == float(torch.tensor(0.01, dtype=torch.float32))  # a float32 variable

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ours = KerasSGD([torch.zeros(1, requires_grad=True)], learning_rate=0.01, momentum=0.9, decay=0.01 / 25)
    assert [str(w.message) for w in caught] == [KERAS3_DECAY_WARNING]
    assert ours.current_lr(ours.param_groups[0]) == 0.01
