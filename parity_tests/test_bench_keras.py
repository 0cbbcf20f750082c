"""`torchport bench --quick` with the Keras side, offline on the bundled sample."""


def test_bench_quick_with_keras_runs_offline_on_the_bundled_sample(tmp_path, monkeypatch, capsys):
    from torchport.cli import main
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("TORCHPORT_DATA", str(tmp_path / "no-cache"))
    monkeypatch.setenv("TORCHPORT_OFFLINE", "1")
    assert main(["bench", "--quick", "--device", "cpu", "--out", str(tmp_path / "bench")]) == 0
    out = capsys.readouterr().out
    assert "| train ms/step (median) |" in out and ("x faster" in out or "x slower" in out)
    assert (tmp_path / "bench" / "bench.json").exists()
