"""Box's host names in a hosts file for the length of a benchmark: the line goes in, and comes out
again however the block is left. Always on a temporary copy; the machine's /etc/hosts is never touched."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from bench.box_hosts import (
    BOX_HOST_NAMES,
    MARKER,
    HostsFileError,
    Terminated,
    box_hosts,
    conflicting_lines,
    marked_lines,
    with_entries,
    without_entries,
)

ORIGINAL = "127.0.0.1\tlocalhost\n::1 localhost ip6-localhost   # keep my spacing\n10.0.0.7 build-cache\n"


@pytest.fixture
def hosts(tmp_path: Path) -> Path:
    path = tmp_path / "hosts"
    path.write_text(ORIGINAL)
    return path


def _enter(hosts: Path):
    return box_hosts(hosts, check_resolution=False)


def test_entries_go_in_as_one_marked_line_and_come_out_leaving_the_file_byte_for_byte():
    added = with_entries(ORIGINAL, BOX_HOST_NAMES)
    assert added.startswith(ORIGINAL)
    assert marked_lines(added) == [f"127.0.0.1 {' '.join(BOX_HOST_NAMES)} {MARKER}"]
    assert without_entries(added) == ORIGINAL
    # A file without a final newline gets one before the added line, and keeps its own last line.
    assert with_entries("127.0.0.1 localhost", ["api.box.com"]).splitlines()[0] == "127.0.0.1 localhost"


def test_a_name_already_mapped_by_someone_else_is_a_conflict_comments_and_case_aside():
    text = ORIGINAL + "# 203.0.113.9 api.box.com (commented out)\n203.0.113.9 API.Box.com\n"
    assert conflicting_lines(text, BOX_HOST_NAMES) == ["203.0.113.9 API.Box.com"]
    assert conflicting_lines(with_entries(ORIGINAL, BOX_HOST_NAMES), BOX_HOST_NAMES) == []  # our own line is not one
    assert conflicting_lines("127.0.0.1 notapi.box.com\n", BOX_HOST_NAMES) == []


def test_inside_the_names_are_mapped_and_after_a_normal_exit_the_file_is_as_before(hosts: Path):
    with _enter(hosts):
        assert marked_lines(hosts.read_text()) == [f"127.0.0.1 {' '.join(BOX_HOST_NAMES)} {MARKER}"]
    assert hosts.read_text() == ORIGINAL


def test_an_exception_inside_still_removes_the_line(hosts: Path):
    with pytest.raises(RuntimeError, match="benchmark broke"), _enter(hosts):
        raise RuntimeError("benchmark broke")
    assert hosts.read_text() == ORIGINAL


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_or_sighup_unwinds_like_ctrl_c_and_the_handlers_are_restored(hosts: Path, signum: int):
    before = signal.getsignal(signum)
    with pytest.raises(Terminated), _enter(hosts):
        os.kill(os.getpid(), signum)
        time.sleep(5)  # the handler raises as soon as the signal arrives
        pytest.fail("the signal did not interrupt the block")
    assert hosts.read_text() == ORIGINAL
    assert signal.getsignal(signum) is before


def test_a_line_left_by_a_killed_run_is_removed_first(hosts: Path, capsys):
    hosts.write_text(with_entries(ORIGINAL, ["api.box.com"]))  # what a SIGKILLed run leaves behind
    with _enter(hosts):
        assert len(marked_lines(hosts.read_text())) == 1
    assert hosts.read_text() == ORIGINAL
    assert "left by an earlier run" in capsys.readouterr().out


def test_a_conflicting_line_refuses_the_run_and_changes_nothing(hosts: Path):
    hosts.write_text(ORIGINAL + "198.51.100.4 upload.box.com\n")
    before = hosts.read_text()
    with pytest.raises(HostsFileError, match="already maps"), _enter(hosts):
        pytest.fail("the block must not run")
    assert hosts.read_text() == before


def test_edits_someone_else_makes_during_the_run_survive_it(hosts: Path):
    with _enter(hosts):
        hosts.write_text(hosts.read_text() + "10.0.0.8 new-host\n")
    assert hosts.read_text() == ORIGINAL + "10.0.0.8 new-host\n"
