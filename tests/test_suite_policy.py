"""The suite's own rules, checked on real pytest runs (pytester, in subprocesses).

- Under CI a skipped or xfailed test fails the run (tests.support.ci_policy), in one
  process and under xdist as scripts/test.sh runs it (`-n ... --dist loadfile`).
- Every test directory is a package, so two test files may share a name in different
  directories without colliding as modules (xdist workers import them the same way).
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# The same plugin line as tests/conftest.py, in the throwaway project's top-level conftest.
CONFTEST = 'pytest_plugins = ["tests.support.ci_policy"]\n'

PASSING = "def test_passes():\n    assert True\n"
NOT_RUN = {
    "skip": "import pytest\n\ndef test_needs_a_tool():\n    pytest.skip('tool missing')\n",
    "skip-marker": "import pytest\n\n@pytest.mark.skip(reason='later')\ndef test_later():\n    pass\n",
    "skip-module": "import pytest\n\npytest.importorskip('no_such_module_for_syncd')\n\ndef test_x():\n    pass\n",
    "xfail": "import pytest\n\n@pytest.mark.xfail(reason='known bug')\ndef test_known_bug():\n    assert False\n",
}
XDIST = ("-p", "xdist", "-n", "2", "--dist", "loadfile")


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A throwaway test project that loads the suite's CI policy, as tests/conftest.py does."""
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    # Only the plugins named (the policy, and xdist where asked for): the installed ones that
    # load themselves (hypothesis, timeout, ...) cost seconds a run and play no part here.
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("PYTEST_ADDOPTS", raising=False)
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_ok=PASSING, test_ok_too=PASSING)
    return pytester


@pytest.mark.parametrize("xdist", [(), XDIST], ids=["one-process", "xdist"])
def test_tests_that_did_not_run_fail_ci(project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
                                        xdist: tuple[str, ...]) -> None:
    project.makepyfile(**{f"test_{kind.replace('-', '_')}": source for kind, source in NOT_RUN.items()})
    monkeypatch.setenv("CI", "true")
    result = project.runpytest_subprocess("-p", "no:cacheprovider", *xdist)
    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.stdout.str()
    result.stdout.fnmatch_lines(["*CI: 4 test(s) did not run; every test must run in CI:*"])
    for kind in NOT_RUN:
        result.stdout.fnmatch_lines([f"*test_{kind.replace('-', '_')}.py*"])
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed") == 2 and "failed" not in outcomes, outcomes  # failed by the policy alone


def test_outside_ci_a_skip_is_only_reported(project: pytest.Pytester) -> None:
    project.makepyfile(test_not_run=NOT_RUN["skip"])
    result = project.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    assert result.parseoutcomes().get("skipped") == 1
    assert "did not run; every test must run in CI" not in result.stdout.str()


def test_under_ci_a_suite_that_all_ran_passes_under_xdist(project: pytest.Pytester,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    result = project.runpytest_subprocess("-p", "no:cacheprovider", *XDIST)
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    assert result.parseoutcomes().get("passed") == 2


def test_the_suite_loads_the_policy(pytestconfig: pytest.Config) -> None:
    assert pytestconfig.pluginmanager.has_plugin("tests.support.ci_policy")


def test_every_test_directory_is_a_package() -> None:
    loose = sorted(
        str(directory.relative_to(ROOT))
        for directory in {path.parent for path in (ROOT / "tests").rglob("*.py")}
        if "__pycache__" not in directory.parts and not (directory / "__init__.py").is_file()
    )
    assert loose == []
