"""Cross-framework parity checks: torchport against TensorFlow/Keras on the same weights.

`seeds`: the two seed ports (`torchport parity`); `model`: any ported Keras model file
(`torchport parity --model`, and the parity.md `torchport port` writes).
"""
from ..originals.keras_models import CIFAR_SHAPE, keras_cifar, keras_mnist
from .core import Result, count_differing, format_table, ks_statistic, max_abs, max_rel, worst
from .seeds import (
    check_forward, check_gradients, check_init, check_loss, check_metrics, check_optimizer, check_short_training,
    check_structure, check_train_mode, forward_diff, main, run_all, torch_probs, twins,
)

__all__ = ["CIFAR_SHAPE", "keras_cifar", "keras_mnist", "Result", "count_differing", "format_table", "ks_statistic",
           "max_abs", "max_rel", "worst", "check_forward", "check_gradients", "check_init", "check_loss",
           "check_metrics", "check_optimizer", "check_short_training", "check_structure", "check_train_mode",
           "forward_diff", "main", "run_all", "torch_probs", "twins"]
