"""Suite-wide policy (a pytest plugin, loaded by tests/conftest.py): under CI a skipped or
xfailed test fails the run.

A skipped test is a missing test, so CI must install whatever every test needs
instead of letting pytest quietly skip it. The hook runs where the terminal reporter
collects every report: the single process, or xdist's controller (its workers'
reports are replayed there). tests/test_suite_policy.py proves it both ways.
"""

from __future__ import annotations

import os

import pytest


def _ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not _ci():
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return
    not_run = [
        report.nodeid
        for kind in ("skipped", "xfailed")
        for report in reporter.stats.get(kind, [])
    ]
    if not_run:
        reporter.write_line(f"CI: {len(not_run)} test(s) did not run; every test must run in CI:", red=True)
        for nodeid in not_run:
            reporter.write_line(f"  {nodeid}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
