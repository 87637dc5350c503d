"""The benchmark suite: runs every benchmark, turns their results into one table of figures,
writes ``bench/results/<UTC date>.json`` and regenerates ``docs/BENCHMARKS.md``.

Each benchmark module keeps its own measurement (and its own ``python -m bench.X``
command); this module only selects, runs and reports them. A benchmark that fails
is recorded with its error and the suite goes on: one broken benchmark must not
cost the figures of the others.
"""

from __future__ import annotations

import importlib
import json
import math
import re
import shlex
import time
import traceback
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.emulator import SCALED_DAEMON_UPLOADS_PER_MINUTE, SCALED_UPLOADS_PER_MINUTE
from bench.report import REPO_ROOT, RESULTS_DIR, machine

MIB = 1024 * 1024
DOCS_DIR = REPO_ROOT / "docs"
BENCHMARKS_MD = DOCS_DIR / "BENCHMARKS.md"
BURST_SECONDS = 2.0  # bench.small_files leaves its first seconds of commits out of the sustained rate
CHAOS_COUNTS = ("lost", "duplicated", "corrupted", "still_pending", "extra")
FUZZ_COUNTS = ("lost", "duplicated", "partial", "leaked")


@dataclass(frozen=True)
class Figure:
    """One row of the table: a measured value beside the baseline it is compared with.

    ``ratio`` is value / baseline unless the benchmark defines it otherwise (e.g. the
    WAN speed-up is 1-part time / 4-parts time); ``met`` says whether ``target`` holds
    (None when the figure has no target).
    """

    benchmark: str
    name: str
    value: float
    unit: str
    baseline: float | None
    baseline_label: str
    ratio: float | None
    target: str
    met: bool | None
    command: str


@dataclass
class BenchmarkOutcome:
    """What running one benchmark gave: its raw result or the error that stopped it, and when it ran
    (an ``--only`` rerun keeps the other benchmarks' outcomes, measured on earlier days)."""

    name: str
    seconds: float
    result: dict[str, Any] | None = None
    error: str | None = None
    date: str | None = None


@dataclass
class SuiteReport:
    """Everything one ``python -m bench all`` wrote."""

    date: str
    command: str
    quick: bool
    machine: dict[str, Any]
    outcomes: list[BenchmarkOutcome] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    plots: dict[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------- the benchmarks


@dataclass(frozen=True)
class Benchmark:
    """One benchmark of the suite: `bench.<module>.<function>(quick=…, **options)`."""

    module: str
    function: str = "run"
    options: dict[str, Any] = field(default_factory=dict)

    def __call__(self, quick: bool) -> dict[str, Any]:
        # Imported when run: `render`, `--list` and the tests need none of the benchmark modules.
        run = getattr(importlib.import_module(f"bench.{self.module}"), self.function)
        return run(quick=quick, **self.options)


BENCHMARKS: dict[str, Benchmark] = {
    "large": Benchmark("client_upload"),
    "small_files": Benchmark("small_files"),
    "latency": Benchmark("daemon_latency", "run_both"),
    "scale": Benchmark("daemon_scale"),
    "resume": Benchmark("resume"),
    "chaos": Benchmark("chaos"),
    "chaos_restart": Benchmark("chaos", options={"restart_emulator": True}),
    "fuzz_drops": Benchmark("fuzz_drops"),
    "emulator": Benchmark("emulator_throughput"),
    "versus_rclone": Benchmark("versus_rclone"),
    "delta_versions": Benchmark("delta_versions"),
    "multi_host": Benchmark("multi_host"),
}


# --------------------------------------------------------------------------- figures


def _ratio(value: float | None, baseline: float | None) -> float | None:
    if value is None or baseline is None or baseline == 0 or math.isnan(value) or math.isnan(baseline):
        return None
    return value / baseline


def _size_label(size: int) -> str:
    return f"{size / MIB / 1024:g} GiB" if size >= 1024 * MIB else f"{size / MIB:g} MiB"


def _large_figures(result: dict[str, Any]) -> list[Figure]:
    command = result.get("command", "python -m bench all --only large")
    rows = []
    for loop in result.get("loopback", []):
        size = _size_label(loop["size"])
        floor_mb_s = loop["size"] / 1e6 / loop["sha1sum_twice_s_median"]
        ratio = loop["ratio_median"]
        rows.append(Figure("large", f"{size} chunked upload, loopback, 4 parts", loop["mb_per_s_median"], "MB/s",
                           floor_mb_s, "sha1sum twice (MB/s)", ratio, "time <= 2x sha1sum twice", ratio <= 2.0, command))
    for wan in result.get("wan", []):
        size = _size_label(wan["size"])
        one_mb_s = wan["size"] / 1e6 / wan["one_part_s_median"]
        rows.append(Figure("large", f"{size} chunked upload, WAN {wan['latency_ms']} ms, "
                           f"{wan['bandwidth_per_connection'] / 1e6:g} MB/s per connection, 4 parts",
                           wan["four_parts_mb_per_s_median"], "MB/s", one_mb_s, "1 part (MB/s)", wan["speedup_median"],
                           "4 parts >= 3.5x 1 part", wan["speedup_median"] >= 3.5, command))
    rss = result.get("rss")
    if rss:
        limit = rss["limit_mib"]
        rows.append(Figure("large", f"peak client RSS, {_size_label(rss['size'])} file, 4 x 32 MiB parts",
                           rss["peak_mib_median"], "MiB", limit, "limit 150 MiB + 4 parts", _ratio(rss["peak_mib_median"], limit),
                           f"< {limit:g} MiB", rss["peak_mib_median"] < limit, command))
    return rows


def _small_files_figures(result: dict[str, Any]) -> list[Figure]:
    command = result["command"]
    requests = sum(run["requests"] for run in result["raw"]) / max(1, len(result["raw"]))
    return [
        Figure("small_files", f"{result['files']} x 64 KiB files through the daemon, sustained", result["files_per_s"],
               "files/s", result["ceiling_files_per_s"], "rate-limit ceiling (files/s)", result["fraction_of_ceiling"],
               ">= 0.95 of ceiling", result["fraction_of_ceiling"] >= result["target_fraction"], command),
        Figure("small_files", "429 answers from the emulator", result["responses_429"], "requests", requests,
               "all requests", result["share_429"], "< 1% of requests", result["share_429"] < result["target_share_429_below"],
               command),
    ]


def _latency_figures(result: dict[str, Any]) -> list[Figure]:
    target = result["target_p95_s"]
    rows = []
    for key, label in (("p50_s", "p50"), ("p95_s", "p95"), ("p99_s", "p99")):
        is_target = key == "p95_s"
        rows.append(Figure("latency", f"close-to-commit {label}, small files at {result['rate_per_s']:g}/s, "
                           f"Box's upload limit x10", result[key], "s", target, "settle + 1 s", _ratio(result[key], target),
                           f"<= {target:g} s" if is_target else "-", result[key] <= target if is_target else None,
                           result["command"]))
    box = result.get("at_box_limit")
    if box:
        # No target: 5 files/s is more than Box lets one user upload, so this shows the backlog.
        rows += [Figure("latency", f"close-to-commit {label} at Box's own limit (daemon default "
                        f"{box['uploads_per_minute']}/min), {box['rate_per_s']:g} files/s", box[key], "s", target,
                        "settle + 1 s", _ratio(box[key], target), "- (above 4 uploads/s)", None, box["command"])
                 for key, label in (("p50_s", "p50"), ("p95_s", "p95"))]
    return rows


def _scale_figures(result: dict[str, Any]) -> list[Figure]:
    warm, cold, command = result["warm"], result["cold"], result["command"]
    files = f"{result['files']:,} files"
    return [
        Figure("scale", f"start-up, warm journal, {files}", warm["startup_s"], "s", warm["target_s"], "target",
               _ratio(warm["startup_s"], warm["target_s"]), f"< {warm['target_s']} s", warm["startup_s"] < warm["target_s"],
               command),
        Figure("scale", f"RSS watching {files}", warm["rss_watching_mib"], "MiB", warm["target_rss_mib"], "target",
               _ratio(warm["rss_watching_mib"], warm["target_rss_mib"]), f"< {warm['target_rss_mib']} MiB",
               warm["rss_watching_mib"] < warm["target_rss_mib"], command),
        Figure("scale", f"cold journal: every one of {files} recorded", cold["all_recorded_s"], "s", warm["startup_s"],
               "warm start-up (s)", _ratio(cold["all_recorded_s"], warm["startup_s"]), "-", None, command),
        Figure("scale", f"peak RSS, cold journal, {files}", cold["peak_rss_mib"], "MiB", warm["target_rss_mib"], "target",
               _ratio(cold["peak_rss_mib"], warm["target_rss_mib"]), f"< {warm['target_rss_mib']} MiB",
               cold["peak_rss_mib"] < warm["target_rss_mib"], command),
    ]


def _resume_figures(result: dict[str, Any]) -> list[Figure]:
    resent, bound = float(result["bytes_resent"]), float(result["bound"])
    return [Figure("resume", f"bytes sent again after SIGKILL at 50% of {_size_label(result['size'])}", resent / MIB, "MiB",
                   bound / MIB, "bound (MiB)", result.get("ratio", _ratio(resent, bound)), "<= bound", resent <= bound,
                   result["command"])]


def _chaos_figures(name: str, result: dict[str, Any]) -> list[Figure]:
    label = "chaos, emulator restarted" if name == "chaos_restart" else "chaos"
    setting = f"{result['files']} files, {result['kills']} SIGKILLs"
    return [Figure(name, f"{label}: {count} ({setting})", float(result[count]), "files", None, "-", None, "0",
                   result[count] == 0, result["command"]) for count in CHAOS_COUNTS if count in result]


def _fuzz_figures(result: dict[str, Any]) -> list[Figure]:
    setting = f"{result['sequences']} sequences, {result['operations']} operations"
    return [Figure("fuzz_drops", f"fuzzed drops: {count} ({setting})", float(result[count]), "files", None, "-", None,
                   "0", result[count] == 0, result["command"]) for count in FUZZ_COUNTS]


def _emulator_figures(result: dict[str, Any]) -> list[Figure]:
    command = result["command"]
    return [
        Figure("emulator", "emulator: 8 MiB parts, 4 connections", result["parts_mb_per_s"], "MB/s", 300.0, "target",
               _ratio(result["parts_mb_per_s"], 300.0), ">= 300 MB/s", result["parts_mb_per_s"] >= 300, command),
        Figure("emulator", "emulator: 64 KiB direct uploads, 8 clients", result["direct_uploads_per_s"], "uploads/s", 200.0,
               "target", _ratio(result["direct_uploads_per_s"], 200.0), ">= 200/s", result["direct_uploads_per_s"] >= 200,
               command),
        Figure("emulator", "emulator: peak RSS", result["peak_rss_mib"], "MiB", 150.0, "target",
               _ratio(result["peak_rss_mib"], 150.0), "< 150 MiB", result["peak_rss_mib"] < 150, command),
    ]


def _versus_rclone_figures(result: dict[str, Any]) -> list[Figure]:
    command = result["command"]
    rows = []
    for workload in result["workloads"]:
        label, floor, targets, tools = workload["label"], workload["floor_s"], workload["targets"], workload["tools"]
        floor_label = f"{workload['floor_label']} (s)"
        rclone, once, daemon = (tools[tool]["seconds"] for tool in ("rclone", "syncd_once", "syncd_run"))
        ratio = targets["rclone_ratio"]
        if "floor_plus_s" in targets:
            floor_target, floor_met = f"<= floor + {targets['floor_plus_s']:g} s", once <= floor + targets["floor_plus_s"]
        elif "floor_ratio" in targets:
            floor_target, floor_met = f"<= {targets['floor_ratio']:g}x floor", once <= floor * targets["floor_ratio"]
        else:
            floor_target, floor_met = "-", None
        rows += [
            Figure("versus_rclone", f"{label}: rclone copy", rclone, "s", floor, floor_label, _ratio(rclone, floor), "-",
                   None, command),
            Figure("versus_rclone", f"{label}: syncd once vs rclone", once, "s", rclone, "rclone copy (s)",
                   _ratio(once, rclone), f"<= {ratio:g}x rclone", once <= ratio * rclone, command),
            Figure("versus_rclone", f"{label}: syncd once vs floor", once, "s", floor, floor_label, _ratio(once, floor),
                   floor_target, floor_met, command),
            Figure("versus_rclone", f"{label}: syncd run, drop to last commit, vs rclone", daemon, "s", rclone,
                   "rclone copy (s)", _ratio(daemon, rclone), "-", None, command),
            Figure("versus_rclone", f"{label}: syncd run, drop to last commit, vs floor", daemon, "s", floor, floor_label,
                   _ratio(daemon, floor), "-", None, command),
        ]
        if "max_429" in targets:
            limit = targets["max_429"]
            rows += [Figure("versus_rclone", f"{label}: 429 answers to {tool.replace('_', ' ')}",
                            tools[tool]["responses_429"], "responses", None, "-", None,
                            "-" if tool == "rclone" else f"<= {limit}",
                            None if tool == "rclone" else tools[tool]["responses_429"] <= limit, command)
                     for tool in ("rclone", "syncd_once", "syncd_run")]
    startup = result["startup"]
    rows.append(Figure("versus_rclone", "start-up: syncd once on an empty folder", startup["syncd_once_s"], "s",
                       startup["rclone_s"], "rclone copy, empty folder (s)",
                       _ratio(startup["syncd_once_s"], startup["rclone_s"]), "-", None, command))
    trickle = result["close_to_commit"]
    target = trickle["target_p95_s"]
    rows.append(Figure("versus_rclone", f"close-to-commit p95, syncd run defaults, 64 KiB files at "
                       f"{trickle['rate_per_s']:g}/s, Box's limit", trickle["p95_s"], "s", target, "settle + 1 s",
                       _ratio(trickle["p95_s"], target), f"<= {target:g} s", trickle["p95_s"] <= target, command))
    return rows


def _delta_versions_figures(result: dict[str, Any]) -> list[Figure]:
    command, size = result["command"], _size_label(result["size"])
    rows = []
    for link, figures in result["links"].items():
        where = "loopback" if link == "loopback" else f"WAN {WAN_SETTING}"
        full_s, full_bytes = figures["baseline_seconds_median"], figures["baseline_bytes_median"]
        for share in figures["shares"]:
            what = f"{size} new version, {share['share']:.0%} of {figures['total_parts']} parts changed, {where}"
            rows.append(Figure("delta_versions", f"{what}: time", share["seconds_median"], "s", full_s,
                               "full re-upload (s)", share["ratio_time_median"], "-", None, command))
            rows.append(Figure("delta_versions", f"{what}: part bytes sent", share["bytes_sent_median"] / MIB, "MiB",
                               full_bytes / MIB, "full re-upload (MiB)", share["ratio_bytes_median"], "-", None, command))
    return rows


def _multi_host_figures(result: dict[str, Any]) -> list[Figure]:
    command = result["command"]
    setups = {"sqlite_1_host": "one host, SQLite", "postgres_1_host": "one host, PostgreSQL",
              "postgres_2_hosts": "two hosts, PostgreSQL"}
    rows = []
    for row in result["ingest"]:
        base = next(r for r in result["ingest"] if r["workload"] == row["workload"] and r["setup"] == "sqlite_1_host")
        size = f"{row['size'] // 1024} KiB" if row["size"] < MIB else _size_label(row["size"])
        what = f"{row['files']} x {size} files, {setups[row['setup']]}"
        key, unit = ("files_per_s", "files/s") if row["workload"] == "small" else ("mb_per_s", "MB/s")
        rows.append(Figure("multi_host", what, row[key], unit, base[key], f"one host, SQLite ({unit})",
                           row["ratio_to_sqlite"], "-", None, command))
    takeover = result["takeover"]
    what = f"takeover of a {_size_label(takeover['size'])} upload, SIGKILL after part {takeover['parts_acknowledged']}"
    rows += [
        Figure("multi_host", f"{what}: kill to claim_taken_over", takeover["kill_to_takeover_s"], "s",
               takeover["bound_takeover_s"], "lease + one part (s)",
               _ratio(takeover["kill_to_takeover_s"], takeover["bound_takeover_s"]), "-", None, command),
        Figure("multi_host", f"{what}: kill to upload_committed", takeover["kill_to_commit_s"], "s",
               takeover["bound_commit_s"], "lease + one part + the rest (s)",
               _ratio(takeover["kill_to_commit_s"], takeover["bound_commit_s"]), "-", None, command),
    ]
    return rows


#: The WAN link of bench.client_upload, as the delta benchmark names it.
WAN_SETTING = "40 ms, 12 MB/s per connection"


def figures_of(name: str, result: dict[str, Any]) -> list[Figure]:
    """The table rows for one benchmark's result dict."""
    if name == "large":
        return _large_figures(result)
    if name == "small_files":
        return _small_files_figures(result)
    if name == "latency":
        return _latency_figures(result)
    if name == "scale":
        return _scale_figures(result)
    if name == "resume":
        return _resume_figures(result)
    if name in ("chaos", "chaos_restart"):
        return _chaos_figures(name, result)
    if name == "fuzz_drops":
        return _fuzz_figures(result)
    if name == "emulator":
        return _emulator_figures(result)
    if name == "versus_rclone":
        return _versus_rclone_figures(result)
    if name == "delta_versions":
        return _delta_versions_figures(result)
    if name == "multi_host":
        return _multi_host_figures(result)
    raise ValueError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}")


# --------------------------------------------------------------------------- machine and rendering


METHOD_NOTES = {
    "large": "one file uploaded by `syncd.box.Uploader` (4 parts in flight) to a fresh emulator per run; the "
             "baseline is `sha1sum` reading the same (page-cached) file twice, timed in the same run. WAN: emulator "
             "`--latency-ms 40 --bandwidth 12000000` (per connection), the same file with 4 parts and with 1. Peak RSS: "
             "a child process uploading a sparse file with 32 MiB parts (VmHWM).",
    "small_files": "`bench/small_files.py`: 64 KiB files dropped at once into a folder a `syncd run` daemon watches; "
                   f"emulator `--upload-rate-limit {SCALED_UPLOADS_PER_MINUTE}`, daemon `box.uploads_per_minute: "
                   f"{SCALED_DAEMON_UPLOADS_PER_MINUTE}`. Sustained rate: commits from {BURST_SECONDS:g} s after the "
                   f"first (start-up and the first burst left out) to the last. 429s "
                   "from the emulator's `/_emulator/stats`.",
    "latency": "`bench/daemon_latency.py`: small files written at 5/s; time from each file's close to the daemon's "
               "`upload_committed` log event, with default readiness settings. 5 files/s is more than Box lets one "
               "user upload (240/min = 4/s), so the figure with the target uses Box's limit scaled 10x (emulator "
               f"`--upload-rate-limit {SCALED_UPLOADS_PER_MINUTE}`, daemon `box.uploads_per_minute: "
               f"{SCALED_DAEMON_UPLOADS_PER_MINUTE}`), as the small-files benchmark does; the rows at Box's own limit "
               "keep the daemon's default (230/min) and show the backlog that any client honouring the limit must build.",
    "scale": "`bench/daemon_scale.py`: warm = journal already records every file as uploaded, time to the start-up "
             "scan's end; cold = no journal, time until every file is in the journal.",
    "resume": "`bench/resume.py`: the daemon is SIGKILLed once half of a chunked upload reached the emulator; bytes "
              "the emulator received again after the restart, against the bound (parts in flight).",
    "chaos": "`bench/chaos.py`: SIGKILLs at random moments over a mixed ingestion with emulator faults; "
             "`bench/verifier.py` then compares every local file with Box through the API.",
    "chaos_restart": "the same, with the emulator itself killed and restarted during the run.",
    "fuzz_drops": "`bench/fuzz_drops.py`: seeded sequences of create/write (in pieces, held open longer than "
                  "settle)/append/rename/delete/truncate/chmod/symlink (inside, and to a secret outside the root), "
                  "each in its own folder, 25 at a time, against one `syncd run` daemon; then every version of every "
                  "Box file is read through the API. lost: a final file not in Box with its final SHA-1 (or a final "
                  "link neither in Box nor parked in `syncd status`); partial: a version that is no state the files "
                  "had between two operations; duplicated: the same content twice in a row, or a name never used; "
                  "leaked: the secret's bytes.",
    "emulator": "`bench/emulator_throughput.py`: the emulator alone (parts, direct uploads, streamed upload, RSS).",
    "versus_rclone": "`bench/versus_rclone.py` (issue 12), run as root: syncd and rclone 1.60 (Debian's package, "
                     "installed by the benchmark) against the same emulator, one fresh emulator data directory and "
                     "syncd journal per run. The emulator serves HTTPS on 127.0.0.1:443 (`--tls-self-signed`, "
                     "`--latency-ms 40`); Box's host names point at it through one marked /etc/hosts line that the "
                     "benchmark removes when it ends; rclone trusts its CA through `SSL_CERT_FILE`, syncd through "
                     "`REQUESTS_CA_BUNDLE`. rclone: `rclone copy SRC box:bench --bind 127.0.0.1` with an rclone "
                     "config holding an OAuth pair minted by the emulator (defaults otherwise: 4 transfers, 8 "
                     "checkers, no `--tpslimit`; `--bind` only keeps it on this machine). syncd: `syncd once` with "
                     "a config naming Box's URLs, the developer token, the journal, the watch and JSON logs; for the "
                     "64 KiB files with limits lifted also `box.uploads_per_minute` and `box.calls_per_minute` "
                     "100,000 (rclone has no limit to lift, the emulator enforces none). Under Box's limit the "
                     "emulator has `--upload-rate-limit 240` and both tools their defaults; 429s are the emulator's "
                     "own counts. Times: each tool's process wall time (start-up included) to upload into an empty "
                     "folder `bench`, files whose ctime is more than settle + 1 s old; every upload is checked "
                     "(names and SHA-1s in Box) before its time counts. `syncd run`: daemon started on an empty "
                     "folder, the files renamed into it, time from the first rename to the last `upload_committed`. "
                     "Floors: one large file, the same file pushed through the same origin by `bench/raw_upload.py` "
                     "(session, parts with 4 in flight, commit, one read pass), measured in the same run; 64 KiB files, "
                     "ceil(files / connections) x 40 ms, over the connections syncd uploads small files on (its "
                     "small-file lane and general lane: 8 + 4 by default); under Box's limit, the window's: 60 s per full window of "
                     "240 after the first, plus the last batch's round trips. Start-up: `syncd once` and `rclone copy` "
                     "on an empty folder. Close-to-commit: `syncd run` with defaults, 64 KiB files written in place "
                     "at 2/s, each file's close to its `upload_committed`. Medians of 3 runs (5 for the 64 KiB files "
                     "without limits and the start-up); tools take turns within a run, in a rotating order.",
    "delta_versions": "`bench/delta_versions.py`: a file of random bytes uploaded once (32 MiB parts, 4 in flight), "
                      "then, on the same emulator, a full re-upload of a new version (`Uploader(delta=False)`: the "
                      "baseline, timed in the same run) and new versions with 0/1/10/100 % of the parts rewritten "
                      "(4 KiB in each chosen part, at least one part above 0 %), each planned part by part and "
                      "sending only the misses. Part bytes from the emulator's own counter; loopback, and the WAN "
                      "setting of `large`. 0 % is Box's \"file did not change\": no version is made.",
    "multi_host": "`bench/multi_host.py` (issue 16): the same drop (64 KiB files; then 128 MiB files) renamed at once "
                  "into a folder watched by one host on a SQLite journal (the baseline, same run), one host on a "
                  "PostgreSQL journal, and two hosts on it (each its own `syncd run`, polling observer, one "
                  "PostgreSQL 15 cluster started by the benchmark with fsync on), a fresh emulator each, rate limits "
                  "lifted; time from the rename to the last `upload_committed`, every run checked through Box's API. "
                  "Takeover: two hosts, one chunked file with 8 MiB parts at 8 MiB/s per connection, the uploading "
                  "host SIGKILLed after its 3rd acknowledged part; times from the kill to the other host's "
                  "`claim_taken_over` and `upload_committed`, against the lease plus one part (the dead host's median "
                  "time between part acknowledgements times its 2 parts in flight), plus, for the commit, the parts "
                  "it had no answer for at its rate.",
}


def _number(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if value == 0 or abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def _met(met: bool | None) -> str:
    return {True: "yes", False: "**no**", None: "-"}[met]


def render_markdown(report: SuiteReport) -> str:
    """docs/BENCHMARKS.md: the machine line, one table of every figure, errors, and the plots."""
    m = report.machine
    lines = [
        "# Benchmarks",
        "",
        "Generated by `python -m bench all` (do not edit by hand; rerun it). Every figure is the",
        "median of several runs; ratios are taken within one run. Baseline and target columns",
        "say what each figure is compared with.",
        "",
        f"- **Date**: {report.date}" + (" (quick run)" if report.quick else ""),
        (f"- **Machine**: {m.get('cores')} cores, {m.get('memory_gib')} GiB memory, Python {m.get('python')}, "
        f"{m.get('platform')}; 1-min load average at start {m.get('load_average_1m')}"),
        f"- **Command**: `{report.command}`",
        "",
        "| benchmark | figure | value | unit | baseline | baseline value | ratio | target | met | command |",
        "|---|---|---:|---|---|---:|---:|---|---|---|",
    ]
    for f in report.figures:
        lines.append(f"| {f.benchmark} | {f.name} | {_number(f.value)} | {f.unit} | {f.baseline_label} | "
                     f"{_number(f.baseline)} | {_number(f.ratio)} | {f.target} | {_met(f.met)} | `{f.command}` |")
    failed = [outcome for outcome in report.outcomes if outcome.error]
    if failed:
        lines += ["", "## Benchmarks that did not run", ""]
        lines += [f"- **{outcome.name}**: {outcome.error.strip().splitlines()[-1]}" for outcome in failed]
    lines += ["", "## Time per benchmark", ""]
    lines += [f"- {outcome.name}: {outcome.seconds:.0f} s" + (f", run {outcome.date[:10]}" if outcome.date else "")
              for outcome in report.outcomes]
    ran = [outcome.name for outcome in report.outcomes if outcome.name in METHOD_NOTES]
    if ran:
        lines += ["", "## How each figure is measured", ""]
        lines += [f"- **{name}**: {METHOD_NOTES[name]}" for name in ran]
    if report.plots:
        lines += ["", "## Plots", ""]
        for title, path in report.plots.items():
            lines += [f"![{title}]({path})", ""]
    return "\n".join(lines).rstrip() + "\n"


def report_json(report: SuiteReport) -> dict[str, Any]:
    """The results file: every figure, every benchmark's raw result, the machine and the command."""
    return {
        "date": report.date,
        "command": report.command,
        "quick": report.quick,
        "machine": report.machine,
        "figures": [asdict(figure) for figure in report.figures],
        "benchmarks": {o.name: {"seconds": round(o.seconds, 1), "result": o.result, "error": o.error, "date": o.date}
                       for o in report.outcomes},
        "plots": report.plots,
    }


# --------------------------------------------------------------------------- running


def run_suite(names: Sequence[str], *, quick: bool, command: str) -> SuiteReport:
    """Run the named benchmarks in order (each against its own fresh emulator) and collect the figures."""
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown:
        raise ValueError(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
    report = SuiteReport(date=datetime.now(UTC).isoformat(timespec="seconds"), command=command, quick=quick,
                         machine=machine())
    for name in names:
        print(f"== {name}", flush=True)
        started, date = time.monotonic(), datetime.now(UTC).isoformat(timespec="seconds")
        try:
            result = BENCHMARKS[name](quick)
            outcome = BenchmarkOutcome(name, time.monotonic() - started, result=result, date=date)
            report.figures += figures_of(name, result)
        except Exception:  # noqa: BLE001 -- record and go on: the other benchmarks' figures still count
            outcome = BenchmarkOutcome(name, time.monotonic() - started, error=traceback.format_exc(), date=date)
            print(f"   {name} failed: {outcome.error.strip().splitlines()[-1]}", flush=True)
        report.outcomes.append(outcome)
        print(f"   {name}: {outcome.seconds:.0f} s", flush=True)
    return report


def write_outputs(report: SuiteReport, *, results_dir: Path = RESULTS_DIR, docs_dir: Path = DOCS_DIR) -> tuple[Path, Path]:
    """Draw the plots, then write the results JSON and docs/BENCHMARKS.md; returns (json path, markdown path)."""
    from bench import plots

    docs_dir.mkdir(parents=True, exist_ok=True)
    results = {o.name: o.result for o in report.outcomes if o.result}
    latency = results.get("latency", {}).get("latencies_s")
    if latency:
        plots.latency_plot(latency, docs_dir / "latency.png", rate=results["latency"]["rate_per_s"])
        report.plots["Close-to-commit latency"] = "latency.png"
    samples = results.get("large", {}).get("throughput_samples")
    if samples:
        plots.throughput_plot(samples, docs_dir / "throughput.png", size=results["large"]["throughput_size"])
        report.plots["Throughput over time, large-file upload"] = "throughput.png"
    results_dir.mkdir(parents=True, exist_ok=True)
    json_path = results_path(report.date, quick=report.quick, results_dir=results_dir)
    json_path.write_text(json.dumps(report_json(report), indent=2) + "\n")
    markdown_path = docs_dir / "BENCHMARKS.md"
    markdown_path.write_text(render_markdown(report))
    return json_path, markdown_path


def results_path(date: str, *, quick: bool, results_dir: Path = RESULTS_DIR) -> Path:
    """bench/results/<UTC date>.json, or <date>-quick.json: a quick run never replaces full-size figures."""
    return results_dir / f"{date[:10]}{'-quick' if quick else ''}.json"


def latest_results_path(*, quick: bool, results_dir: Path = RESULTS_DIR) -> Path | None:
    """The newest suite results file of a kind (full or quick) in `results_dir`, or None: what an
    ``--only`` rerun completes, today's file or the last day's, so the table keeps every benchmark."""
    pattern = re.compile(r"\d{4}-\d\d-\d\d" + ("-quick" if quick else "") + r"\.json")
    found = sorted(path.name for path in results_dir.glob("*.json") if pattern.fullmatch(path.name)) \
        if results_dir.is_dir() else []
    return results_dir / found[-1] if found else None


def merge_reports(earlier: SuiteReport, later: SuiteReport) -> SuiteReport:
    """``earlier`` with the benchmarks ``later`` ran replaced by its outcomes (an ``--only`` rerun
    completes the day's table instead of replacing it with a one-benchmark table)."""
    rerun = {outcome.name: outcome for outcome in later.outcomes}
    kept = [outcome for outcome in earlier.outcomes if outcome.name not in rerun]
    order = list(BENCHMARKS)
    outcomes = sorted([*kept, *rerun.values()], key=lambda o: order.index(o.name) if o.name in order else len(order))
    merged = SuiteReport(date=later.date, command=f"{earlier.command}; then {later.command}", quick=later.quick,
                         machine=later.machine, outcomes=outcomes)
    for outcome in outcomes:
        if outcome.result:
            merged.figures += figures_of(outcome.name, outcome.result)
    return merged


def report_from_json(saved: dict[str, Any]) -> SuiteReport:
    """A report rebuilt from a results file, its figures recomputed from the raw results
    (so a change to the table's layout needs no rerun of the benchmarks)."""
    report = SuiteReport(date=saved["date"], command=saved["command"], quick=saved["quick"], machine=saved["machine"],
                         plots=dict(saved.get("plots", {})))
    for name, entry in saved["benchmarks"].items():
        # Files written before outcomes carried their date: each ran on the file's date.
        outcome = BenchmarkOutcome(name, entry["seconds"], result=entry.get("result"), error=entry.get("error"),
                                   date=entry.get("date") or saved["date"])
        report.outcomes.append(outcome)
        if outcome.result:
            report.figures += figures_of(name, outcome.result)
    return report


class ResultsFileError(ValueError):
    """A results file that is missing, not JSON, or written by a version of the suite with other fields."""


def load_report(path: Path) -> SuiteReport:
    """The report saved in `path`; ResultsFileError says why it cannot be read and what to do."""
    try:
        return report_from_json(json.loads(path.read_text()))
    except OSError as error:
        raise ResultsFileError(f"cannot read {path}: {error.strerror}") from error
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise ResultsFileError(
            f"{path} is not a results file this version of the suite can read ({type(error).__name__}: {error}); "
            "rerun the benchmarks without --only to write a new one, or move the file away") from error


def shell_command(argv: Sequence[str]) -> str:
    """The exact command as a user would type it."""
    return "python -m bench " + " ".join(shlex.quote(arg) for arg in argv) if argv else "python -m bench"


__all__ = [
    "BENCHMARKS",
    "BenchmarkOutcome",
    "Figure",
    "ResultsFileError",
    "SuiteReport",
    "figures_of",
    "latest_results_path",
    "load_report",
    "machine",
    "merge_reports",
    "render_markdown",
    "report_from_json",
    "report_json",
    "results_path",
    "run_suite",
    "shell_command",
    "write_outputs",
]
