"""SimpleCNN against the Keras model's published structure, init and Flatten order."""
import io
import math

import numpy as np
import pytest
import torch

from torchport.cifar10 import SimpleCNN
from torchport.keras_compat.summary import summary_rows

KERAS_TABLE = [  # from Keras' model.summary() of the seed's model (the seed's published log)
    ("conv2d", "(None, 32, 32, 32)", 896),
    ("dropout", "(None, 32, 32, 32)", 0),
    ("conv2d_1", "(None, 32, 32, 32)", 9248),
    ("max_pooling2d", "(None, 16, 16, 32)", 0),
    ("flatten", "(None, 8192)", 0),
    ("dense", "(None, 512)", 4194816),
    ("dropout_1", "(None, 512)", 0),
    ("dense_1", "(None, 10)", 5130),
]


def test_layers_shapes_and_params_match_keras():
    rows = summary_rows(SimpleCNN(), torch.zeros(2, 3, 32, 32))
    assert [(n, s, p) for n, _, s, p in rows] == KERAS_TABLE
    assert sum(p.numel() for p in SimpleCNN().parameters()) == 4_210_090


def test_summary_prints_the_keras_table():
    out = io.StringIO()
    SimpleCNN().summary(file=out)
    text = out.getvalue()
    assert "Total params: 4,210,090" in text and "Trainable params: 4,210,090" in text
    assert "dense (Dense)" in text and "max_pooling2d (MaxPooling2D)" in text and "(None, 16, 16, 32)" in text
    assert "4,194,816" in text


@pytest.mark.parametrize("name, fan_in, fan_out", [
    ("conv2d", 3 * 9, 32 * 9), ("conv2d_1", 32 * 9, 32 * 9), ("dense", 8192, 512), ("dense_1", 512, 10)])
def test_glorot_uniform_bounds_and_variance_and_zero_bias(name, fan_in, fan_out):
    torch.manual_seed(0)
    layer = getattr(SimpleCNN(), name)
    w = layer.weight.detach().double().numpy().ravel()
    limit = math.sqrt(6 / (fan_in + fan_out))
    assert w.min() >= -limit and w.max() <= limit
    assert w.max() > 0.95 * limit and w.min() < -0.95 * limit  # fills the range: not a narrower limit
    n = w.size
    se = (limit ** 2 / 3) * math.sqrt(2 / n) * 1.2  # std error of the sample variance of U(-a, a), loosely
    assert abs(w.var() - limit ** 2 / 3) < 5 * se + 1e-12
    assert torch.count_nonzero(layer.bias) == 0


def test_flatten_is_channels_last_like_keras():
    m = SimpleCNN()
    # value = 100*c + 10*h + w (small h, w) shows the order features come out in
    x = torch.zeros(1, 32, 2, 2)
    for c in range(32):
        for h in range(2):
            for w_ in range(2):
                x[0, c, h, w_] = 1000 * h + 100 * w_ + c
    flat = m.flatten(x)[0].tolist()
    keras = np.transpose(x.numpy(), (0, 2, 3, 1)).reshape(1, -1)[0].tolist()  # what Keras' Flatten gives
    assert flat == keras
    assert flat[:3] == [0, 1, 2] and flat[32] == 100  # c varies fastest, then w, then h


def test_predict_returns_probabilities_and_forward_logits():
    torch.manual_seed(0)
    m = SimpleCNN()
    x = torch.rand(5, 3, 32, 32)
    p = m.predict(x, batch_size=2)
    assert torch.allclose(p.sum(1), torch.ones(5), atol=1e-6)
    m.eval()
    assert torch.allclose(torch.softmax(m(x), -1), p, atol=1e-7)
    assert m.training is False


def test_predict_takes_numpy_moves_to_the_models_dtype_and_returns_cpu_probabilities():
    torch.manual_seed(0)
    m = SimpleCNN().double()
    x = np.random.default_rng(0).uniform(size=(5, 3, 32, 32)).astype("float32")
    p = m.predict(x, batch_size=2)
    assert p.device.type == "cpu" and p.dtype == torch.float64
    m.eval()
    assert torch.allclose(torch.softmax(m(torch.from_numpy(x).double()), -1), p)
