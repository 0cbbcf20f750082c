"""`parity --model` on real models, with verdicts calibrated to each model's own sensitivity: green on the
keras.io timeseries FCN and a Conv2D+BatchNorm model (which failed before on noise divided by noise and
float32 BatchNorm gradients), and red on each planted bug (a BatchNorm momentum off by 1e-3, an Adam epsilon
moved inside the root, a depthwise kernel transposed). MobileNetV2 and ResNet50 run in
`scripts/parity_real_models.py` (minutes, not the suite's seconds)."""
import pytest
from planted_bugs import adam_epsilon_inside_the_root, batchnorm_momentum_off, depthwise_kernel_transposed

from torchport.parity import model as pm
from torchport.porting.plan import plan_file


@pytest.fixture(scope="module")
def files(keras, tmp_path_factory):
    from torchport.originals.keras_zoo import build
    folder = tmp_path_factory.mktemp("real")
    out = {}
    for name in ("timeseries_fcn", "conv_bn"):
        out[name] = str(folder / f"{name}.keras")
        build(keras, name).save(out[name])
    return out


def failing(results):
    return [f"{r.check}: {r.diff:.3g} > {r.tol:.3g}" for r in results if not r.passed]


@pytest.mark.parametrize("name", ["timeseries_fcn", "conv_bn"])
def test_parity_model_is_green_with_both_numbers_in_every_calibrated_row(files, name):
    path = files[name]
    results = pm.model_checks(plan_file(path), path)
    assert not failing(results)
    calibrated = [r for r in results if r.sensitivity is not None]
    assert len(calibrated) >= 10  # forward and gradients in two dtypes, each training row
    grads = next(r for r in results if r.check.startswith("gradients float32"))
    assert grads.diff <= 1e-5 and grads.sensitivity > 0  # float32 BatchNorm gradients, on their layer's scale
    weights = next(r for r in results if ": weights after each" in r.check)
    assert weights.diff <= 1e-9  # a bias before BatchNormalization (zero gradient) no longer divides noise by noise


def test_a_batchnorm_momentum_off_by_1e_3_fails(files):
    path = files["timeseries_fcn"]
    with batchnorm_momentum_off(1e-3):
        rows = pm.check_training(plan_file(path), path)
    first = rows[0]
    assert first.check.startswith("training 2 epochs float64: first") and not first.passed, first
    assert first.diff > 1e-6


def test_an_adam_epsilon_inside_the_root_fails(files):
    path = files["timeseries_fcn"]
    with adam_epsilon_inside_the_root():
        rows = pm.check_training(plan_file(path), path)
    assert not rows[0].passed and rows[0].diff > 1e-6, rows[0]
    assert failing(rows)


def test_a_transposed_depthwise_kernel_fails_on_mobilenet_v2(keras, tmp_path):
    from torchport.originals.keras_zoo import build
    path = str(tmp_path / "mobilenet_v2.keras")
    build(keras, "mobilenet_v2").save(path)
    plan = plan_file(path)
    assert pm.check_forward(plan, path).passed
    with depthwise_kernel_transposed():
        row = pm.check_forward(plan_file(path), path)
    assert not row.passed and row.diff > 1e-3, row
