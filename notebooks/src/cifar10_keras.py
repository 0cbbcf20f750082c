# %% [markdown]
# # Training a Keras CNN on Colab's GPU, ported: CIFAR-10 on torchport
#
# @badge
#
# The seed article's flow: mount Google Drive (optional: checkpoints there survive a disconnect), check the
# GPU, then each section of the Keras script as the article wrote it, beside the torchport cell that ports it
# (`docs/side_by_side.md` explains every difference), the training with Keras' log, the plots, and the
# article's CPU-vs-GPU timing table measured live.

# %%
# @install

# %% tags=["parameters"]
epochs = 25          # the script's value
data_dir = None      # a folder with cifar-10-batches-py/; None: the cache, a download, or the bundled sample
use_drive = False    # mount Google Drive and keep the checkpoints there
timing_steps = 60    # steps per device for the timing table

# %% [markdown]
# ## Google Drive (optional)
# ```python
# from google.colab import drive
# drive.mount('/content/drive')
# ```
# Checkpoints written to Drive after every epoch make a disconnect cost at most the epoch in flight.

# %%
import os

if use_drive:
    from google.colab import drive
    drive.mount("/content/drive")
    checkpoint_dir = "/content/drive/MyDrive/torchport-cifar10"
else:
    checkpoint_dir = os.path.join("runs", "cifar10-notebook-checkpoints")
checkpoint_dir

# %% [markdown]
# ## The GPU (Runtime > Change runtime type > GPU)

# %%
import torch

from torchport import get_default_device

device = get_default_device()
print(device, torch.cuda.get_device_name() if device.type == "cuda" else "")

# %% [markdown]
# ## Seeding
# ```python
# seed = 7
# numpy.random.seed(seed)
# ```
# `numpy.random.seed` alone does not seed Keras 3; torchport seeds torch too, so a run repeats bit for bit.

# %%
import numpy as np

seed = 7
np.random.seed(seed)
torch.manual_seed(seed)

# %% [markdown]
# ## Load the data
# ```python
# (X_train, y_train), (X_test, y_test) = cifar10.load_data()
# ```

# %%
from torchport.cifar10 import load_data

(X_train, y_train), (X_test, y_test) = load_data(data_dir)
X_train.shape, y_train.shape, X_test.shape, X_train.dtype

# %% [markdown]
# ## Normalise to [0, 1] and one-hot encode
# ```python
# X_train = X_train.astype("float32") / 255.0
# X_test = X_test.astype("float32") / 255.0
# y_train = to_categorical(y_train)
# y_test = to_categorical(y_test)
# ```
# torchport keeps the uint8 images on the device (a quarter of the memory) and scales each batch as it is
# drawn, channels-first as torch's convolutions want: the same values.

# %%
from torchport.cifar10 import make_loader

train_loader = make_loader(X_train, y_train, 32, device, shuffle=True, seed=seed)
test_loader = make_loader(X_test, y_test, 32, device)
len(train_loader), len(test_loader)

# %% [markdown]
# ## Create the model
# ```python
# model = Sequential()
# model.add(Conv2D(32, (3, 3), input_shape=(32, 32, 3), padding="same", activation="relu"))
# model.add(Dropout(0.2))
# model.add(Conv2D(32, (3, 3), activation="relu", padding="same"))
# model.add(MaxPooling2D(pool_size=(2, 2)))
# model.add(Flatten())
# model.add(Dense(512, activation="relu"))
# model.add(Dropout(0.5))
# model.add(Dense(num_classes, activation="softmax"))
# ```
# `SimpleCNN` is this model layer for layer, named as Keras names the layers, with Keras' initialisation and
# channels-last Flatten; `summary()` prints Keras' own table.

# %%
from torchport.cifar10 import SimpleCNN

model = SimpleCNN(num_classes=10).to(device, memory_format=torch.channels_last)
print(model.summary())

# %% [markdown]
# ## Compile
# ```python
# epochs = 25
# lrate = 0.01
# decay = lrate / epochs
# sgd = SGD(learning_rate=lrate, momentum=0.9, decay=decay, nesterov=False)
# model.compile(loss="categorical_crossentropy", optimizer=sgd, metrics=["accuracy"])
# ```
# Keras 3 ignores `decay` (with this warning); `KerasSGD` is Keras' update rule, which torch's SGD is not.

# %%
from torchport.keras_compat import KerasSGD, categorical_accuracy, categorical_crossentropy

lrate = 0.01
decay = lrate / epochs
sgd = KerasSGD(model.parameters(), learning_rate=lrate, momentum=0.9, decay=decay, nesterov=False)
metrics = {"accuracy": categorical_accuracy}

# %% [markdown]
# ## Fit
# ```python
# model.fit(X_train, y_train, validation_data=(X_test, y_test), epochs=epochs, batch_size=32, verbose=2)
# ```
# The log is Keras 3's. A checkpoint is written after every epoch (`checkpoint_dir`).

# %%
from torchport import engine
from torchport.checkpoint import Checkpointer

config = {"notebook": "cifar10", "epochs": epochs, "seed": seed, "n_train": len(X_train)}
history = engine.History()
checkpoints = Checkpointer(checkpoint_dir, config, train_loader,
                           extra=lambda: {"history": history.state_dict()})
torch.manual_seed(seed)
engine.fit(model, sgd, categorical_crossentropy, train_loader, epochs, metrics=metrics,
           val_loader=test_loader, verbose=2, history=history, callbacks=[checkpoints]);

# %% [markdown]
# ## After a disconnect: resume
# Run the cells above up to the model and optimizer again, then this one instead of `fit`: it loads the
# newest checkpoint (weights, optimizer, every random generator, the history) and continues where it stopped.
# Here it finds the finished run and has nothing left to do.

# %%
from torchport.checkpoint import resume_run

resumed_model = SimpleCNN().to(device, memory_format=torch.channels_last)
resumed_sgd = KerasSGD(resumed_model.parameters(), learning_rate=lrate, momentum=0.9)
state, point = resume_run(checkpoint_dir, True, config, resumed_model, resumed_sgd)
resumed_history = engine.History()
if state is not None:
    resumed_history.load_state_dict(state["history"])
engine.fit(resumed_model, resumed_sgd, categorical_crossentropy, train_loader, epochs, metrics=metrics,
           val_loader=test_loader, verbose=2, history=resumed_history, resume=point)
resumed_history.history == history.history

# %% [markdown]
# ### A disconnect, for real
# The same script as a command, on the bundled 1,000-image sample so it takes seconds: killed (SIGKILL, as a
# runtime that disconnects gives it no chance to save anything) as soon as its first checkpoint is on disk,
# then `--resume`d, against a run that was never interrupted.

# %%
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
shutil.rmtree(demo)

# %% [markdown]
# ## Final evaluation
# ```python
# scores = model.evaluate(X_test, y_test, verbose=0)
# print("Accuracy: %.2f%%" % (scores[1] * 100))
# ```

# %%
scores = engine.evaluate(model, test_loader, categorical_crossentropy, metrics)
print("Accuracy: %.2f%%" % (scores["accuracy"] * 100))

# %% [markdown]
# ## Accuracy and loss against epochs

# %%
from IPython.display import display

from torchport.outputs import plot_series  # the plots `torchport train cifar10` writes: epochs numbered from 1
# %matplotlib inline

h = history.history
for name in ("accuracy", "loss"):
    display(plot_series({name: h[name], "val_" + name: h["val_" + name]}, name, f"{name.capitalize()} vs. epochs"))

# %% [markdown]
# ## CPU vs GPU, measured live
# The article: Keras on Colab's CPU took 125-132 ms per step (196-207 s per epoch), on its GPU 4 ms (6-7 s).
# Here, `timing_steps` steps of the same training step on each device this machine has.

# %%
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
    print(f"{name:42s} {ms:8.1f} {ms * 1563 / 1000:22.0f}")
