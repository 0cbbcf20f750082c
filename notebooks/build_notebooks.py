"""Writes the three notebooks from the cells below (committed without outputs): `python notebooks/build_notebooks.py`.

Each notebook opens in Colab from the README's badge, installs torchport in its first cell only when it is
missing (Colab's preinstalled torch is reused), has one cell tagged `parameters` (papermill's convention),
and runs top to bottom offline on the samples bundled with the package.
"""
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).parent
REPO = "torchport/torchport"  # on a fork: the owner/name of your repository


def badge(name: str) -> str:
    return (f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
            f"(https://colab.research.google.com/github/{REPO}/blob/main/notebooks/{name})")


INSTALL = f'''# Install torchport only when it is missing; on Colab this keeps the preinstalled torch.
import importlib.util
import subprocess
import sys

if importlib.util.find_spec("torchport") is None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "git+https://github.com/{REPO}"],
                   check=True)'''


def md(text):
    return new_markdown_cell(text.strip("\n"))


def code(text, tags=None):
    cell = new_code_cell(text.strip("\n"))
    if tags:
        cell.metadata["tags"] = tags
    return cell


# ---- 1. the PyTorch MNIST tutorial ------------------------------------------------------------------------------

MNIST = [
    md(f"""
# Training a neural network on a Colab GPU: the MNIST tutorial on torchport

{badge("mnist_tutorial.ipynb")}

The seed tutorial's 15 steps, in its order. Where torchport keeps the tutorial's code (the model class, the
driver) it is here as the tutorial wrote it; where torchport replaces a definition (`accuracy`,
`get_default_device`, `to_device`, `DeviceDataLoader`, `fit`, `evaluate`) the cell imports it and shows the
original beside it. The last section runs the same experiment on torchport's fast loader and times both.
"""),
    code(INSTALL),
    code('''
epochs = 5        # per phase, as the tutorial: fit(5, 0.5) then fit(5, 0.1)
data_dir = None   # a folder with the MNIST idx files; None: the cache, a download, or the bundled sample
seed = 0''', tags=["parameters"]),
    md("""
## Step 1: Runtime > Change runtime type > GPU
On Colab, pick a GPU runtime; everything below also runs on a CPU.
"""),
    md("## Step 2: Load PyTorch, torchvision and matplotlib"),
    code('''
import time

import matplotlib.pyplot as plt
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset, random_split
%matplotlib inline'''),
    md("""
## Step 3: The MNIST images as tensors, split into training and validation sets
The tutorial uses `MNIST(root, download=True, transform=ToTensor())`; torchport's reader gives the same
tensors (1x28x28 floats in [0, 1]) from the idx files, offline from the bundled sample when needed, and the
split is seeded (the tutorial's was not).
"""),
    code('''
from torchport.mnist import load_mnist

(images, labels), (test_images, test_labels) = load_mnist(data_dir)
dataset = TensorDataset(images.unsqueeze(1).float() / 255, labels)   # what ToTensor() gives
val_size = 10000 if len(dataset) == 60000 else len(dataset) // 6
train_size = len(dataset) - val_size
train_ds, val_ds = random_split(dataset, [train_size, val_size], generator=torch.Generator().manual_seed(seed))
len(train_ds), len(val_ds)'''),
    md("""
## Step 4: The accuracy of a batch of outputs
```python
def accuracy(outputs, labels):
    _, preds = torch.max(outputs, dim=1)
    return torch.tensor(torch.sum(preds == labels).item() / len(preds))
```
torchport's keeps the computation on the device (no `.item()` per batch):
"""),
    code("from torchport.mnist import accuracy"),
    md("## Step 5: DataLoaders for the training and validation sets"),
    code('''
batch_size = 128
train_loader = DataLoader(train_ds, batch_size, shuffle=True, num_workers=4, pin_memory=True)
val_loader = DataLoader(val_ds, batch_size * 2, num_workers=4, pin_memory=True)'''),
    md("## Step 6: The model: one hidden layer, training and validation steps (the tutorial's code)"),
    code('''
class MnistModel(nn.Module):
    """Feedforward neural network with 1 hidden layer"""

    def __init__(self, in_size, hidden_size, out_size):
        super().__init__()
        # hidden layer
        self.linear1 = nn.Linear(in_size, hidden_size)
        # output layer
        self.linear2 = nn.Linear(hidden_size, out_size)

    def forward(self, xb):
        # Flatten the image tensors
        xb = xb.view(xb.size(0), -1)
        # Get intermediate outputs using hidden layer
        out = self.linear1(xb)
        # Apply activation function
        out = F.relu(out)
        # Get predictions using output layer
        out = self.linear2(out)
        return out

    def training_step(self, batch):
        images, labels = batch
        out = self(images)                  # Generate predictions
        loss = F.cross_entropy(out, labels) # Calculate loss
        return loss

    def validation_step(self, batch):
        images, labels = batch
        out = self(images)                    # Generate predictions
        loss = F.cross_entropy(out, labels)   # Calculate loss
        acc = accuracy(out, labels)           # Calculate accuracy
        return {'val_loss': loss, 'val_acc': acc}

    def validation_epoch_end(self, outputs):
        batch_losses = [x['val_loss'] for x in outputs]
        epoch_loss = torch.stack(batch_losses).mean()   # Combine losses
        batch_accs = [x['val_acc'] for x in outputs]
        epoch_acc = torch.stack(batch_accs).mean()      # Combine accuracies
        return {'val_loss': epoch_loss.item(), 'val_acc': epoch_acc.item()}

    def epoch_end(self, epoch, result):
        print("Epoch [{}], val_loss: {:.4f}, val_acc: {:.4f}".format(epoch, result['val_loss'], result['val_acc']))'''),
    md("## Step 7: Is a GPU available? (True: yes)"),
    code("torch.cuda.is_available()"),
    md("""
## Step 8: The device to run on
```python
def get_default_device():
    if torch.cuda.is_available():
        return torch.device('cuda')
    else:
        return torch.device('cpu')
```
"""),
    code('''
from torchport.mnist import get_default_device

device = get_default_device()
device'''),
    md("""
## Step 9: Moving tensors (and lists of them) to the device
```python
def to_device(data, device):
    if isinstance(data, (list,tuple)):
        return [to_device(x, device) for x in data]
    return data.to(device, non_blocking=True)
```
torchport's also moves dicts and modules, and copies non-blocking only toward a GPU:
"""),
    code("from torchport.mnist import to_device"),
    md("""
## Step 10: A DataLoader that moves every batch to the device
```python
class DeviceDataLoader():
    def __init__(self, dl, device):
        self.dl = dl
        self.device = device
    def __iter__(self):
        for b in self.dl:
            yield to_device(b, self.device)
    def __len__(self):
        return len(self.dl)
```
"""),
    code('''
from torchport.mnist import DeviceDataLoader

train_loader = DeviceDataLoader(train_loader, device)
val_loader = DeviceDataLoader(val_loader, device)'''),
    md("""
## Step 11: `fit` and `evaluate`
```python
def evaluate(model, val_loader):
    outputs = [model.validation_step(batch) for batch in val_loader]
    return model.validation_epoch_end(outputs)

def fit(epochs, lr, model, train_loader, val_loader, opt_func=torch.optim.SGD):
    history = []
    optimizer = opt_func(model.parameters(), lr)
    for epoch in range(epochs):
        # Training Phase
        for batch in train_loader:
            loss = model.training_step(batch)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        # Validation phase
        result = evaluate(model, val_loader)
        model.epoch_end(epoch, result)
        history.append(result)
    return history
```
torchport's are a face over its one training engine: the same calls and results (the validation metrics
are the tutorial's unweighted mean of per-batch values), with `model.eval()`/`no_grad` for validation.
"""),
    code("from torchport.mnist import evaluate, fit"),
    md("## Step 12: The model, 784 inputs, 32 hidden units, 10 classes, on the device"),
    code('''
torch.manual_seed(seed)
model = MnistModel(784, hidden_size=32, out_size=10)
to_device(model, device)'''),
    md("## Step 13: The validation loss and accuracy before training"),
    code('''
started = time.perf_counter()
history = [evaluate(model, val_loader)]
history'''),
    md("## Step 14: Train with learning rate 0.5"),
    code("history += fit(epochs, 0.5, model, train_loader, val_loader)"),
    md("## Step 15: Then with learning rate 0.1"),
    code('''
history += fit(epochs, 0.1, model, train_loader, val_loader)
tutorial_seconds = time.perf_counter() - started'''),
    md("## The history: accuracy and loss against epochs (0 is before training)"),
    code('''
accuracies = [x['val_acc'] for x in history]
plt.plot(accuracies, '-x')
plt.xlabel('epoch')
plt.ylabel('accuracy')
plt.title('Accuracy vs. No. of epochs')
plt.show()'''),
    code('''
losses = [x['val_loss'] for x in history]
plt.plot(losses, '-x')
plt.xlabel('epoch')
plt.ylabel('loss')
plt.title('Loss vs. No. of epochs')
plt.show()'''),
    md("## The test set"),
    code('''
test_ds = TensorDataset(test_images.unsqueeze(1).float() / 255, test_labels)
test_loader = DeviceDataLoader(DataLoader(test_ds, batch_size=256), device)
evaluate(model, test_loader)'''),
    md("""
## The same run on torchport's fast loader
The whole dataset as one uint8 tensor on the device, one permutation per epoch, scaling per batch, metrics
summed on the device: `torchport train mnist` is this.
"""),
    code('''
from torchport.mnist import MnistConfig, train_tutorial

started = time.perf_counter()
_, fast_history, fast_test = train_tutorial(MnistConfig(epochs=[epochs, epochs], data_dir=data_dir,
                                                        device=str(device), seed=seed))
fast_seconds = time.perf_counter() - started
print(f"tutorial pipeline: {tutorial_seconds:.1f} s, final val_acc {history[-1]['val_acc']:.4f}")
print(f"torchport loader:  {fast_seconds:.1f} s, final val_acc {fast_history[-1]['val_acc']:.4f}")
print(f"{tutorial_seconds / fast_seconds:.1f}x faster")'''),
]


# ---- 2. the Keras CIFAR-10 article -------------------------------------------------------------------------------

CIFAR = [
    md(f"""
# Training a Keras CNN on Colab's GPU, ported: CIFAR-10 on torchport

{badge("cifar10_keras.ipynb")}

The seed article's flow: mount Google Drive (optional: checkpoints there survive a disconnect), check the
GPU, then each section of the Keras script as the article wrote it, beside the torchport cell that ports it
(`docs/side_by_side.md` explains every difference), the training with Keras' log, the plots, and the
article's CPU-vs-GPU timing table measured live.
"""),
    code(INSTALL),
    code('''
epochs = 25          # the script's value
data_dir = None      # a folder with cifar-10-batches-py/; None: the cache, a download, or the bundled sample
use_drive = False    # mount Google Drive and keep the checkpoints there
timing_steps = 60    # steps per device for the timing table''', tags=["parameters"]),
    md("""
## Google Drive (optional)
```python
from google.colab import drive
drive.mount('/content/drive')
```
Checkpoints written to Drive after every epoch make a disconnect cost at most the epoch in flight.
"""),
    code('''
import os

if use_drive:
    from google.colab import drive
    drive.mount("/content/drive")
    checkpoint_dir = "/content/drive/MyDrive/torchport-cifar10"
else:
    checkpoint_dir = os.path.join("runs", "cifar10-notebook-checkpoints")
checkpoint_dir'''),
    md("## The GPU (Runtime > Change runtime type > GPU)"),
    code('''
import torch

from torchport import get_default_device

device = get_default_device()
print(device, torch.cuda.get_device_name() if device.type == "cuda" else "")'''),
    md("""
## Seeding
```python
seed = 7
numpy.random.seed(seed)
```
`numpy.random.seed` alone does not seed Keras 3; torchport seeds torch too, so a run repeats bit for bit.
"""),
    code('''
import numpy as np

seed = 7
np.random.seed(seed)
torch.manual_seed(seed)'''),
    md("""
## Load the data
```python
(X_train, y_train), (X_test, y_test) = cifar10.load_data()
```
"""),
    code('''
from torchport.cifar10 import load_data

(X_train, y_train), (X_test, y_test) = load_data(data_dir)
X_train.shape, y_train.shape, X_test.shape, X_train.dtype'''),
    md("""
## Normalise to [0, 1] and one-hot encode
```python
X_train = X_train.astype("float32") / 255.0
X_test = X_test.astype("float32") / 255.0
y_train = to_categorical(y_train)
y_test = to_categorical(y_test)
```
torchport keeps the uint8 images on the device (a quarter of the memory) and scales each batch as it is
drawn, channels-first as torch's convolutions want: the same values.
"""),
    code('''
from torchport.cifar10 import make_loader

train_loader = make_loader(X_train, y_train, 32, device, shuffle=True, seed=seed)
test_loader = make_loader(X_test, y_test, 32, device)
len(train_loader), len(test_loader)'''),
    md("""
## Create the model
```python
model = Sequential()
model.add(Conv2D(32, (3, 3), input_shape=(32, 32, 3), padding="same", activation="relu"))
model.add(Dropout(0.2))
model.add(Conv2D(32, (3, 3), activation="relu", padding="same"))
model.add(MaxPooling2D(pool_size=(2, 2)))
model.add(Flatten())
model.add(Dense(512, activation="relu"))
model.add(Dropout(0.5))
model.add(Dense(num_classes, activation="softmax"))
```
`SimpleCNN` is this model layer for layer, named as Keras names the layers, with Keras' initialisation and
channels-last Flatten; `summary()` prints Keras' own table.
"""),
    code('''
from torchport.cifar10 import SimpleCNN

model = SimpleCNN(num_classes=10).to(device, memory_format=torch.channels_last)
print(model.summary())'''),
    md("""
## Compile
```python
epochs = 25
lrate = 0.01
decay = lrate / epochs
sgd = SGD(learning_rate=lrate, momentum=0.9, decay=decay, nesterov=False)
model.compile(loss="categorical_crossentropy", optimizer=sgd, metrics=["accuracy"])
```
Keras 3 ignores `decay` (with this warning); `KerasSGD` is Keras' update rule, which torch's SGD is not.
"""),
    code('''
from torchport.keras_compat import KerasSGD, categorical_accuracy, categorical_crossentropy

lrate = 0.01
decay = lrate / epochs
sgd = KerasSGD(model.parameters(), learning_rate=lrate, momentum=0.9, decay=decay, nesterov=False)
metrics = {"accuracy": categorical_accuracy}'''),
    md("""
## Fit
```python
model.fit(X_train, y_train, validation_data=(X_test, y_test), epochs=epochs, batch_size=32, verbose=2)
```
The log is Keras 3's. A checkpoint is written after every epoch (`checkpoint_dir`).
"""),
    code('''
from torchport import engine
from torchport.checkpoint import Checkpointer

config = {"notebook": "cifar10", "epochs": epochs, "seed": seed, "n_train": len(X_train)}
history = engine.History()
checkpoints = Checkpointer(checkpoint_dir, config, train_loader,
                           extra=lambda: {"history": history.state_dict()})
torch.manual_seed(seed)
engine.fit(model, sgd, categorical_crossentropy, train_loader, epochs, metrics=metrics,
           val_loader=test_loader, verbose=2, history=history, callbacks=[checkpoints]);'''),
    md("""
## After a disconnect: resume
Run the cells above up to the model and optimizer again, then this one instead of `fit`: it loads the
newest checkpoint (weights, optimizer, every random generator, the history) and continues where it stopped.
Here it finds the finished run and has nothing left to do.
"""),
    code('''
from torchport.checkpoint import resume_run

resumed_model = SimpleCNN().to(device, memory_format=torch.channels_last)
resumed_sgd = KerasSGD(resumed_model.parameters(), learning_rate=lrate, momentum=0.9)
state, point = resume_run(checkpoint_dir, True, config, resumed_model, resumed_sgd)
resumed_history = engine.History()
if state is not None:
    resumed_history.load_state_dict(state["history"])
engine.fit(resumed_model, resumed_sgd, categorical_crossentropy, train_loader, epochs, metrics=metrics,
           val_loader=test_loader, verbose=2, history=resumed_history, resume=point)
resumed_history.history == history.history'''),
    md("""
### A disconnect, for real
The same script as a command, on the bundled 1,000-image sample so it takes seconds: killed (SIGKILL, as a
runtime that disconnects gives it no chance to save anything) as soon as its first checkpoint is on disk,
then `--resume`d, against a run that was never interrupted.
"""),
    code('''
import json
import shutil
import subprocess
import sys
import tempfile
import time

demo = tempfile.mkdtemp(prefix="cifar10-disconnect-")
env = {**os.environ, "TORCHPORT_OFFLINE": "1", "TORCHPORT_DATA": os.path.join(demo, "no-data")}  # the sample
cli = [sys.executable, "-m", "torchport", "train", "cifar10", "--epochs", "3", "--seed", str(seed),
       "--device", device.type, "--verbose", "0"]
ck = os.path.join(demo, "checkpoints")
run = subprocess.Popen(cli + ["--out", os.path.join(demo, "run"), "--checkpoint-dir", ck], env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
def written():  # finished checkpoints (one being written is a hidden temp file until its atomic rename)
    return sorted(f for f in os.listdir(ck) if f.endswith(".pt") and not f.startswith(".")) if os.path.isdir(ck) else []


while run.poll() is None and not written():
    time.sleep(0.01)
run.kill()
print("exit code", run.wait(), "- on disk after the disconnect:", written())
resumed = subprocess.run(cli + ["--out", os.path.join(demo, "run"), "--checkpoint-dir", ck, "--resume"], env=env,
                         capture_output=True, text=True, check=True)
print(resumed.stdout.strip().splitlines()[0])
subprocess.run(cli + ["--out", os.path.join(demo, "straight")], env=env, capture_output=True, check=True)
same = [json.load(open(os.path.join(demo, d, "history.json"))) for d in ("run", "straight")]
print("History after the resume == History of the run never interrupted:", same[0] == same[1])
shutil.rmtree(demo)'''),
    md("""
## Final evaluation
```python
scores = model.evaluate(X_test, y_test, verbose=0)
print("Accuracy: %.2f%%" % (scores[1] * 100))
```
"""),
    code('''
scores = engine.evaluate(model, test_loader, categorical_crossentropy, metrics)
print("Accuracy: %.2f%%" % (scores["accuracy"] * 100))'''),
    md("## Accuracy and loss against epochs"),
    code('''
import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator
%matplotlib inline

h = history.history
for name in ("accuracy", "loss"):
    epochs_axis = range(1, len(h[name]) + 1)   # numbered as the log's "Epoch 1/25"
    plt.plot(epochs_axis, h[name], "-x", label=name)
    plt.plot(epochs_axis, h["val_" + name], "-x", label="val_" + name)
    plt.xlabel("epoch")
    plt.gca().xaxis.set_major_locator(MaxNLocator(integer=True))
    plt.ylabel(name)
    plt.legend()
    plt.title(f"{name.capitalize()} vs. epochs")
    plt.show()'''),
    md("""
## CPU vs GPU, measured live
The article: Keras on Colab's CPU took 125-132 ms per step (196-207 s per epoch), on its GPU 4 ms (6-7 s).
Here, `timing_steps` steps of the same training step on each device this machine has.
"""),
    code('''
import time

from torchport.callbacks import Callback


class Clock(Callback):
    def __init__(self):
        self.stamps = []

    def on_train_batch_end(self, step, aggregator):
        if self.params and step in (9, self.params["steps"] - 1):  # after 10 warm-up steps, and at the end
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.stamps.append(time.perf_counter())


def ms_per_step(dev):
    torch.manual_seed(seed)
    n = min(len(X_train), (timing_steps + 10) * 32)
    loader = make_loader(X_train[:n], y_train[:n], 32, dev, shuffle=True, seed=seed)
    m = SimpleCNN().to(dev, memory_format=torch.channels_last)
    clock = Clock()
    engine.fit(m, KerasSGD(m.parameters(), learning_rate=0.01, momentum=0.9), categorical_crossentropy, loader, 1,
               callbacks=[clock], verbose=0)
    return 1e3 * (clock.stamps[1] - clock.stamps[0]) / (len(loader) - 10)


rows = [("Keras, Colab CPU (the article)", 125.0), ("Keras, Colab GPU (the article)", 4.0),
        ("torchport, this CPU", ms_per_step(torch.device("cpu")))]
if torch.cuda.is_available():
    rows.append((f"torchport, this GPU ({torch.cuda.get_device_name()})", ms_per_step(torch.device("cuda"))))
print(f"{'':42s} {'ms/step':>8s} {'s/epoch (1563 steps)':>22s}")
for name, ms in rows:
    print(f"{name:42s} {ms:8.1f} {ms * 1563 / 1000:22.0f}")'''),
]


# ---- 3. port your own Keras model ----------------------------------------------------------------------------------

PORT = [
    md(f"""
# Port your own Keras model to PyTorch, prove it, train it

{badge("port_your_keras_model.ipynb")}

A `.keras` file in (yours, one built here with Keras, or the small one shipped with torchport), readable
PyTorch out, a parity report against Keras, training as Keras' `model.fit` trains, and the trained weights
back for Keras.
"""),
    code(INSTALL),
    code('''
epochs = 3          # for torchport fit
data_dir = None     # a folder with the MNIST idx files; None: the cache, a download, or the bundled sample
model_path = None   # your own .keras (or .h5) file; None: build one with Keras, or use the shipped one''',
         tags=["parameters"]),
    md("""
## A Keras model file
On Colab, upload yours with the file browser (or `google.colab.files.upload()`) and set `model_path`.
Otherwise a small MNIST convnet is built here when Keras is installed, or the copy shipped with torchport
is used.
"""),
    code('''
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
model_path'''),
    md("## `torchport port`: readable PyTorch, its weights, Keras' summary and (with TensorFlow) the parity report"),
    code('''
from torchport.cli import main as torchport

torchport(["port", model_path, "--out", "runs/notebook/ported"])'''),
    code('print(open("runs/notebook/ported/model.py").read())'),
    code('print(open("runs/notebook/ported/summary.txt").read())'),
    md("## The parity report: the port against Keras, same weights"),
    code('''
from IPython.display import Markdown, display

report = "runs/notebook/ported/parity.md"
display(Markdown(open(report).read()) if os.path.exists(report)
        else "TensorFlow is not installed here: pip install 'torchport[keras]' for the report")'''),
    md("## The ported module, loaded as any PyTorch model"),
    code('''
import importlib
import sys

import torch

sys.path.insert(0, "runs/notebook/ported")
import model as ported  # the generated model.py

net = ported.load()
net(torch.zeros(2, 1, 28, 28)).shape'''),
    md("""
## `torchport fit`: train it as Keras would, with its own optimizer, loss and metrics
The data as a Keras user holds it: images channels-last, integer labels (the loss is sparse), in an .npz.
"""),
    code('''
import numpy as np

from torchport.mnist import load_mnist

(images, labels), (test_images, test_labels) = load_mnist(data_dir)
np.savez("runs/notebook/mnist.npz",
         x_train=(images.numpy()[..., None] / 255.0).astype("float32"), y_train=labels.numpy(),
         x_test=(test_images.numpy()[..., None] / 255.0).astype("float32"), y_test=test_labels.numpy())
torchport(["fit", model_path, "--data", "runs/notebook/mnist.npz", "--epochs", str(epochs),
           "--out", "runs/notebook/fit"])'''),
    md("## The history"),
    code('''
import json

import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator
%matplotlib inline

h = json.load(open("runs/notebook/fit/history.json"))
for name in ("accuracy", "loss"):
    axis = range(1, len(h[name]) + 1)   # numbered as the log's "Epoch 1/N"
    plt.plot(axis, h[name], "-x", label=name)
    plt.plot(axis, h["val_" + name], "-x", label="val_" + name)
    plt.xlabel("epoch")
    plt.gca().xaxis.set_major_locator(MaxNLocator(integer=True))
    plt.ylabel(name)
    plt.legend()
    plt.show()'''),
    md("""
## The trained weights, back for Keras
`model.keras` opens with `keras.models.load_model`; `model.weights.h5` loads into the original with
`model.load_weights`. With Keras installed, its own `evaluate` gives torchport's last validation numbers.
"""),
    code('''
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
    print("saved at runs/notebook/fit/model.keras and runs/notebook/fit/model.weights.h5")'''),
]


def write(name: str, cells) -> None:
    nb = new_notebook(cells=cells, metadata={
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"}, "accelerator": "GPU", "colab": {"provenance": []}})
    for i, cell in enumerate(nb.cells):  # stable ids: rebuilding changes nothing unless a cell does
        cell.id = f"{name.split('_')[0]}-{i:02d}"
    nbformat.validate(nb)
    nbformat.write(nb, HERE / name)


if __name__ == "__main__":
    write("mnist_tutorial.ipynb", MNIST)
    write("cifar10_keras.ipynb", CIFAR)
    write("port_your_keras_model.ipynb", PORT)
