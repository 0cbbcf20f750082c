"""Parity's measures, checked without TensorFlow: the KS statistic against hand values, strict pairing."""
import tomllib
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ks_statistic_matches_hand_values_and_scipy_free():
    from torchport.parity import ks_statistic
    # empirical CDFs of {1, 2, 3} and {2.5, 4}: at 2 they are 2/3 and 0, the largest gap
    assert ks_statistic(np.array([1.0, 2, 3]), np.array([2.5, 4])) == pytest.approx(2 / 3)
    assert ks_statistic(np.arange(5.0), np.arange(5.0)) == 0.0
    assert ks_statistic(np.zeros(3), np.ones(4)) == 1.0
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert not any("scipy" in r for reqs in extra.values() for r in reqs)


def test_parity_comparisons_refuse_lists_of_different_lengths():
    from torchport.parity import count_differing, max_abs, worst
    with pytest.raises(ValueError):
        worst(([np.zeros(2), np.zeros(2)], [np.zeros(2)]), max_abs)
    assert count_differing([1, 2, 3], [1, 2]) == 1 and count_differing([1, 2], [1, 2]) == 0


# calibrated verdicts: the logic, on synthetic numbers (no TensorFlow) ---------------------------------------

def test_a_tensor_is_measured_on_its_layers_scale_so_a_zero_gradient_bias_does_not_fail():
    from torchport.parity.model import scaled_diffs
    kernel, bias_ours, bias_keras = np.full(4, 0.5), np.array([3e-18]), np.array([-1e-18])
    assert scaled_diffs([kernel, bias_ours], [kernel, bias_keras], [0, 0]) == [0.0, pytest.approx(8e-18)]
    # alone (its own scale), the same noise would be "400%" apart
    assert scaled_diffs([bias_ours], [bias_keras], [0])[0] == pytest.approx(4.0)


def test_the_tolerance_widens_only_past_the_strict_one_and_the_row_says_so():
    from torchport.parity.model import FACTOR, calibrated, worst_ratio
    quiet = calibrated("c", "m", 3e-6, 1e-5, 1e-9)
    assert quiet.tol == 1e-5 and "calibrated" not in quiet.metric and quiet.passed
    loud = calibrated("c", "m", 3e-5, 1e-5, 5e-6)
    assert loud.tol == pytest.approx(FACTOR * 5e-6) and "calibrated" in loud.metric and loud.passed
    assert not calibrated("c", "m", 1e-3, 1e-5, 5e-6).passed
    # the row reports the entry nearest its own allowance, not the largest difference
    assert worst_ratio([1e-4, 2e-6], [1e-4, 1e-9], 1e-5) == 1


def _trajectory(losses, distances, history):
    from torchport.parity.model import Trajectory
    return Trajectory(losses=list(losses), distances=list(distances), history=history)


def _rows(ours, keras_itself):
    from torchport.parity.model import _training_rows

    class Plan:
        compile_config = None

    theirs = _trajectory(np.ones(10), [], {"loss": [1.0, 1.0]})
    return _training_rows(Plan(), ours, theirs, keras_itself, 2, "float64", 1e-9, False)


def test_a_chaotic_run_is_judged_by_its_end_and_a_wrong_first_step_still_fails():
    grow = 1e-16 * 10.0 ** np.arange(10)  # Keras from itself: 1e-16 at step 1, 1e-7 at step 10
    itself = [_trajectory(1 + grow, grow, {"loss": [1.0, 1 + 1e-7]}) for _ in range(2)]
    early_jump = grow.copy()
    early_jump[9:] = 5e-7  # torchport crosses a kink in the chaotic phase: judged at the end, within 10x
    rows = _rows(_trajectory(1 + early_jump, early_jump, {"loss": [1.0, 1 + 5e-7]}), itself)
    assert all(r.passed for r in rows), [(r.check, r.diff, r.tol) for r in rows if not r.passed]
    assert "chaotic from step 10" in rows[1].check and "end of the chaotic run" in rows[3].check
    early_jump[8] = 1e-6  # the same jump while Keras is still within 1e-8 of itself: not chaos, a difference
    assert not all(r.passed for r in _rows(_trajectory(1 + early_jump, early_jump, {"loss": [1.0, 1.0]}), itself))
    wrong = grow + 1e-6  # off from the first step: a bug, not chaos
    rows = _rows(_trajectory(1 + wrong, wrong, {"loss": [1.0, 1.0]}), itself)
    assert not rows[0].passed and rows[0].check.startswith("training 2 epochs float64: first 4 of 10 steps")
