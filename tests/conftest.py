"""Suite-wide fixtures and policy: under CI a skipped or xfailed test fails the run
(tests.support.ci_policy)."""

from __future__ import annotations

pytest_plugins = ["pytester", "tests.support.ci_policy", "tests.support.fixtures", "tests.support.postgres"]
