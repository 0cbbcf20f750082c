"""The CLI across its commands: its defaults are the run configs' own, its plots number epochs as the log does."""
import pytest


@pytest.mark.parametrize("argv", [["train", "mnist"], ["train", "cifar10"], ["fit", "m.keras", "--data", "d.npz"]])
def test_cli_defaults_are_the_config_dataclasses_defaults(argv):
    import dataclasses

    from torchport.cifar10 import Cifar10Config
    from torchport.cli import build_parser, config_from_args
    from torchport.keras_fit.run import FitConfig
    from torchport.mnist import MnistConfig

    cls = {"mnist": MnistConfig, "cifar10": Cifar10Config, "m.keras": FitConfig}[argv[1]]
    args = build_parser().parse_args(argv)
    got = config_from_args(cls, args)
    want = cls(**({"model": "m.keras", "data": "d.npz"} if cls is FitConfig else {}))
    differing = [f.name for f in dataclasses.fields(cls) if f.name not in ("device", "out")
                 and getattr(got, f.name) != getattr(want, f.name)]
    assert differing == []
    if cls is not FitConfig:  # fit's default folder is runs/fit/<file name>, set after parsing
        assert got.out == want.out


@pytest.mark.parametrize("command", ["cifar10", "fit", "mnist"])
def test_every_cli_plot_numbers_its_epochs_from_1(tmp_path, monkeypatch, command):
    """Each plot the CLI draws puts epoch k at x = k (the MNIST tutorial's history has the evaluation before
    training first, at x = 0, its first trained epoch at 1)."""
    from torchport import outputs
    from torchport.cli import main

    drawn = []
    original = outputs.write_plot

    def spy(*args, **kwargs):
        fig = original(*args, **kwargs)
        drawn.append([list(line.get_xdata()) for line in fig.axes[0].lines])
        return fig

    from torchport import cifar10, mnist
    from torchport.keras_fit import run as fit_run
    for module in (outputs, cifar10, fit_run, mnist):
        monkeypatch.setattr(module, "write_plot", spy, raising=False)
    monkeypatch.setenv("TORCHPORT_OFFLINE", "1")
    monkeypatch.setenv("TORCHPORT_DATA", str(tmp_path / "none"))
    out = str(tmp_path / "out")
    if command == "cifar10":
        argv, want = ["train", "cifar10", "--epochs", "2", "--verbose", "0"], [1, 2]
    elif command == "mnist":
        argv, want = ["train", "mnist", "--epochs", "1", "1"], [0, 1, 2]
    else:
        from test_fit import compile_config, tiny_data, tiny_model
        argv = ["fit", tiny_model(tmp_path, compile_config()), "--data", tiny_data(tmp_path), "--epochs", "3",
                "--verbose", "0"]
        want = [1, 2, 3]
    assert main([*argv, "--device", "cpu", "--out", out]) == 0
    assert drawn and all(xs == want for lines in drawn for xs in lines), drawn
