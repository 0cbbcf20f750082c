import collections

import torch

from torchport import DeviceDataLoader, get_default_device, to_device


def test_default_device_matches_cuda_availability():
    assert get_default_device().type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_to_device_recurses_into_lists_tuples_dicts_and_keeps_values():
    a, b, c = torch.arange(3.0), torch.ones(2, 2), torch.tensor([7])
    data = [a, (b, {"c": c, "nested": [a]})]
    out = to_device(data, torch.device("cpu"))
    assert isinstance(out, list) and isinstance(out[1], tuple) and isinstance(out[1][1], dict)
    assert torch.equal(out[0], a) and torch.equal(out[1][0], b)
    assert torch.equal(out[1][1]["c"], c) and torch.equal(out[1][1]["nested"][0], a)


def test_to_device_is_non_blocking_only_toward_cuda(monkeypatch):
    seen = []

    def spy(self, device, non_blocking=False):  # records the call; no copy (no GPU needed)
        seen.append((torch.device(device).type, non_blocking))
        return self

    monkeypatch.setattr(torch.Tensor, "to", spy)
    to_device([torch.zeros(1), {"x": torch.zeros(1)}], "cuda")
    to_device([torch.zeros(1)], torch.device("cpu"))  # a non-blocking copy to the CPU could be read stale
    assert seen == [("cuda", True), ("cuda", True), ("cpu", False)]


def test_to_device_keeps_namedtuples_and_moves_modules():
    P = collections.namedtuple("P", "x y")
    out = to_device(P(torch.zeros(1), torch.ones(1)), "cpu")
    assert isinstance(out, P) and out.y.item() == 1
    m = torch.nn.Linear(2, 2)
    assert to_device(m, "cpu") is m


def test_device_data_loader_moves_each_batch_and_has_len():
    batches = [(torch.full((2,), float(i)), torch.tensor([i, i])) for i in range(5)]
    dl = DeviceDataLoader(batches, torch.device("cpu"))
    assert len(dl) == 5
    got = list(dl)
    assert [int(y[0]) for _, y in got] == list(range(5))
    assert all(x.device.type == "cpu" for x, _ in got)
