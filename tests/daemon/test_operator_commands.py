"""The operator's commands on a journal the daemon wrote: `status` (text and
JSON), `history`, `retry` and `forget`, with the daemon stopped and running."""

from __future__ import annotations

import hashlib
from pathlib import Path

from tests.daemon.daemon_process import (
    Watch, assert_exactly_once, config_data, history_json, local_files, run_syncd, settled_counts, status_json,
    wait_until, write_config,
)
from tests.daemon.drops import write_file
from tests.emulator.wire import upload


def test_status_history_retry_and_forget(tmp_path: Path, emulator, daemon_factory):
    inbox, ghost = tmp_path / "inbox", tmp_path / "ghost"
    write_file(inbox / "one.txt", b"1")
    write_file(inbox / "sub/two.txt", b"2")
    write_file(ghost / "lost.txt", b"lost")
    # Box already has another lost.txt where the ghost watch uploads, and its policy is to fail.
    assert upload(emulator, "lost.txt", b"someone else's").status_code == 201
    config = write_config(tmp_path / "syncd.yaml", config_data(
        emulator, tmp_path / "var" / "journal.db", [Watch(inbox), Watch(ghost, options={"conflict": "fail"})],
        readiness={"settle": "300ms"}))
    cfg = str(config)
    assert run_syncd("once", "--config", cfg, timeout=60).returncode == 1  # lost.txt failed

    text = run_syncd("status", "--config", cfg)
    assert text.returncode == 0, text.stderr
    assert "daemon:    not running" in text.stdout
    assert "uploaded 2" in text.stdout and "failed 1" in text.stdout
    assert "[failed] ghost:lost.txt" in text.stdout and "conflict policy is 'fail'" in text.stdout

    history = history_json(config, "ghost:lost.txt")
    assert [h["event"] for h in reversed(history)] == ["arrived", "claimed", "failed"]
    by_local_path = run_syncd("history", "--config", cfg, str(inbox / "sub/two.txt"))
    assert by_local_path.returncode == 0 and "inbox:sub/two.txt  uploaded  uploading -> uploaded" in by_local_path.stdout
    outside = run_syncd("history", "--config", cfg, str(tmp_path / "elsewhere.txt"))
    assert outside.returncode == 2 and "is not inside a watched folder" in outside.stderr
    assert f"inbox ({inbox})" in outside.stderr

    # forget: the next run looks at the file afresh; Box already holds these bytes, so no second copy.
    forgotten = run_syncd("forget", "--config", cfg, "inbox:one.txt")
    assert forgotten.returncode == 0 and "forgotten" in forgotten.stdout
    again = run_syncd("forget", "--config", cfg, "inbox:one.txt")
    assert again.returncode == 1 and "was not in the journal" in again.stdout

    # retry while the daemon runs: it picks the file up at its next claim.
    daemon = daemon_factory(config).start()
    wait_until(lambda: status_json(config)["counts"]["uploaded"] == 2, timeout=30, message=lambda: daemon.tail())
    running = run_syncd("status", "--config", cfg)
    assert f"daemon:    running, pid {daemon.pid}" in running.stdout
    retried = run_syncd("retry", "--config", cfg, "--failed")
    assert retried.returncode == 0 and "1 file(s) made pending again" in retried.stdout
    wait_until(lambda: [h["event"] for h in history_json(config, "ghost:lost.txt")][:3]
               == ["failed", "claimed", "retried"], timeout=30, message=lambda: daemon.tail())
    assert daemon.stop() == 0
    nothing = run_syncd("retry", "--config", cfg, str(inbox / "one.txt"))
    assert nothing.returncode == 1 and "0 file(s)" in nothing.stdout
    assert settled_counts(status_json(config)) == {"uploaded": 2, "failed": 1}
    assert_exactly_once(emulator, {**local_files(inbox), "lost.txt": sha1_of_bytes(b"someone else's")})


def sha1_of_bytes(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()
