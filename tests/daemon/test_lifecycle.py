"""Lifecycle: SIGTERM (once and twice), a second daemon on the same journal, a
corrupt journal, `syncd once` exit codes, and SIGHUP reloads (good and bad)."""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path

import pytest
import yaml

from tests.daemon.daemon_process import (
    CHUNKED_MIN, Watch, assert_exactly_once, box_sha1s, config_data, history_json, local_files, run_syncd, settled_counts,
    status_json, wait_for_box, wait_until, write_config,
)
from tests.daemon.drops import Drop, random_bytes, write_file, write_then_rename


def _setup(tmp_path: Path, emulator, *, watches: list[Watch] | None = None, **top) -> tuple[Path, Path]:
    inbox = tmp_path / "inbox"
    inbox.mkdir(exist_ok=True)
    data = config_data(emulator, tmp_path / "var" / "journal.db", watches or [Watch(inbox)],
                       readiness={"settle": "300ms"}, **top)
    return write_config(tmp_path / "syncd.yaml", data), inbox


def _wait_for_part_bytes(emulator, at_least: int, daemon) -> None:
    wait_until(lambda: emulator.stats()["bytes_received"].get("sessions.upload_part", 0) >= at_least,
               timeout=60, interval=0.05, message=lambda: daemon.tail())


@pytest.mark.parametrize("signals", [1, 2], ids=["sigterm", "sigterm-twice"])
def test_sigterm_exits_0_and_leaves_a_state_the_next_start_finishes_exactly_once(
        tmp_path: Path, emulator_factory, daemon_factory, signals: int):
    # A chunked upload slow enough to be in flight when the signal comes, and longer than shutdown_timeout.
    emulator = emulator_factory("--part-sizes", "*=1MiB", "--bandwidth", "1500000")
    config, inbox = _setup(tmp_path, emulator, shutdown_timeout="1s")
    daemon = daemon_factory(config).start()
    rng = random.Random(signals)
    for i in range(5):
        write_file(inbox / f"small{i}.txt", random_bytes(rng, 1000))
    write_then_rename(inbox, Drop("big.bin", random_bytes(rng, CHUNKED_MIN + 10)))
    _wait_for_part_bytes(emulator, 3_000_000, daemon)

    for _ in range(signals):
        daemon.signal(signal.SIGTERM)
        time.sleep(0.05)
    assert daemon.wait(15) == 0
    # It stopped without waiting the throttled upload out (that would take ~10 s more than the
    # 1 s shutdown_timeout): Box holds no big.bin and has not received all of its bytes.
    assert "big.bin" not in box_sha1s(emulator)
    assert emulator.stats()["bytes_received"].get("sessions.upload_part", 0) < CHUNKED_MIN + 10
    if signals == 1:
        # The chunked upload either stopped at a part boundary (its parts recorded, the row waits as
        # pending) or was still running at shutdown_timeout (the row stays uploading, to be resumed).
        stopped = daemon.events("daemon_stopped")
        assert stopped and stopped[-1]["uploaded"] == 5, daemon.tail()
        paused = [e["path"] for e in daemon.events("upload_paused_for_shutdown")]
        if paused:
            assert paused == ["big.bin"] and (stopped[-1]["pending"], stopped[-1]["uploading"]) == (1, 0)
        else:
            assert (stopped[-1]["pending"], stopped[-1]["uploading"]) == (0, 1), daemon.tail()
            assert daemon.events("shutdown_timeout"), daemon.tail()  # left running, to resume
    else:
        assert "second signal, stopping at once" in daemon.log_text()
    status = status_json(config)
    assert status["daemon_running"] is False and status["daemon_pid"] is None

    emulator.faults(bandwidth=0)
    daemon.start()
    expected = local_files(inbox)
    wait_for_box(emulator, expected, timeout=60, daemon=daemon)
    assert_exactly_once(emulator, expected)
    assert emulator.stats()["requests"]["sessions.create"] == {"201": 1}, "the interrupted upload was not resumed"
    assert daemon.stop() == 0
    assert settled_counts(status_json(config)) == {"uploaded": 6}


def test_a_second_daemon_on_the_same_journal_refuses_to_start_and_names_the_first(
        tmp_path: Path, emulator, daemon_factory):
    config, inbox = _setup(tmp_path, emulator)
    first = daemon_factory(config).start()
    second = daemon_factory(config).start(wait_ready=False)
    assert second.wait(30) == 1
    assert str(first.pid) in second.log_text(), second.log_text()
    # The first one is unaffected.
    write_file(inbox / "still-working.txt", b"yes")
    wait_for_box(emulator, local_files(inbox), timeout=30, daemon=first)
    assert status_json(config)["daemon_pid"] == first.pid
    assert first.stop() == 0


def test_a_corrupt_journal_stops_the_daemon_with_a_clear_message_and_is_left_alone(
        tmp_path: Path, emulator, daemon_factory):
    config, inbox = _setup(tmp_path, emulator)
    daemon = daemon_factory(config).start()
    write_file(inbox / "a.txt", b"a")
    wait_for_box(emulator, local_files(inbox), timeout=30, daemon=daemon)
    assert daemon.stop() == 0
    journal = tmp_path / "var" / "journal.db"
    damaged = b"this is not an SQLite database, a disk went bad" * 100
    journal.write_bytes(damaged)

    daemon.start(wait_ready=False)
    assert daemon.wait(30) == 1
    output = daemon.log_text()
    assert f"journal {journal}" in output and "corrupt" in output and "will not start from an empty journal" in output
    assert "Traceback" not in output
    assert journal.read_bytes() == damaged, "the daemon touched the damaged journal"
    status = run_syncd("status", "--config", str(config))
    assert status.returncode == 1 and "corrupt" in status.stderr


def test_once_exit_codes(tmp_path: Path, emulator):
    config, inbox = _setup(tmp_path, emulator)
    write_file(inbox / "one.txt", b"1")
    write_file(inbox / "deep/two.txt", b"2")
    done = run_syncd("once", "--config", str(config), timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert set(local_files(inbox)) == {"one.txt", "deep/two.txt"}
    assert_exactly_once(emulator, local_files(inbox))

    # A watch whose Box folder does not exist: Box refuses it, its file waits (no attempt spent, not
    # failed) for a later run, and `once` exits 1.
    ghost = tmp_path / "ghost"
    write_file(ghost / "lost.txt", b"lost")
    config, _ = _setup(tmp_path, emulator, watches=[Watch(inbox), Watch(ghost, folder_id="987654321")])
    paused = run_syncd("once", "--config", str(config), timeout=60)
    assert paused.returncode == 1, paused.stdout + paused.stderr
    status = status_json(config)
    assert status["counts"]["pending"] == 1 and status["recent_failures"] == []
    assert "deferred" in [h["event"] for h in history_json(config, "ghost:lost.txt")]

    bad = tmp_path / "bad.yaml"
    bad.write_text("box: {}\nwatches: []\n", encoding="utf-8")
    invalid = run_syncd("once", "--config", str(bad), timeout=60)
    assert invalid.returncode == 2 and "invalid configuration" in invalid.stderr


def test_sighup_adds_a_watch_from_a_good_config_and_keeps_the_old_one_on_a_bad_config(
        tmp_path: Path, emulator, daemon_factory):
    config, inbox = _setup(tmp_path, emulator)
    daemon = daemon_factory(config).start()
    write_file(inbox / "first.txt", b"first")
    wait_for_box(emulator, local_files(inbox), timeout=30, daemon=daemon)

    extra = tmp_path / "extra"
    extra.mkdir()
    data = yaml.safe_load(config.read_text())
    data["watches"].append({"path": str(extra), "folder_id": "0", "name": "extra"})
    write_config(config, data)
    daemon.signal(signal.SIGHUP)
    daemon.wait_for_event("config_reloaded")
    daemon.wait_for_event("watch_started", where=lambda e: e["watch"] == "extra")
    write_file(extra / "from-extra.txt", b"extra")
    wait_for_box(emulator, {"from-extra.txt": local_files(extra)["from-extra.txt"]}, timeout=30, daemon=daemon)

    good = config.read_text()
    config.write_text(good + "\nnot_a_key: 1\n", encoding="utf-8")
    daemon.signal(signal.SIGHUP)
    rejected = daemon.wait_for_event("reload_rejected")
    assert "not_a_key" in rejected["reason"]
    assert daemon.running()
    # The old configuration, both watches, still runs.
    write_file(inbox / "after-bad-reload.txt", b"x")
    write_file(extra / "extra-after-bad-reload.txt", b"y")
    expected = {**local_files(inbox), **local_files(extra)}
    wait_for_box(emulator, expected, timeout=30, daemon=daemon)
    assert_exactly_once(emulator, expected)
    assert daemon.stop() == 0


@pytest.mark.parametrize("auth", [
    {"type": "developer_token", "token": "not-the-emulator-token"},
    {"type": "client_credentials", "client_id": "syncd-emulator-client", "client_secret": "not-the-secret",
     "subject_type": "enterprise", "subject_id": "1234567"},
], ids=["developer-token", "client-credentials"])
def test_refused_credentials_leave_run_degraded_and_probing_and_once_exits_1(
        tmp_path: Path, emulator, daemon_factory, auth: dict):
    inbox = tmp_path / "inbox"
    write_file(inbox / "waiting.txt", b"w")
    config = write_config(tmp_path / "syncd.yaml", config_data(emulator, tmp_path / "var" / "journal.db",
                                                               [Watch(inbox)], auth=auth))
    daemon = daemon_factory(config).start()
    refused = daemon.wait_for_event("box_credentials_refused")
    assert "fix box.auth" in refused["detail"] and "paused" in refused["detail"], daemon.tail()
    # Running, degraded, saying so; probing Box again and again; nothing parked as failed.
    wait_until(lambda: [r["scope"] for r in status_json(config)["box_refusals"]] == ["credentials"], timeout=30,
               message=lambda: f"{status_json(config)}\n{daemon.tail()}")
    check = run_syncd("status", "--config", str(config), "--check")
    assert check.returncode == 2 and "Box refuses credentials" in check.stdout, check.stdout
    wait_until(lambda: len(daemon.events("box_probe_unanswered")) + emulator.stats()["requests"].get(
        "users.me", {}).get("401", 0) + emulator.stats()["requests"].get("oauth.token", {}).get("400", 0) >= 3,
        timeout=30, message=lambda: daemon.tail())
    assert daemon.running()
    assert status_json(config)["counts"]["failed"] == 0
    assert daemon.stop() == 0
    assert "not-the" not in daemon.log_text(), "a secret reached the log"
    # A batch run has no one to wait for: it stops with 1.
    once = run_syncd("once", "--config", str(config), timeout=60)
    assert once.returncode == 1 and "box_credentials_refused" in once.stdout + once.stderr
    assert status_json(config)["counts"]["failed"] == 0
