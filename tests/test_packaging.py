"""What pyproject.toml promises: a torch floor that has every API torchport uses."""
import re
import tomllib
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def test_torch_floor_is_2_3():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    torch_req = next(d for d in deps if re.match(r"torch\b(?!vision)", d))
    floor = tuple(int(v) for v in re.search(r">=\s*([\d.]+)", torch_req).group(1).split(".")[:2])
    assert floor >= (2, 3), torch_req
    assert hasattr(torch.amp, "GradScaler")
