"""Who the entries are from, in a real systemd-journald: SYSLOG_IDENTIFIER follows the unit
(`journalctl -t syncd-archive` finds the events of syncd@archive), and each event kind has
its MESSAGE_ID, the same in every release (see test_journald.py for the private journald)."""

from __future__ import annotations

from syncd import logs
from tests.logs.test_journald import SECRET, probe


def test_an_instance_logs_under_its_units_identifier_with_a_message_id_per_event_kind() -> None:
    # journald_probe reads back with `journalctl -t syncd-archive`: only this instance's entries.
    first, second, library = probe("unit_instance", 3)
    assert {e["SYSLOG_IDENTIFIER"] for e in (first, second, library)} == {"syncd-archive"}
    assert first["MESSAGE"].startswith("upload_committed watch=archive path=a.pdf")
    assert first["MESSAGE_ID"] == second["MESSAGE_ID"] == logs.message_id("upload_committed")
    assert first["MESSAGE_ID"] == "9df5a897dada552eb66be2b8cc3e5fdb"  # pinned: never changes
    # A library's record is no syncd event kind: no MESSAGE_ID, same identifier.
    assert library["SYNCD_LOGGER"] == "urllib3.connectionpool" and "MESSAGE_ID" not in library
    assert all(SECRET not in value for entry in (first, second, library) for value in entry.values()
               if isinstance(value, str))


def test_the_identifier_comes_from_the_environment_the_unit_sets() -> None:
    assert logs.syslog_identifier({}) == "syncd"
    assert logs.syslog_identifier({"SYNCD_SYSLOG_IDENTIFIER": "syncd-archive"}) == "syncd-archive"
    assert logs.syslog_identifier({"SYNCD_SYSLOG_IDENTIFIER": "  "}) == "syncd"  # blank: the default
    fields = logs.journald_fields({"event": "file_ready", "level": "info"}, "syncd-archive")
    assert (fields["SYSLOG_IDENTIFIER"], fields["MESSAGE_ID"]) == ("syncd-archive", logs.message_id("file_ready"))
