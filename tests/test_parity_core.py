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
