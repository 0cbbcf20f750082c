"""Outputs a user takes away: every tensor saved on the CPU, so a file written on a GPU loads anywhere."""
import torch

from torchport.cifar10 import SimpleCNN
from torchport.keras_compat import KerasSGD


def test_saved_files_hold_cpu_tensors_moved_there_before_saving(tmp_path, monkeypatch):
    from torchport.outputs import save_torch
    moved = []
    real_to = torch.Tensor.to

    def spy(self, *args, **kw):
        moved.append(torch.device(args[0] if args else kw["device"]).type)
        return real_to(self, *args, **kw)

    model = SimpleCNN()
    opt = KerasSGD(model.parameters(), learning_rate=0.1, momentum=0.9)
    model(torch.zeros(1, 3, 32, 32)).sum().backward()
    opt.step()
    monkeypatch.setattr(torch.Tensor, "to", spy)
    save_torch(str(tmp_path / "m.pt"), {"model": model.state_dict(), "optimizer": opt.state_dict()})
    n_tensors = len(model.state_dict()) + len(opt.state_dict()["state"])
    assert moved.count("cpu") == n_tensors  # each one sent to the CPU (a no-op here, a copy from a GPU)
    loaded = torch.load(tmp_path / "m.pt", weights_only=True)
    assert all(t.device.type == "cpu" for t in loaded["model"].values())
