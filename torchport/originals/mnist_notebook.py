"""The MNIST notebook's own code, verbatim: its helpers, its evaluate/fit loops and its data pipeline.

The loops and the pipeline are the baseline `torchport bench` times against and the reference tests compare
the face with; the notebook (`notebooks/mnist_tutorial.ipynb`) shows each original beside the torchport
definition that replaces it. Its `DeviceDataLoader` is torchport's own (`device.py`): the same class.
"""
import torch
from torch.utils.data import DataLoader, random_split
from torchvision.datasets import MNIST
from torchvision.transforms import ToTensor

from ..device import DeviceDataLoader


def accuracy(outputs, labels):
    _, preds = torch.max(outputs, dim=1)
    return torch.tensor(torch.sum(preds == labels).item() / len(preds))


def get_default_device():
    if torch.cuda.is_available():
        return torch.device('cuda')
    else:
        return torch.device('cpu')


def to_device(data, device):
    if isinstance(data, (list,tuple)):
        return [to_device(x, device) for x in data]
    return data.to(device, non_blocking=True)


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


def loaders(root, device, batch_size=128, num_workers=4, seed=None):
    """The notebook's pipeline: MNIST + ToTensor, random_split 50,000/10,000, DataLoader, DeviceDataLoader."""
    dataset = MNIST(root=root, download=False, transform=ToTensor())
    val_size = 10000 if len(dataset) == 60000 else len(dataset) // 6
    train_size = len(dataset) - val_size
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    train_ds, val_ds = random_split(dataset, [train_size, val_size], generator=gen)
    train_loader = DataLoader(train_ds, batch_size, shuffle=True, num_workers=num_workers, pin_memory=True)
    val_loader = DataLoader(val_ds, batch_size * 2, num_workers=num_workers, pin_memory=True)
    return DeviceDataLoader(train_loader, device), DeviceDataLoader(val_loader, device)
