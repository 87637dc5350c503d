"""`syncd once` exits the moment nothing is in flight or due (issue 12): right after the last
commit is journaled, with exit 0, and nothing waited for in between. Real `syncd once`
processes against the real emulator; asserted through the order of its log events, never
through its duration."""

from __future__ import annotations

import random
import subprocess
from pathlib import Path
from typing import Any

from tests.daemon.daemon_process import (
    CHUNKED_MIN, DaemonProcess, Watch, assert_exactly_once, config_data, local_files, syncd_command, write_config,
)
from tests.daemon.drops import random_bytes, write_file

ONCE_TIMEOUT = 120


def run_once(config: Path, log_path: Path) -> tuple[int, list[dict[str, Any]]]:
    """`syncd once --config CONFIG`, its output to `log_path`; its exit code and JSON log events."""
    with open(log_path, "wb") as log:
        code = subprocess.run(syncd_command("once", "--config", str(config)), stdout=log, stderr=subprocess.STDOUT,
                              timeout=ONCE_TIMEOUT, check=False).returncode
    return code, DaemonProcess(config, log_path).events()


def names(events: list[dict[str, Any]]) -> list[str]:
    return [event["event"] for event in events]


def test_once_exits_0_right_after_the_last_commit_is_journaled(tmp_path: Path, emulator) -> None:
    inbox = tmp_path / "inbox"
    rng = random.Random(12)
    for index in range(6):
        write_file(inbox / f"small-{index}.txt", random_bytes(rng, 2000 + index))
    write_file(inbox / "large.bin", random_bytes(rng, CHUNKED_MIN + 1000))  # a chunked upload among them
    config = write_config(tmp_path / "syncd.yaml", config_data(emulator, tmp_path / "journal.db", [Watch(inbox)]))

    code, events = run_once(config, tmp_path / "once.log")

    order = names(events)
    assert code == 0, order
    commits = [i for i, name in enumerate(order) if name == "upload_committed"]
    assert len(commits) == 7, order
    # The commit that emptied the pipeline is followed by the exit itself: no idle wait, no tick,
    # nothing else in between.
    assert order[commits[-1] + 1:] == ["once_finished", "daemon_stopping", "daemon_stopped"], order[commits[-1]:]
    assert events[-1]["uploaded"] == 7 and events[-1].get("pending", 0) == 0
    assert_exactly_once(emulator, local_files(inbox))


def test_once_on_an_empty_folder_exits_0_once_its_scan_is_done(tmp_path: Path, emulator) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    config = write_config(tmp_path / "syncd.yaml", config_data(emulator, tmp_path / "journal.db", [Watch(inbox)]))

    code, events = run_once(config, tmp_path / "once.log")

    order = names(events)
    assert code == 0, order
    assert order.index("scan_finished") < order.index("once_finished") < order.index("daemon_stopping"), order
    assert not {"file_ready", "upload_started", "upload_committed"} & set(order)


def test_once_with_after_upload_delete_exits_once_the_action_is_done(tmp_path: Path, emulator) -> None:
    """The after-upload action is part of "nothing due": once waits for it, then exits 0 at once."""
    inbox = tmp_path / "inbox"
    rng = random.Random(7)
    for index in range(3):
        write_file(inbox / f"doc-{index}.txt", random_bytes(rng, 500))
    expected = local_files(inbox)
    config = write_config(tmp_path / "syncd.yaml", config_data(
        emulator, tmp_path / "journal.db", [Watch(inbox, options={"after_upload": "delete"})]))

    code, events = run_once(config, tmp_path / "once.log")

    order = names(events)
    assert code == 0, order
    deleted = [i for i, name in enumerate(order) if name == "source_deleted"]
    assert len(deleted) == 3, order
    assert max(deleted) < order.index("once_finished"), order
    assert list(inbox.iterdir()) == []
    assert_exactly_once(emulator, expected)
