"""The benchmark's arithmetic: the FLOP count against a hand count, and the windowed median."""
import pytest
import torch

from torchport.bench import _faster_or_slower, _median_window_ms, format_markdown, training_flops
from torchport.cifar10 import SimpleCNN


def test_training_flops_match_a_hand_count_of_the_seed_model():
    macs = [32 * 32 * 32 * 3 * 9, 32 * 32 * 32 * 32 * 9, 8192 * 512, 512 * 10]  # per image, per layer
    forward = 2 * sum(macs) * 32
    train = forward + 2 * forward - 2 * macs[0] * 32  # no input gradient for the first conv
    got_f, got_t = training_flops(SimpleCNN(), torch.zeros(32, 3, 32, 32))
    assert got_f == forward and got_t == train
    assert got_t / 32 == pytest.approx(85.4e6, rel=1e-3) and got_t == pytest.approx(2.73e9, rel=2e-3)


def test_median_of_windows_skips_warmup():
    stamps = [0, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 30]  # a slow first step, steady 1 s, a slow last
    assert _median_window_ms(stamps, 2, 1) == pytest.approx(1000.0)


def test_markdown_table_reports_ratios():
    r = {"device": "cpu", "threads": 2, "torch": "x", "train_gflop_per_step": 2.73, "matmul_gflops": 150,
         "floor_ms_per_step": 18.2, "train_mb_per_step": 194, "bandwidth_gb_s": 20, "bytes_floor_ms_per_step": 9.7,
         "torchport": {"ms_per_step": 30, "x_floor": 1.65, "images_per_s": 4000,
                                                  "peak_rss_mb": 1100},
         "keras": {"ms_per_step": 36, "x_floor": 1.98, "images_per_s": 3000, "peak_rss_mb": 2700, "version": "2.21"},
         "speedup_train": 1.2, "speedup_infer": 1.33, "memory_ratio": 0.407}
    md = format_markdown(r)
    assert "| train ms/step (median) | 30.0 | 36.0 | 1.20x faster |" in md and "41% of Keras" in md
    assert _faster_or_slower(0.88) == "1.14x slower" and _faster_or_slower(1.2) == "1.20x faster"
    assert "the bytes floor is 9.7 ms/step" in md and "| x (FLOP + bytes floors) | 1.08 | 1.29 | |" in md


def test_bytes_floor_counts_parameters_and_activations_of_the_seed_model():
    from torchport.bench import training_bytes
    params = 4_210_090
    activations = 3 * 32 * 32 * 32 * 32 + 2 * 16 * 16 * 32 * 32 + 2 * 512 * 32 + 10 * 32  # per layer, batch 32
    assert training_bytes(SimpleCNN(), torch.zeros(32, 3, 32, 32)) == 4.0 * (8 * params + 4 * activations)


def test_the_seeds_gpu_table_projects_its_published_figures(monkeypatch):
    """On CUDA `bench` adds the seed's CPU-vs-GPU table. Its projection of the seed's own published figures
    must give back the seed's log: 125 ms/step -> 196 s/epoch, 4 ms/step -> 6-7 s/epoch."""
    from torchport import bench

    calls = []

    def fake(kind, hide_gpus=False, **kw):
        calls.append((kind, hide_gpus, kw.get("device"), kw.get("cuda_graphs", True)))
        return {"ms_per_step": {"torchport": 1.5 if kw.get("device") == "cuda" else 27.0, "keras": 30.0}[kind]}
    monkeypatch.setattr(bench, "_in_subprocess", fake)
    monkeypatch.setattr("importlib.util.find_spec", lambda name: object())
    res = {"torchport": {"ms_per_step": 0.9, "max_memory_allocated_mb": 150.0}, "floor_ms_per_step": 0.05,
           "keras": {"ms_per_step": 3.0, "gpu": True}}
    table = bench._seed_table(None, res, 400, 20, 40, with_keras=True)
    assert ("torchport", False, "cuda", False) in calls and ("keras", True, None, True) in calls  # eager; TF on CPU
    assert table["ms_per_step"] == {"torchport GPU, CUDA graph": 0.9, "torchport GPU, eager": 1.5,
                                    "torchport CPU": 27.0, "Keras GPU": 3.0, "Keras CPU": 30.0,
                                    "Keras CPU (seed, published)": 125.0, "Keras GPU (seed, published, Colab)": 4.0}
    md = "\n".join(bench.format_seed_table(table))
    assert "| Keras CPU (seed, published) | 125.00 | 195.4 | 4884 |" in md  # the seed's log: 196 s/epoch
    assert "| Keras GPU (seed, published, Colab) | 4.00 | 6.3 |" in md         # the seed's log: 6-7 s/epoch
    assert "| torchport GPU, CUDA graph | 0.90 | 1.4 | 35 |" in md and "peak GPU memory 150 MiB" in md


def test_bench_quick_runs_offline_on_the_bundled_sample(tmp_path, monkeypatch):
    from torchport.bench import run_bench
    monkeypatch.setenv("TORCHPORT_DATA", str(tmp_path / "no-cache"))  # nothing cached, no network
    r = run_bench(None, None, "cpu", quick=True, with_keras=False)
    t = r["torchport"]
    assert t["ms_per_step"] > 0 and t["images_per_s"] > 0 and t["x_floor"] > 0


def test_inference_split_fits_small_test_sets():
    from torchport.bench import _inference_split
    assert _inference_split(10000, 32) == (256, 4096)
    assert _inference_split(250, 32) == (32, 250)        # the bundled sample: 1 batch warm-up, 218 timed
    with pytest.raises(ValueError, match="too few"):
        _inference_split(20, 32)
