"""The notebooks, tested like code: committed without outputs and as the generator builds them from their
percent-format sources (notebooks/src/, ruff-clean like the rest), with a
`parameters` cell, and executed top to bottom with papermill (`-p epochs 1`, CPU, offline, bundled samples):
no error output, every plot drawn."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ["mnist_tutorial.ipynb", "cifar10_keras.ipynb", "port_your_keras_model.ipynb"]
SHOWN = {"cifar10_keras.ipynb": ["on disk after the disconnect: ['epoch-0001.pt']", "Resuming after epoch 1",
                                  "== History of the run never interrupted: True"]}
PLOTS = {"mnist_tutorial.ipynb": 2, "cifar10_keras.ipynb": 2, "port_your_keras_model.ipynb": 2}


def load(name):
    return json.loads((ROOT / "notebooks" / name).read_text())


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_without_outputs_with_a_parameters_cell_and_the_install_guard(name):
    nb = load(name)
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c["outputs"] and c["execution_count"] is None for c in code)  # nbstripout's rule
    params = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(params) == 1
    text = "".join(params[0]["source"])
    assert "epochs = " in text and "data_dir = None" in text
    install = "".join(code[0]["source"])
    assert 'find_spec("torchport") is None' in install  # installs only when missing: Colab's torch is kept


def test_notebooks_are_what_the_generator_writes_from_their_sources(tmp_path):
    subprocess.run([sys.executable, str(ROOT / "notebooks" / "build_notebooks.py"), str(tmp_path)], check=True)
    for name in NOTEBOOKS:
        assert (tmp_path / name).read_text() == (ROOT / "notebooks" / name).read_text(), name


def test_the_originals_shown_are_taken_from_the_code_itself():
    """`@source` puts the tutorial's own definitions (torchport/originals/) and torchport's into the notebook:
    what the notebook shows is what the package holds, with no copy to drift."""
    import inspect

    from torchport import device, mnist
    from torchport.originals import mnist_notebook
    text = "".join("".join(c["source"]) for c in load("mnist_tutorial.ipynb")["cells"])
    for obj in (mnist_notebook.accuracy, mnist_notebook.get_default_device, mnist_notebook.to_device,
                mnist_notebook.evaluate, mnist_notebook.fit, mnist.MnistModel, device.DeviceDataLoader):
        assert inspect.getsource(obj).strip() in text, obj.__name__


@pytest.mark.skipif(importlib.util.find_spec("papermill") is None, reason="papermill is not installed")
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_runs_top_to_bottom_offline_with_one_epoch(name, tmp_path):
    import papermill
    out = tmp_path / name
    env_before = dict(os.environ)
    os.environ.update({"TORCHPORT_OFFLINE": "1", "TORCHPORT_DATA": str(tmp_path / "no-cache"),
                       "MPLBACKEND": "module://matplotlib_inline.backend_inline"})
    try:
        papermill.execute_notebook(str(ROOT / "notebooks" / name), str(out), parameters={"epochs": 1},
                                   cwd=str(tmp_path), kernel_name="python3", progress_bar=False)
    finally:
        os.environ.clear()
        os.environ.update(env_before)
    nb = json.loads(out.read_text())
    outputs = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]
    errors = [o for o in outputs if o["output_type"] == "error" or "Traceback" in "".join(o.get("text", ""))]
    assert not errors, errors
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= PLOTS[name]
    text = "".join("".join(o.get("text", "")) + "".join(o.get("data", {}).get("text/plain", "")) for o in outputs)
    for expected in SHOWN.get(name, ()):
        assert expected in text, expected
