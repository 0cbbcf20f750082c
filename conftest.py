"""Root conftest: reproducible hypothesis draws; in CI a skipped parity test is a failure; `cuda` tests
run only where a CUDA GPU is present (`pytest -m cuda` selects them)."""
import os

import pytest
from hypothesis import settings

# Every run draws the same examples: a test that passes only sometimes is a broken test.
settings.register_profile("torchport", derandomize=True, database=None, deadline=None)
settings.load_profile("torchport")

_skipped_parity = []


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


def pytest_runtest_logreport(report):
    if report.skipped and "parity_tests" in report.nodeid:
        _skipped_parity.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    if os.environ.get("CI") and _skipped_parity:
        print(f"\nCI: {len(_skipped_parity)} parity test(s) were skipped; parity must run in CI, e.g. "
              f"{_skipped_parity[0]}")
        session.exitstatus = 1
