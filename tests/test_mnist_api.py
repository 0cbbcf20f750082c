"""The tutorial's function API: checked against the tutorial's own loops, and against the engine."""
import copy
import gzip

import pytest
import torch
import torch.nn.functional as F

from torchport import engine
from torchport.mnist import MnistModel, accuracy, evaluate, fit, make_loader
from torchport.originals.mnist_notebook import evaluate as tutorial_evaluate, fit as tutorial_fit


@pytest.fixture
def data():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (300, 28, 28), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 10, (300,), generator=g)
    return x, y


def test_accuracy_is_fraction_correct():
    out = torch.tensor([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    assert accuracy(out, torch.tensor([1, 0, 0, 0])).item() == pytest.approx(0.75)


def test_face_fit_reproduces_the_tutorials_own_loop(data, capsys):
    x, y = data
    torch.manual_seed(1)
    a = MnistModel()
    b = copy.deepcopy(a)
    train = make_loader(x[:200], y[:200], 64, "cpu")     # unshuffled: both see the same order
    val = make_loader(x[200:], y[200:], 48, "cpu")       # 48, 48, 4: the partial batch weighs as much
    want = tutorial_fit(3, 0.5, a, train, val)
    printed = capsys.readouterr().out
    got = fit(3, 0.5, b, train, val)
    assert capsys.readouterr().out == printed            # the same "Epoch [0], val_loss: ..." lines
    for w, g in zip(want, got, strict=True):
        assert g.keys() == {"val_loss", "val_acc"}
        assert g["val_loss"] == pytest.approx(w["val_loss"], rel=1e-5)
        assert g["val_acc"] == pytest.approx(w["val_acc"], abs=1e-6)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_face_keeps_the_unweighted_mean_where_the_engine_weights_by_batch_size(data):
    x, y = data
    model = MnistModel()
    uneven = make_loader(x[:100], y[:100], 48, "cpu")    # 48, 48, 4
    face = evaluate(model, uneven)
    tut = tutorial_evaluate(model, uneven)
    eng = engine.evaluate(model, uneven, F.cross_entropy, {"acc": accuracy})
    assert face["val_loss"] == pytest.approx(tut["val_loss"], rel=1e-6)
    assert face["val_acc"] == pytest.approx(tut["val_acc"], abs=1e-7)
    assert abs(face["val_acc"] - eng["acc"]) > 1e-4 or abs(face["val_loss"] - eng["loss"]) > 1e-4

    even = make_loader(x[:96], y[:96], 48, "cpu")        # equal batches: the two means agree
    face, eng = evaluate(model, even), engine.evaluate(model, even, F.cross_entropy, {"acc": accuracy})
    assert face["val_loss"] == pytest.approx(eng["loss"], rel=1e-6)
    assert face["val_acc"] == pytest.approx(eng["acc"], abs=1e-7)


def test_notebook_driver_runs_unchanged_on_torchvision_pipeline(mnist_dir, tmp_path):
    from torch.utils.data import DataLoader, random_split
    from torchvision.datasets import MNIST
    from torchvision.transforms import ToTensor

    from torchport.mnist import DeviceDataLoader, get_default_device, to_device

    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for f in mnist_dir.glob("*.gz"):
        (raw / f.name[:-3]).write_bytes(gzip.decompress(f.read_bytes()))

    # --- the notebook, with its sizes shrunk to the 120-image fixture ---
    dataset = MNIST(root=str(tmp_path / "data"), download=True, transform=ToTensor())
    val_size = 20
    train_size = len(dataset) - val_size
    train_ds, val_ds = random_split(dataset, [train_size, val_size])
    batch_size = 32
    train_loader = DataLoader(train_ds, batch_size, shuffle=True, num_workers=4, pin_memory=True)
    val_loader = DataLoader(val_ds, batch_size * 2, num_workers=4, pin_memory=True)
    input_size, num_classes = 784, 10
    device = get_default_device()
    train_loader = DeviceDataLoader(train_loader, device)
    val_loader = DeviceDataLoader(val_loader, device)
    model = MnistModel(input_size, hidden_size=32, out_size=num_classes)
    to_device(model, device)
    history = [evaluate(model, val_loader)]
    history += fit(2, 0.5, model, train_loader, val_loader)
    history += fit(1, 0.1, model, train_loader, val_loader)
    test_dataset = MNIST(root=str(tmp_path / "data"), train=False, transform=ToTensor())
    test_loader = DeviceDataLoader(DataLoader(test_dataset, batch_size=256), device)
    result = evaluate(model, test_loader)
    # --- end of the notebook ---
    assert len(history) == 4 and all({"val_loss", "val_acc"} <= set(h) for h in history)
    assert result == pytest.approx(tutorial_evaluate(model, test_loader), rel=1e-6)
