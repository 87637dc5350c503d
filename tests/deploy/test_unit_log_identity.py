"""The shipped units hand syncd their SyslogIdentifier=: systemd applies that setting only to
what it captures from stdout/stderr, and syncd logs through the journal API, so each unit sets
SYNCD_SYSLOG_IDENTIFIER to the same value (per instance for syncd@). The Debian package
installs these very files (scripts/build-deb.sh)."""

from __future__ import annotations

import pytest

from syncd.logs import SYSLOG_IDENTIFIER_ENV, syslog_identifier
from tests.deploy.test_units import DEPLOY, parse_unit


@pytest.mark.parametrize(("unit", "expected"), [("syncd.service", "syncd"), ("syncd@.service", "syncd-%i")])
def test_each_unit_gives_syncd_its_syslog_identifier(unit: str, expected: str) -> None:
    service = parse_unit(DEPLOY / unit)["Service"]
    assert service["SyslogIdentifier"] == [expected]
    environment = dict(item.partition("=")[::2] for line in service["Environment"] for item in line.split())
    assert environment[SYSLOG_IDENTIFIER_ENV] == expected
    # What the daemon makes of it once systemd expanded %i (syncd@archive):
    instance = environment[SYSLOG_IDENTIFIER_ENV].replace("%i", "archive")
    assert syslog_identifier({SYSLOG_IDENTIFIER_ENV: instance}) == instance
