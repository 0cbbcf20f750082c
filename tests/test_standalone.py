"""`port --standalone`: model.py and keras_layers.py run with torch alone (torchport made unimportable), give
the torchport port's outputs bit for bit, and keras_layers.py defines everything it uses (ruff's F rules);
a piece left out of it is caught. Model files written without TensorFlow (Keras' own configs)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from keras_files import write_keras_file

from torchport.cli import main
from torchport.originals.seed_cnn import CONFIG as SEED_CONFIG
from torchport.porting import standalone
from torchport.porting.plan import load_keras

DATA = Path(__file__).parent / "data"


def _model_file(tmp_path, name):
    config = SEED_CONFIG if name == "seed_cnn" else json.loads((DATA / f"{name}_config.json").read_text())
    return write_keras_file(tmp_path / f"{name}.keras", config)


@pytest.mark.parametrize("name, shapes", [("seed_cnn", [(2, 3, 32, 32)]), ("text_bilstm", None)])
def test_a_standalone_port_runs_with_torch_alone(tmp_path, name, shapes):
    path = _model_file(tmp_path, name)
    out = tmp_path / "port"
    assert main(["port", path, "--standalone", "--no-parity", "--out", str(out)]) == 0
    assert "from torchport" not in (out / "model.py").read_text()
    torch.manual_seed(0)
    if shapes is None:  # token ids with padding in front, as the masked BiLSTM takes them
        x = [torch.randint(1, 50, (2, 20))]
        x[0][0, :5] = 0
    else:
        x = [torch.rand(s) for s in shapes]
    torch.save(x, tmp_path / "x.pt")
    with torch.no_grad():
        want = load_keras(path)(*x)
    code = ("import sys; sys.modules['torchport'] = None; import torch, model; m = model.load(); "
            f"x = torch.load({str(tmp_path / 'x.pt')!r}); torch.save(m(*x), {str(tmp_path / 'y.pt')!r})")
    subprocess.run([sys.executable, "-c", code], cwd=out, check=True, capture_output=True, text=True)
    assert torch.equal(torch.load(tmp_path / "y.pt"), want)
    lint = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--select", "F,E9",
                           str(out / "keras_layers.py")], capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout


def test_a_piece_left_out_is_caught(tmp_path, monkeypatch):
    """Planted: the closure forgets what a kept definition uses; ruff's F821 sees the undefined name."""
    source = (Path(__file__).parent / "golden" / "text_bilstm_model.py").read_text()
    real = standalone._definitions

    def without_helpers():
        defs = real()
        return {k: v for k, v in defs.items() if not k.startswith("_")}
    monkeypatch.setattr(standalone, "_definitions", without_helpers)
    (tmp_path / "keras_layers.py").write_text(standalone.keras_layers_source(source))
    lint = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--select", "F821",
                           str(tmp_path / "keras_layers.py")], capture_output=True, text=True)
    assert lint.returncode == 1 and "F821" in lint.stdout
