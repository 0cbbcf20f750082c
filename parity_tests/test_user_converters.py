"""A user's own layers, by their word: the worked example of examples/custom_layers (keras.io's text
Transformer with its TokenAndPositionEmbedding and TransformerBlock, and CaiT's LayerScale) ported with
`--converters my_layers.py`, checked against Keras; refused without the flag; a planted bug in the user's
converter caught; the port running from its folder; `fit` on it writing a model.keras Keras loads."""
from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from torchport.cli import main

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "custom_layers"
CONVERTERS = str(EXAMPLE / "my_layers.py")


@pytest.fixture(scope="module")
def model_file(tmp_path_factory, keras):
    sys.path.insert(0, str(EXAMPLE))
    try:
        import keras_model
    finally:
        sys.path.remove(str(EXAMPLE))
    keras.utils.set_random_seed(0)
    model = keras_model.build(vocab_size=300, maxlen=12, embed_dim=16, num_heads=2, ff_dim=16)
    rng = np.random.default_rng(0)
    model.set_weights([rng.normal(0, 0.3, w.shape).astype("float32") for w in model.get_weights()])
    path = tmp_path_factory.mktemp("custom") / "text_transformer.keras"
    model.save(path)
    x = rng.integers(0, 300, (4, 12)).astype("float32")
    return path, x, np.asarray(model(x))


def test_the_worked_example_ports_with_its_converters_and_runs_from_its_folder(model_file, tmp_path, capsys):
    path, x, theirs = model_file
    out = tmp_path / "port"
    assert main(["port", str(path), "--converters", CONVERTERS, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "my_layers.py" in printed and " 0 failed" in printed
    source = (out / "model.py").read_text()
    assert "import my_layers" in source and "my_layers.TransformerBlock(16, 2, 16" in source
    np.save(tmp_path / "x.npy", x)
    code = ("import numpy as np, torch, model; m = model.load(); "
            f"print(repr(m(torch.from_numpy(np.load({str(tmp_path / 'x.npy')!r}))).detach().numpy().tolist()))")
    run = subprocess.run([sys.executable, "-c", code], cwd=out, capture_output=True, text=True, check=True)
    ours = np.array(eval(run.stdout))  # noqa: S307 (our own printed list)
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_without_the_flag_the_refusal_names_it(model_file, tmp_path):
    """In a fresh process (a converters file, once loaded, stays registered for the process, as Keras' own
    registrations do)."""
    path, _, _ = model_file
    run = subprocess.run([sys.executable, "-m", "torchport", "port", str(path), "--out", str(tmp_path / "no")],
                         capture_output=True, text=True)
    err = run.stderr.strip().splitlines()
    assert run.returncode != 0 and len(err) == 1
    assert "custom_layers>TokenAndPositionEmbedding" in err[0] and "--converters FILE" in err[0]
    assert not (tmp_path / "no").exists()


def test_a_planted_bug_in_the_users_converter_fails_parity(model_file, tmp_path, monkeypatch, capsys):
    path, _, _ = model_file
    main(["port", str(path), "--converters", CONVERTERS, "--no-parity", "--out", str(tmp_path / "warm")])
    my_layers = sys.modules["my_layers"]
    original = my_layers.TransformerBlockPort.to_torch

    def swapped(self, arrays):  # query and key projections exchanged
        state = original(self, arrays)
        state["att.query.weight"], state["att.key.weight"] = state["att.key.weight"], state["att.query.weight"]
        return state
    monkeypatch.setattr(my_layers.TransformerBlockPort, "to_torch", swapped)
    assert main(["port", str(path), "--converters", CONVERTERS, "--out", str(tmp_path / "bad")]) == 1
    assert " failed" in capsys.readouterr().out


@pytest.mark.parametrize("content, message", [(None, "no such file"), ("raise ValueError('boom')", "ValueError: boom"),
                                              ("x = 1", "registers no converter")])
def test_a_bad_converters_file_is_one_line(model_file, tmp_path, capsys, content, message):
    path, _, _ = model_file
    bad = tmp_path / "bad_layers.py"
    if content is not None:
        bad.write_text(content)
    assert main(["port", str(path), "--converters", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_fit_trains_the_custom_model_and_keras_loads_what_it_wrote(model_file, tmp_path, keras):
    path, _, _ = model_file
    rng = np.random.default_rng(1)
    data = {"x_train": rng.integers(0, 300, (64, 12)).astype("float32"), "y_train": rng.integers(0, 2, 64),
            "x_test": rng.integers(0, 300, (32, 12)).astype("float32"), "y_test": rng.integers(0, 2, 32)}
    np.savez(tmp_path / "d.npz", **data)
    out = tmp_path / "fit"
    assert main(["fit", str(path), "--converters", CONVERTERS, "--data", str(tmp_path / "d.npz"), "--epochs", "1",
                 "--out", str(out), "--verbose", "0"]) == 0
    history = json.loads((out / "history.json").read_text())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = keras.models.load_model(out / "model.keras", custom_objects=sys.modules["my_layers"].keras_objects())
    theirs = loaded.evaluate(data["x_test"], data["y_test"], batch_size=32, verbose=0, return_dict=True)
    assert theirs["loss"] == pytest.approx(history["val_loss"][-1], rel=1e-5)
