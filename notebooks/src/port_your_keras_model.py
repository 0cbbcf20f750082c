# %% [markdown]
# # Port your own Keras model to PyTorch, prove it, train it
#
# @badge
#
# A `.keras` file in (yours, one built here with Keras, or the small one shipped with torchport), readable
# PyTorch out, a parity report against Keras, training as Keras' `model.fit` trains, and the trained weights
# back for Keras.

# %%
# @install

# %% tags=["parameters"]
epochs = 3          # for torchport fit
data_dir = None     # a folder with the MNIST idx files; None: the cache, a download, or the bundled sample
model_path = None   # your own .keras (or .h5) file; None: build one with Keras, or use the shipped one

# %% [markdown]
# ## A Keras model file
# On Colab, upload yours with the file browser (or `google.colab.files.upload()`) and set `model_path`.
# Otherwise a small MNIST convnet is built here when Keras is installed, or the copy shipped with torchport
# is used.

# %%
import importlib.util
import os
import shutil

os.makedirs("runs/notebook", exist_ok=True)
if model_path is None:
    model_path = "runs/notebook/small_mnist_cnn.keras"
    if importlib.util.find_spec("tensorflow") is not None:
        from torchport.keras_env import import_keras
        keras = import_keras()
        keras.utils.set_random_seed(0)
        L = keras.layers
        keras_model = keras.Sequential([
            keras.Input((28, 28, 1)),
            L.Conv2D(8, 3, activation="relu"),
            L.MaxPooling2D(2),
            L.Conv2D(16, 3, strides=2, padding="same", activation="relu"),
            L.BatchNormalization(),
            L.Flatten(),
            L.Dropout(0.25),
            L.Dense(10, activation="softmax"),
        ], name="small_mnist_cnn")
        keras_model.compile(optimizer=keras.optimizers.Adam(0.002), loss="sparse_categorical_crossentropy",
                            metrics=["accuracy"])
        keras_model.save(model_path)
        print("built with Keras", keras.__version__)
    else:
        from importlib import resources
        shutil.copy(resources.files("torchport.originals").joinpath("small_mnist_cnn.keras"), model_path)
        print("Keras is not installed: using the small model shipped with torchport")
model_path

# %% [markdown]
# ## `torchport port`: readable PyTorch, its weights, Keras' summary and (with TensorFlow) the parity report

# %%
from torchport.cli import main as torchport

torchport(["port", model_path, "--out", "runs/notebook/ported"])

# %%
print(open("runs/notebook/ported/model.py").read())

# %%
print(open("runs/notebook/ported/summary.txt").read())

# %% [markdown]
# ## The parity report: the port against Keras, same weights

# %%
from IPython.display import Markdown, display

report = "runs/notebook/ported/parity.md"
display(Markdown(open(report).read()) if os.path.exists(report)
        else "TensorFlow is not installed here: pip install 'torchport[keras]' for the report")

# %% [markdown]
# ## The ported module, loaded as any PyTorch model

# %%
import importlib
import sys

import torch

sys.path.insert(0, "runs/notebook/ported")
import model as ported  # the generated model.py

net = ported.load()
net(torch.zeros(2, 1, 28, 28)).shape

# %% [markdown]
# ## `torchport fit`: train it as Keras would, with its own optimizer, loss and metrics
# The data as a Keras user holds it: images channels-last, integer labels (the loss is sparse), in an .npz.

# %%
import numpy as np

from torchport.mnist import load_mnist

(images, labels), (test_images, test_labels) = load_mnist(data_dir)
np.savez("runs/notebook/mnist.npz",
         x_train=(images.numpy()[..., None] / 255.0).astype("float32"), y_train=labels.numpy(),
         x_test=(test_images.numpy()[..., None] / 255.0).astype("float32"), y_test=test_labels.numpy())
torchport(["fit", model_path, "--data", "runs/notebook/mnist.npz", "--epochs", str(epochs),
           "--out", "runs/notebook/fit"])

# %% [markdown]
# ## The history

# %%
import json

from IPython.display import display

from torchport.outputs import plot_series  # the plots `torchport fit` writes: epochs numbered from 1
# %matplotlib inline

h = json.load(open("runs/notebook/fit/history.json"))
for name in ("accuracy", "loss"):
    display(plot_series({name: h[name], "val_" + name: h["val_" + name]}, name, f"{name} vs. epochs"))

# %% [markdown]
# ## The trained weights, back for Keras
# `model.keras` opens with `keras.models.load_model`; `model.weights.h5` loads into the original with
# `model.load_weights`. With Keras installed, its own `evaluate` gives torchport's last validation numbers.

# %%
if importlib.util.find_spec("tensorflow") is not None:
    from torchport.keras_env import import_keras
    keras = import_keras()
    trained = keras.models.load_model("runs/notebook/fit/model.keras")
    data = np.load("runs/notebook/mnist.npz")
    print("Keras:", trained.evaluate(data["x_test"], data["y_test"], verbose=0, return_dict=True))
    print("torchport:", {k: v[-1] for k, v in h.items() if k.startswith("val_")})
try:
    from google.colab import files
    files.download("runs/notebook/fit/model.keras")
except ImportError:
    print("saved at runs/notebook/fit/model.keras and runs/notebook/fit/model.weights.h5")
