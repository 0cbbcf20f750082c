"""torchport: two Colab tutorials (Keras CIFAR-10 CNN, PyTorch MNIST) on one PyTorch training engine."""
from .device import DeviceDataLoader, TensorLoader, get_default_device, to_device
from .engine import Callback, History, evaluate, fit
from .errors import CheckpointError, DataError, NonFiniteLossError, TorchportError, UsageError
from .keras_compat.optim import KerasSGD

__version__ = "0.1.0"
__all__ = ["get_default_device", "to_device", "DeviceDataLoader", "TensorLoader", "fit", "evaluate", "History",
           "Callback", "KerasSGD", "TorchportError", "UsageError", "DataError", "CheckpointError",
           "NonFiniteLossError"]
