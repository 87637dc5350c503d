"""The head-to-head benchmark's own logic: floors, phases read from syncd's log, medians, the plan, the
table rows and their targets, the datasets, and the raw upload floor against the real emulator.
The benchmark itself (rclone, port 443, /etc/hosts) never runs here."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bench.emulator import BenchError, EmulatorProcess
from bench.raw_upload import upload_file
from bench.suite import figures_of
from bench.versus_rclone import (
    TARGETS,
    Workload,
    _tool_order,
    make_dataset,
    median_phases,
    once_phases,
    plan_for,
    rate_limit_floor,
    requests_by_endpoint,
    run_phases,
    small_files_floor,
)

T0 = 1_800_000_000.0  # epoch seconds of the fake runs


def _event(name: str, at: float, **fields: Any) -> dict[str, Any]:
    stamp = datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z")
    return {"timestamp": stamp, "level": "info", "event": name, **fields}


# --------------------------------------------------------------------------- floors


def test_small_files_floor_is_one_round_trip_per_file_over_the_connections():
    assert small_files_floor(400, 4, 0.04) == pytest.approx(4.0)
    assert small_files_floor(401, 4, 0.04) == pytest.approx(4.04)  # a started round is a whole round trip
    assert small_files_floor(0, 4, 0.04) == 0.0
    for bad in ((10, 0, 0.04), (-1, 4, 0.04), (10, 4, -0.1)):
        with pytest.raises(ValueError):
            small_files_floor(*bad)


def test_rate_limit_floor_lets_the_first_window_go_at_once_and_waits_a_window_for_each_further_one():
    # Issue 12's workload: 240 at once, the last 60 sixty seconds later, 15 rounds of 4.
    assert rate_limit_floor(300, 240, 4, 0.04) == pytest.approx(60.6)
    # Within one window the limit costs nothing: the floor is the link's.
    assert rate_limit_floor(240, 240, 4, 0.04) == pytest.approx(small_files_floor(240, 4, 0.04))
    assert rate_limit_floor(241, 240, 4, 0.04) == pytest.approx(60.04)
    assert rate_limit_floor(480, 240, 4, 0.04) == pytest.approx(62.4)  # 240 + 240: one window, then 60 rounds
    assert rate_limit_floor(481, 240, 4, 0.04) == pytest.approx(120.04)
    assert rate_limit_floor(0, 240, 4, 0.04) == 0.0
    with pytest.raises(ValueError):
        rate_limit_floor(10, 0, 4, 0.04)


# --------------------------------------------------------------------------- phases and medians


def test_once_phases_split_the_wall_time_at_the_log_events():
    events = [
        _event("config_warning", T0 + 0.3),
        _event("daemon_started", T0 + 0.5),
        _event("file_ready", T0 + 2.5, path="b"), _event("file_ready", T0 + 2.51, path="a"),
        _event("upload_started", T0 + 2.52), _event("upload_started", T0 + 2.53),
        _event("upload_committed", T0 + 3.0), _event("upload_committed", T0 + 5.25),
        _event("daemon_stopping", T0 + 6.75), _event("daemon_stopped", T0 + 6.8),
    ]
    phases = once_phases(events, spawned_at=T0, exited_at=T0 + 6.875)
    assert phases == pytest.approx({"start_up_s": 0.5, "until_first_ready_s": 2.0, "ready_to_upload_s": 0.02,
                                    "uploading_s": 2.73, "idle_before_exit_s": 1.5, "shutdown_s": 0.125})
    assert list(phases) == ["start_up_s", "until_first_ready_s", "ready_to_upload_s", "uploading_s",
                            "idle_before_exit_s", "shutdown_s"]  # in the order they happen


def test_once_phases_on_an_empty_folder_are_start_up_idle_and_shutdown():
    events = [_event("daemon_started", T0 + 0.5), _event("daemon_stopping", T0 + 2.5)]
    assert once_phases(events, T0, T0 + 2.6) == pytest.approx(
        {"start_up_s": 0.5, "idle_before_exit_s": 2.0, "shutdown_s": 0.1})
    with pytest.raises(BenchError, match="daemon_stopping"):
        once_phases(events[:1], T0, T0 + 1)


def test_run_phases_measure_from_the_drop_to_the_last_commit():
    events = [_event("daemon_started", T0 - 5), _event("file_ready", T0 + 0.3), _event("upload_started", T0 + 0.31),
              _event("upload_committed", T0 + 1.0), _event("upload_started", T0 + 0.4), _event("upload_committed", T0 + 0.9)]
    assert run_phases(events, dropped_at=T0) == pytest.approx(
        {"until_first_ready_s": 0.3, "uploading_s": 0.69, "drop_to_last_commit_s": 1.0})
    with pytest.raises(BenchError, match="no file_ready"):
        run_phases(events[:1], T0)


def test_median_phases_take_each_phase_over_the_runs_that_have_it():
    runs = [{"start_up_s": 0.5, "uploading_s": 3.0}, {"start_up_s": 0.7, "uploading_s": 1.0},
            {"start_up_s": 0.6}]
    assert median_phases(runs) == {"start_up_s": 0.6, "uploading_s": 2.0}
    assert median_phases([]) == {}


def test_requests_by_endpoint_add_every_status():
    stats = {"requests": {"files.upload": {"201": 290, "429": 10}, "files.preflight": {"200": 300}}}
    assert requests_by_endpoint(stats) == {"files.preflight": 300, "files.upload": 300}
    assert requests_by_endpoint({}) == {}


def test_tools_take_turns_so_none_always_goes_first():
    tools = ["raw_upload", "rclone", "syncd_once", "syncd_run"]
    orders = [_tool_order(tools, run) for run in range(4)]
    assert all(sorted(order) == sorted(tools) for order in orders)
    assert [order[0] for order in orders] == tools


# --------------------------------------------------------------------------- plan and datasets


def test_plan_full_size_is_the_issues_and_quick_is_smaller_but_still_crosses_the_window():
    full, quick = plan_for(False), plan_for(True)
    assert [(w.key, w.files, w.file_size, w.runs) for w in full.workloads] == [
        ("large", 1, 512 * 1024 * 1024, 3), ("small_lifted", 400, 65536, 5), ("small_box_limit", 300, 65536, 3)]
    assert all(w.runs == 1 for w in quick.workloads) and quick.workloads[0].file_size < full.workloads[0].file_size
    assert quick.workloads[2].files > 240  # fewer than a window's worth would never meet the limit
    assert plan_for(False, runs=2).startup_runs == 5 and {w.runs for w in plan_for(False, runs=2).workloads} == {2}
    lifted, limited = full.workloads[1], full.workloads[2]
    assert lifted.syncd_box_settings == {"uploads_per_minute": 100_000, "calls_per_minute": 100_000}
    assert "--upload-rate-limit" not in lifted.emulator_args
    assert limited.syncd_box_settings == {} and limited.emulator_args == ("--latency-ms", "40", "--upload-rate-limit", "240")
    assert full.workloads[0].syncd_box_settings == {}  # syncd's defaults, as the issue measures


def test_datasets_are_distinct_files_with_their_sha1s(tmp_path: Path):
    small = make_dataset(tmp_path / "small", Workload("w", "w", 3, 4096, 1, box_limit=False))
    assert sorted(small.sha1) == ["small-00000.bin", "small-00001.bin", "small-00002.bin"]
    contents = {name: (small.directory / name).read_bytes() for name in small.sha1}
    assert len(set(contents.values())) == 3 and all(len(c) == 4096 for c in contents.values())
    assert all(hashlib.sha1(c).hexdigest() == small.sha1[name] for name, c in contents.items())
    large = make_dataset(tmp_path / "large", Workload("large", "l", 1, 2 * 1024 * 1024, 1, box_limit=False))
    (name,) = large.sha1
    assert hashlib.sha1((large.directory / name).read_bytes()).hexdigest() == large.sha1[name]


# --------------------------------------------------------------------------- table rows


def _tools(rclone_s: float, once_s: float, run_s: float, rclone_429: int = 0) -> dict[str, Any]:
    return {tool: {"seconds": seconds, "responses_429": rclone_429 if tool == "rclone" else 0, "requests_per_file": 2.0,
                   "phases": {}}
            for tool, seconds in (("rclone", rclone_s), ("syncd_once", once_s), ("syncd_run", run_s))}


FAKE = {
    "command": "python -m bench.versus_rclone --quick",
    "workloads": [
        {"key": "large", "label": "one 512 MiB file", "floor_s": 2.7, "floor_label": "the upload itself (raw client)",
         "targets": TARGETS["large"], "tools": _tools(3.3, 6.4, 5.0)},
        {"key": "small_lifted", "label": "400 x 64 KiB, rate limits lifted", "floor_s": 4.0,
         "floor_label": "ceil(files / connections) x latency", "targets": TARGETS["small_lifted"],
         "tools": _tools(9.1, 5.9, 8.0)},
        {"key": "small_box_limit", "label": "300 x 64 KiB under Box's limit", "floor_s": 60.6,
         "floor_label": "rate-limit window floor", "targets": TARGETS["small_box_limit"],
         "tools": _tools(70.0, 80.6, 79.0, rclone_429=26)},
    ],
    "startup": {"syncd_once_s": 2.5, "rclone_s": 0.2},
    "close_to_commit": {"rate_per_s": 2.0, "p95_s": 0.4, "target_p95_s": 3.0},
}


def test_rows_compare_syncd_with_rclone_and_the_floor_and_mark_the_issues_targets():
    rows = {row.name: row for row in figures_of("versus_rclone", FAKE)}
    big = rows["one 512 MiB file: syncd once vs rclone"]
    assert (big.value, big.baseline, big.target, big.met) == (6.4, 3.3, "<= 0.9x rclone", False)
    assert big.ratio == pytest.approx(6.4 / 3.3)
    upload = rows["one 512 MiB file: syncd once vs floor"]
    assert (upload.baseline, upload.target, upload.met) == (2.7, "<= floor + 0.5 s", False)
    lifted = rows["400 x 64 KiB, rate limits lifted: syncd once vs rclone"]
    assert lifted.met is True and lifted.target == "<= 0.67x rclone"  # 5.9 <= 0.67 x 9.1
    assert rows["400 x 64 KiB, rate limits lifted: syncd once vs floor"].met is True  # 5.9 <= 1.5 x 4.0
    assert rows["300 x 64 KiB under Box's limit: syncd once vs floor"].met is None  # the issue sets no floor target
    assert rows["300 x 64 KiB under Box's limit: 429 answers to syncd once"].met is True
    assert rows["300 x 64 KiB under Box's limit: 429 answers to rclone"].value == 26
    assert rows["300 x 64 KiB under Box's limit: 429 answers to rclone"].met is None
    assert rows["one 512 MiB file: rclone copy"].ratio == pytest.approx(3.3 / 2.7)
    assert rows["one 512 MiB file: syncd run, drop to last commit, vs floor"].met is None
    assert rows["start-up: syncd once on an empty folder"].ratio == pytest.approx(12.5)
    p95 = next(row for name, row in rows.items() if name.startswith("close-to-commit p95"))
    assert (p95.value, p95.baseline, p95.met) == (0.4, 3.0, True)
    assert all(row.command == FAKE["command"] and row.benchmark == "versus_rclone" for row in rows.values())
    assert len(rows) == 3 * 5 + 3 + 2


# --------------------------------------------------------------------------- the raw upload floor


def test_raw_upload_puts_the_file_in_box_with_its_sha1_through_a_session(tmp_path: Path):
    path = tmp_path / "raw.bin"
    path.write_bytes(hashlib.shake_256(b"raw").digest(5 * 1024 * 1024 + 123))
    with EmulatorProcess(tmp_path / "box", "--min-chunked-size", "1000", "--part-sizes", "*=1MiB") as box:
        done = upload_file(box.upload_url, box.token, path, "0", parallel=2)
        stats = box.stats()
        held = {entry["name"]: entry["sha1"] for entry in box.folder_items("0")}
    assert held == {"raw.bin": hashlib.sha1(path.read_bytes()).hexdigest()} and done.sha1_hex == held["raw.bin"]
    assert (done.parts, done.part_size, done.size) == (6, 1024 * 1024, path.stat().st_size)
    # Exactly the protocol's minimum: one session, one request per part, one commit.
    assert stats["requests"] == {"sessions.create": {"201": 1}, "sessions.upload_part": {"200": 6},
                                 "sessions.commit": {"201": 1}}
