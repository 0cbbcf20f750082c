# %% [markdown]
# # Training a neural network on a Colab GPU: the MNIST tutorial on torchport
#
# @badge
#
# The seed tutorial's 15 steps, in its order. Where torchport keeps the tutorial's code (the model class, the
# driver) it is here as the tutorial wrote it; where torchport replaces a definition (`accuracy`,
# `get_default_device`, `to_device`, `DeviceDataLoader`, `fit`, `evaluate`) the cell imports it and shows the
# original beside it. The last section runs the same experiment on torchport's fast loader and times both.

# %%
# @install

# %% tags=["parameters"]
epochs = 5        # per phase, as the tutorial: fit(5, 0.5) then fit(5, 0.1)
data_dir = None   # a folder with the MNIST idx files; None: the cache, a download, or the bundled sample
seed = 0

# %% [markdown]
# ## Step 1: Runtime > Change runtime type > GPU
# On Colab, pick a GPU runtime; everything below also runs on a CPU.

# %% [markdown]
# ## Step 2: Load PyTorch, torchvision and matplotlib

# %%
import time

import matplotlib.pyplot as plt
import torch
import torch.nn as nn  # noqa: F401 (the model class uses nn and F)
import torch.nn.functional as F  # noqa: F401
from torch.utils.data import DataLoader, TensorDataset, random_split
# %matplotlib inline

# %% [markdown]
# ## Step 3: The MNIST images as tensors, split into training and validation sets
# The tutorial uses `MNIST(root, download=True, transform=ToTensor())`; torchport's reader gives the same
# tensors (1x28x28 floats in [0, 1]) from the idx files, offline from the bundled sample when needed, and the
# split is seeded (the tutorial's was not).

# %%
from torchport.mnist import load_mnist

(images, labels), (test_images, test_labels) = load_mnist(data_dir)
dataset = TensorDataset(images.unsqueeze(1).float() / 255, labels)   # what ToTensor() gives
val_size = 10000 if len(dataset) == 60000 else len(dataset) // 6
train_size = len(dataset) - val_size
train_ds, val_ds = random_split(dataset, [train_size, val_size], generator=torch.Generator().manual_seed(seed))
len(train_ds), len(val_ds)

# %% [markdown]
# ## Step 4: The accuracy of a batch of outputs
# @source torchport/originals/mnist_notebook.py::accuracy
# torchport's keeps the computation on the device (no `.item()` per batch):

# %%
from torchport.mnist import accuracy  # noqa: F401 (the model's validation_step uses it)

# %% [markdown]
# ## Step 5: DataLoaders for the training and validation sets

# %%
batch_size = 128
train_loader = DataLoader(train_ds, batch_size, shuffle=True, num_workers=4, pin_memory=True)
val_loader = DataLoader(val_ds, batch_size * 2, num_workers=4, pin_memory=True)


# %% [markdown]
# ## Step 6: The model: one hidden layer, training and validation steps
# The tutorial's class, as torchport keeps it (`torchport/mnist.py`; its sizes have defaults there):

# %%
# @source torchport/mnist.py::MnistModel

# %% [markdown]
# ## Step 7: Is a GPU available? (True: yes)

# %%
torch.cuda.is_available()

# %% [markdown]
# ## Step 8: The device to run on
# @source torchport/originals/mnist_notebook.py::get_default_device

# %%
from torchport.mnist import get_default_device

device = get_default_device()
device

# %% [markdown]
# ## Step 9: Moving tensors (and lists of them) to the device
# @source torchport/originals/mnist_notebook.py::to_device
# torchport's also moves dicts and modules, and copies non-blocking only toward a GPU:

# %%
from torchport.mnist import to_device

# %% [markdown]
# ## Step 10: A DataLoader that moves every batch to the device
# The tutorial's class is torchport's (`torchport/device.py`), unchanged:
# @source torchport/device.py::DeviceDataLoader

# %%
from torchport.mnist import DeviceDataLoader

train_loader = DeviceDataLoader(train_loader, device)
val_loader = DeviceDataLoader(val_loader, device)

# %% [markdown]
# ## Step 11: `fit` and `evaluate`
# @source torchport/originals/mnist_notebook.py::evaluate,fit
# torchport's are a face over its one training engine: the same calls and results (the validation metrics
# are the tutorial's unweighted mean of per-batch values), with `model.eval()`/`no_grad` for validation.

# %%
from torchport.mnist import evaluate, fit

# %% [markdown]
# ## Step 12: The model, 784 inputs, 32 hidden units, 10 classes, on the device

# %%
torch.manual_seed(seed)
model = MnistModel(784, hidden_size=32, out_size=10)  # noqa: F821 (the class is the @source cell's)
to_device(model, device)

# %% [markdown]
# ## Step 13: The validation loss and accuracy before training

# %%
started = time.perf_counter()
history = [evaluate(model, val_loader)]
history

# %% [markdown]
# ## Step 14: Train with learning rate 0.5

# %%
history += fit(epochs, 0.5, model, train_loader, val_loader)

# %% [markdown]
# ## Step 15: Then with learning rate 0.1

# %%
history += fit(epochs, 0.1, model, train_loader, val_loader)
tutorial_seconds = time.perf_counter() - started

# %% [markdown]
# ## The history: accuracy and loss against epochs (0 is before training)

# %%
accuracies = [x['val_acc'] for x in history]
plt.plot(accuracies, '-x')
plt.xlabel('epoch')
plt.ylabel('accuracy')
plt.title('Accuracy vs. No. of epochs')
plt.show()

# %%
losses = [x['val_loss'] for x in history]
plt.plot(losses, '-x')
plt.xlabel('epoch')
plt.ylabel('loss')
plt.title('Loss vs. No. of epochs')
plt.show()

# %% [markdown]
# ## The test set

# %%
test_ds = TensorDataset(test_images.unsqueeze(1).float() / 255, test_labels)
test_loader = DeviceDataLoader(DataLoader(test_ds, batch_size=256), device)
evaluate(model, test_loader)

# %% [markdown]
# ## The same run on torchport's fast loader
# The whole dataset as one uint8 tensor on the device, one permutation per epoch, scaling per batch, metrics
# summed on the device: `torchport train mnist` is this.

# %%
from torchport.mnist import MnistConfig, train_tutorial

started = time.perf_counter()
_, fast_history, fast_test = train_tutorial(MnistConfig(epochs=[epochs, epochs], data_dir=data_dir,
                                                        device=str(device), seed=seed))
fast_seconds = time.perf_counter() - started
print(f"tutorial pipeline: {tutorial_seconds:.1f} s, final val_acc {history[-1]['val_acc']:.4f}")
print(f"torchport loader:  {fast_seconds:.1f} s, final val_acc {fast_history[-1]['val_acc']:.4f}")
print(f"{tutorial_seconds / fast_seconds:.1f}x faster")
