"""`torchport port` without TensorFlow: files written with h5py/zipfile, the seed CNN's golden code, the
legacy tf.keras 2 layout, and every refusal (one line, non-zero exit, nothing written)."""
import copy
import importlib.util
import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from keras_files import write_keras_file
from hypothesis import HealthCheck, given, settings, strategies as st

from torchport.cli import main
from torchport.errors import ModelFileError, TorchportError, UnsupportedError
from torchport.porting.plan import load_keras, plan_file

from torchport.originals.seed_cnn import CONFIG as SEED_CONFIG

DATA = Path(__file__).parent / "data"


def dense_config(units=(3, 2), shape=(4,), activation="relu", dtype="float32", name="tiny"):
    """A Keras 3 Sequential config of Dense layers, as config.json holds it."""
    policy = {"module": "keras", "class_name": "DTypePolicy", "config": {"name": dtype}, "registered_name": None}
    layers = [{"module": "keras.layers", "class_name": "InputLayer", "registered_name": None,
               "config": {"batch_shape": [None, *shape], "dtype": dtype, "name": "input_layer"}}]
    for i, u in enumerate(units):
        layers.append({"module": "keras.layers", "class_name": "Dense", "registered_name": None,
                       "config": {"name": "dense" + (f"_{i}" if i else ""), "units": u, "dtype": policy,
                                  "activation": activation if i < len(units) - 1 else "softmax", "use_bias": True}})
    return {"module": "keras", "class_name": "Sequential", "config": {"name": name, "layers": layers}}


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("torchport: error: ") and "Traceback" not in err, err
    return lines[0]


# ---- the seed CNN on this path ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def seed_file(tmp_path_factory):
    return write_keras_file(tmp_path_factory.mktemp("seed") / "seed_cnn.keras", SEED_CONFIG)


def test_seed_cnn_port_reads_as_the_golden_file(seed_file):
    golden = (Path(__file__).parent / "golden" / "seed_cnn_model.py").read_text()
    assert plan_file(seed_file).source == golden


@pytest.mark.parametrize("name", ["functional_merges", "text_bilstm"])
def test_a_branching_functional_model_and_a_masked_bilstm_port_as_their_golden_files(tmp_path, name):
    """Two inputs, branches, every merge and two outputs; Embedding(mask_zero) into two Bidirectional LSTMs.
    Their configs are Keras' own (`torchport/originals/keras_zoo.py`, saved by Keras 3.15)."""
    config = json.loads((Path(__file__).parent / "data" / f"{name}_config.json").read_text())
    path = write_keras_file(tmp_path / f"{name}.keras", config)
    assert plan_file(path).source == (Path(__file__).parent / "golden" / f"{name}_model.py").read_text()


def test_ported_seed_cnn_computes_what_the_hand_port_computes(seed_file):
    from torchport.cifar10 import SimpleCNN
    from torchport.keras_io import load_keras_weights

    ported = load_keras(seed_file)
    hand = load_keras_weights(SimpleCNN(), seed_file).eval()
    x = torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        probs = ported(x)
        assert torch.equal(probs, torch.softmax(hand(x), -1))   # the same ops, bit for bit
        assert torch.equal(probs._keras_logits, hand(x))        # and the logits the loss uses


def seed_plan_calls(path):
    from torchport.porting.plan import plan_file
    return [type("C", (), {"layer": layer}) for layer, _, _ in plan_file(str(path)).calls]


def test_port_writes_model_py_weights_summary_and_says_parity_was_skipped(seed_file, tmp_path, capsys, monkeypatch):
    import torchport.port as port_mod
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorflow" else
                        importlib.machinery.PathFinder.find_spec(name))
    out = tmp_path / "out"
    code, stdout, err = run_cli(capsys, "port", seed_file, "--out", out)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["model.py", "side_by_side.md", "summary.txt", "weights.pt"]
    table = (out / "side_by_side.md").read_text()  # every layer of the seed, in order, beside its torch lines
    rows = [line for line in table.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [r.split("`")[1] for r in rows] == [c.layer.name for c in seed_plan_calls(seed_file)]
    assert "`self.conv2d = nn.Conv2d(3, 32, kernel_size=(3, 3), padding=1)`" in table or "nn.Conv2d(3, 32" in table
    assert "weights: Keras kernel (3, 3, 3, 32), bias (32,) -> torch weight (32, 3, 3, 3), bias (32,)" in table
    assert "parity skipped: TensorFlow is not installed" in err and "pip install" in err
    assert "4,210,090 parameters" in stdout
    state = torch.load(out / "weights.pt", weights_only=True)
    assert all(t.device.type == "cpu" for t in state.values())
    assert "Total params: 4,210,090 (16.06 MB)" in (out / "summary.txt").read_text()
    # the generated file imports cleanly on its own and `load()` finds weights.pt beside it
    r = subprocess.run([sys.executable, "-c", "import model; m = model.load(); import torch; "
                        "print(tuple(m(torch.zeros(2, 3, 32, 32)).shape), m.training)"],
                       cwd=out, capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "(2, 10) False", r.stderr
    assert port_mod  # imported for monkeypatch's sake


def test_generated_code_is_ruff_clean(seed_file, tmp_path):
    import shutil
    if shutil.which("ruff") is None:
        pytest.skip("ruff is not installed")
    (tmp_path / "model.py").write_text(plan_file(seed_file).source)
    root = Path(__file__).resolve().parents[1]
    r = subprocess.run(["ruff", "check", "--no-cache", "--config", str(root / "pyproject.toml"), str(tmp_path)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout


# ---- a legacy tf.keras 2 .h5, written with h5py ----------------------------------------------------------------

def write_tf_keras2_h5(path, w1, b1, w2, b2):
    config = {"class_name": "Sequential", "config": {"name": "sequential", "layers": [
        {"class_name": "InputLayer", "config": {"batch_input_shape": [None, 4], "dtype": "float32",
                                                "name": "input_1"}},
        {"class_name": "Dense", "config": {"name": "dense", "dtype": "float32", "units": 3, "activation": "tanh",
                                           "use_bias": True}},
        {"class_name": "Dense", "config": {"name": "dense_1", "dtype": "float32", "units": 2,
                                           "activation": "sigmoid", "use_bias": True}}]}}
    with h5py.File(path, "w") as h5:
        h5.attrs["model_config"] = json.dumps(config)
        h5.attrs["keras_version"] = "2.15.0"
        h5.attrs["backend"] = "tensorflow"
        mw = h5.create_group("model_weights")
        mw.attrs["layer_names"] = [b"dense", b"dense_1"]
        for name, (k, b) in (("dense", (w1, b1)), ("dense_1", (w2, b2))):
            g = mw.create_group(name)
            g.attrs["weight_names"] = [f"{name}/kernel:0".encode(), f"{name}/bias:0".encode()]
            g.create_dataset(f"{name}/kernel:0", data=k)
            g.create_dataset(f"{name}/bias:0", data=b)


def test_legacy_tf_keras2_h5_ports_and_computes_the_numpy_reference(tmp_path):
    rng = np.random.default_rng(0)
    w1, b1, w2, b2 = (rng.normal(size=s).astype("float32") for s in ((4, 3), (3,), (3, 2), (2,)))
    write_tf_keras2_h5(tmp_path / "m.h5", w1, b1, w2, b2)
    model = load_keras(str(tmp_path / "m.h5"))
    x = rng.normal(size=(5, 4)).astype("float32")
    want = 1 / (1 + np.exp(-(np.tanh(x.astype("float64") @ w1 + b1) @ w2 + b2)))  # float64 reference
    with torch.no_grad():
        got = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, atol=1e-6)


# ---- refusals: one line, non-zero exit, nothing written --------------------------------------------------------

def refusal(tmp_path, capsys, path, code, message):
    out = tmp_path / "out"
    got, _, err = run_cli(capsys, "port", path, "--out", out)
    line = one_error_line(err)
    assert got == code and message in line, line
    assert not out.exists()
    return line


def test_lambda_layer_is_refused_and_never_run(tmp_path, capsys, monkeypatch):
    import marshal
    monkeypatch.setattr(marshal, "loads", lambda *a: pytest.fail("bytecode was unmarshalled"))
    config = json.loads((DATA / "lambda_config.json").read_text())
    arrays = {"dense": [("", [np.zeros((4, 3), "float32"), np.zeros(3, "float32")])],
              "dense_1": [("", [np.zeros((3, 2), "float32"), np.zeros(2, "float32")])]}
    path = write_keras_file(tmp_path / "l.keras", config, arrays=arrays)
    line = refusal(tmp_path, capsys, path, 1, "layer 'lambda' (Lambda)")
    assert "never unmarshals or runs it" in line


@pytest.mark.parametrize("mutate, message", [
    (lambda c: c["config"]["layers"][1].update(class_name="MyDense", registered_name="Custom>MyDense"),
     "layer 'dense' (Custom>MyDense): a custom class; say how it ports with `--converters FILE`"),
    (lambda c: c["config"]["layers"][1].update(module="my_package.layers"),
     "layer 'dense' (Dense): a custom class; say how it ports with `--converters FILE`"),
    (lambda c: c["config"]["layers"][1].update(class_name="Hypernetwork"),
     "layer 'dense' (Hypernetwork): this layer class is not supported"),
    (lambda c: c["config"]["layers"][1]["config"].update(lora_rank=4), "layer 'dense' (Dense): lora_rank"),
    (lambda c: c["config"]["layers"][1]["config"].update(activation="hard_shrink"),
     "activation 'hard_shrink' is not supported"),
    (lambda c: c["config"]["layers"][1]["config"].update(dtype="mixed_float16"),
     "dtype policy 'mixed_float16'"),
    (lambda c: c.update(class_name="MyModel"), "model class 'MyModel'"),
])
def test_unsupported_classes_and_options_name_layer_class_and_option(tmp_path, capsys, mutate, message):
    ok = dense_config()
    path = write_keras_file(tmp_path / "ok.keras", ok)
    with zipfile.ZipFile(path) as z:
        blob = z.read("model.weights.h5")
    bad = copy.deepcopy(ok)
    mutate(bad)
    target = tmp_path / "bad.keras"
    with zipfile.ZipFile(target, "w") as z:
        z.writestr("config.json", json.dumps(bad))
        z.writestr("model.weights.h5", blob)
    refusal(tmp_path, capsys, target, 1, message)


def test_damaged_files(tmp_path, capsys):
    good = Path(write_keras_file(tmp_path / "good.keras", dense_config()))
    raw = good.read_bytes()
    cases = {
        "truncated.keras": (raw[: len(raw) // 2], "not a Keras model file"),  # the zip directory is gone
        "text.keras": (b"hello, I am not a model\n" * 10, "not a Keras model file"),
    }
    for name, (data, message) in cases.items():
        (tmp_path / name).write_bytes(data)
        refusal(tmp_path, capsys, tmp_path / name, 1, message)
    flipped = bytearray(raw)
    start = raw.index(b"\x89HDF")  # inside the stored weights file: the zip's CRC no longer matches
    flipped[start + 200:start + 400] = bytes(b ^ 0xFF for b in flipped[start + 200:start + 400])
    (tmp_path / "flipped.keras").write_bytes(bytes(flipped))
    refusal(tmp_path, capsys, tmp_path / "flipped.keras", 1, "truncated or corrupt .keras archive")
    only_config = tmp_path / "config_only.keras"
    with zipfile.ZipFile(only_config, "w") as z:
        z.writestr("config.json", json.dumps(dense_config()))
    refusal(tmp_path, capsys, only_config, 1, "holds no model.weights.h5")
    refusal(tmp_path, capsys, tmp_path / "missing.keras", 2, "no such file")


def test_weights_whose_shapes_disagree_with_the_config(tmp_path, capsys):
    path = write_keras_file(tmp_path / "m.keras", dense_config(units=(3, 2)))
    with zipfile.ZipFile(path) as z:
        blob = z.read("model.weights.h5")
    bigger = tmp_path / "bigger.keras"
    with zipfile.ZipFile(bigger, "w") as z:
        z.writestr("config.json", json.dumps(dense_config(units=(5, 2))))
        z.writestr("model.weights.h5", blob)
    refusal(tmp_path, capsys, bigger, 1, "layer 'dense' (Dense): the file holds arrays of shapes [(4, 3), (3,)], "
                                          "the config needs [(4, 5), (5,)]")


@pytest.mark.parametrize("units", [10**12, 2**30])
def test_absurd_sizes_are_refused_before_anything_is_allocated(tmp_path, capsys, units):
    import tracemalloc
    path = write_keras_file(tmp_path / "m.keras", dense_config(units=(3, 2)))
    with zipfile.ZipFile(path) as z:
        blob = z.read("model.weights.h5")
    huge = tmp_path / "huge.keras"
    with zipfile.ZipFile(huge, "w") as z:
        z.writestr("config.json", json.dumps(dense_config(units=(units, 2))))
        z.writestr("model.weights.h5", blob)
    tracemalloc.start()
    with pytest.raises(ModelFileError, match="layer 'dense'"):
        load_keras(str(huge))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 50 * 2**20  # 2**30 units x 4 inputs would be 16 GiB


def test_hdf5_links_and_non_numeric_arrays_are_refused(tmp_path):
    path = write_keras_file(tmp_path / "m.keras", dense_config())
    for how, message in (("external", "is a link"), ("strings", "not numbers")):
        buf = io.BytesIO()
        with zipfile.ZipFile(path) as z:
            buf.write(z.read("model.weights.h5"))
        with h5py.File(buf, "a") as h5:
            group = h5["layers/dense/vars"]
            del group["0"]
            if how == "external":
                group["0"] = h5py.ExternalLink("/etc/passwd", "/data")
            else:
                group.create_dataset("0", data=np.array([b"a", b"b"]))
        bad = tmp_path / f"{how}.keras"
        with zipfile.ZipFile(bad, "w") as z:
            z.writestr("config.json", json.dumps(dense_config()))
            z.writestr("model.weights.h5", buf.getvalue())
        with pytest.raises(ModelFileError, match=message):
            load_keras(str(bad))


def test_float64_models_port_as_float64_and_other_policies_are_refused(tmp_path):
    model = load_keras(write_keras_file(tmp_path / "m64.keras", dense_config(dtype="float64")))
    assert {p.dtype for p in model.parameters()} == {torch.float64}
    with pytest.raises(UnsupportedError, match="dtype policy 'bfloat16'"):
        load_keras(write_keras_file(tmp_path / "bf.keras", dense_config(dtype="bfloat16")))


# ---- fuzzing: hostile zips, configs and h5 files get torchport's own error ------------------------------------

FUZZ = settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


class Sample(tuple):
    def __repr__(self):  # hypothesis prints its arguments; the bytes are not worth printing
        return "<a valid .keras file and its config>"


@pytest.fixture(scope="module")
def good_bytes(tmp_path_factory):
    config = dense_config(units=(5, 3, 2))
    path = write_keras_file(tmp_path_factory.mktemp("fuzz") / "m.keras", config)
    return Sample((Path(path).read_bytes(), config))


def _expect_only_our_errors(tmp_path, data: bytes):
    path = tmp_path / "fuzz.keras"
    path.write_bytes(data)
    try:
        load_keras(str(path))
    except TorchportError:
        pass


@FUZZ
@given(cuts=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=8),
       truncate=st.one_of(st.none(), st.integers(0, 10**6)))
def test_mutated_archives(tmp_path, good_bytes, cuts, truncate):
    data = bytearray(good_bytes[0])
    for pos, value in cuts:
        data[pos % len(data)] = value
    if truncate is not None:
        data = data[: truncate % len(data)]
    _expect_only_our_errors(tmp_path, bytes(data))


def _json_values():
    return st.recursive(st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats() | st.text(max_size=8),
                        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                                    max_size=3), max_leaves=8)


@FUZZ
@given(path=st.lists(st.integers(0, 20), min_size=1, max_size=6), value=_json_values())
def test_mutated_configs(tmp_path, good_bytes, path, value):
    raw, config = good_bytes
    with zipfile.ZipFile(io.BytesIO(raw)) as z:
        blob = z.read("model.weights.h5")
    bad = copy.deepcopy(config)
    node = bad
    for step in path[:-1]:  # walk into the config, then replace one value
        children = list(node.values()) if isinstance(node, dict) else node if isinstance(node, list) else []
        if not children or not isinstance(children[step % len(children)], (dict, list)):
            break
        node = children[step % len(children)]
    if isinstance(node, dict) and node:
        node[sorted(node)[path[-1] % len(node)]] = value
    elif isinstance(node, list) and node:
        node[path[-1] % len(node)] = value
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("config.json", json.dumps(bad))
        z.writestr("model.weights.h5", blob)
    _expect_only_our_errors(tmp_path, buf.getvalue())


@FUZZ
@given(cuts=st.lists(st.tuples(st.integers(0, 10**5), st.integers(0, 255)), min_size=1, max_size=12))
def test_mutated_h5_inside_a_valid_zip(tmp_path, good_bytes, cuts):
    raw, config = good_bytes
    with zipfile.ZipFile(io.BytesIO(raw)) as z:
        blob = bytearray(z.read("model.weights.h5"))
    for pos, value in cuts:
        blob[pos % len(blob)] = value
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("config.json", json.dumps(config))
        z.writestr("model.weights.h5", bytes(blob))
    _expect_only_our_errors(tmp_path, buf.getvalue())


def _legacy_h5_bytes(tmp_path) -> bytes:
    rng = np.random.default_rng(0)
    write_tf_keras2_h5(tmp_path / "legacy.h5", *(rng.normal(size=s).astype("float32")
                                                 for s in ((4, 3), (3,), (3, 2), (2,))))
    return (tmp_path / "legacy.h5").read_bytes()


def test_a_legacy_h5_that_makes_libhdf5_spin_is_refused_in_one_line(tmp_path, capsys, monkeypatch):
    """A fuzzed .h5 (4 bytes changed) made libhdf5 loop forever reading its `model_config` attribute. Built
    here: the size of a global-heap object (the config's string) made 2,300 bytes larger than the heap."""
    from torchport.porting import files
    path = tmp_path / "spin.h5"
    with h5py.File(path, "w") as h5:
        h5.attrs["keras_version"] = "3.15.1"
        h5.attrs["model_config"] = json.dumps(dense_config())
        h5.create_group("model_weights")
    data = bytearray(path.read_bytes())
    header = data.find(b"3.15.1") + 8  # the next heap object: index (2), references (2), reserved (4), size (8)
    data[header + 9] = 9
    path.write_bytes(bytes(data))
    monkeypatch.setattr(files, "PROBE_SECONDS", 1.0)
    refusal(tmp_path, capsys, path, 1, "corrupt HDF5 (the HDF5 library did not finish reading its metadata")


@FUZZ
@given(cuts=st.lists(st.tuples(st.integers(0, 10**5), st.integers(0, 255)), min_size=1, max_size=10),
       truncate=st.one_of(st.none(), st.integers(0, 10**5)))
def test_mutated_legacy_h5_files(tmp_path, cuts, truncate):
    """Random bytes changed in a legacy .h5 (and truncations): torchport's own error, never a hang or crash."""
    from torchport.porting import files
    data = bytearray(_legacy_h5_bytes(tmp_path))
    for pos, value in cuts:
        data[pos % len(data)] = value
    if truncate is not None:
        data = data[: max(8, truncate % len(data))]
    path = tmp_path / "fuzz.h5"
    path.write_bytes(bytes(data))
    previous, files.PROBE_SECONDS = files.PROBE_SECONDS, 2.0
    try:
        load_keras(str(path))
    except TorchportError:
        pass
    finally:
        files.PROBE_SECONDS = previous
