"""Root conftest: in CI, a skipped parity test is a failure (TensorFlow must be installed and used)."""
import os

_skipped_parity = []


def pytest_runtest_logreport(report):
    if report.skipped and "parity_tests" in report.nodeid:
        _skipped_parity.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    if os.environ.get("CI") and _skipped_parity:
        print(f"\nCI: {len(_skipped_parity)} parity test(s) were skipped; parity must run in CI, e.g. "
              f"{_skipped_parity[0]}")
        session.exitstatus = 1
