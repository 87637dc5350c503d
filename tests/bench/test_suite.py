"""The benchmark suite's reporting: figures, table, results JSON and plots from a small fake
result (no benchmark is run here), and the ``python -m bench`` command line."""

from __future__ import annotations

import importlib
import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.emulator import count_status
from bench.plots import sliding_rates
from bench.small_files import sustained_rate
from bench.suite import (
    BENCHMARKS,
    BenchmarkOutcome,
    ResultsFileError,
    SuiteReport,
    figures_of,
    load_report,
    render_markdown,
    write_outputs,
)

ROOT = Path(__file__).resolve().parents[2]
MIB = 1024 * 1024

FAKE_RESULTS = {
    "large": {
        "command": "python -m bench all --quick",
        "loopback": [{"size": 256 * MIB, "mb_per_s_median": 180.0, "sha1sum_twice_s_median": 1.0, "ratio_median": 1.5}],
        "wan": [{"size": 64 * MIB, "latency_ms": 40, "bandwidth_per_connection": 12_000_000, "one_part_s_median": 6.0,
                 "four_parts_s_median": 1.6, "speedup_median": 3.75, "four_parts_mb_per_s_median": 41.9}],
        "rss": {"size": 256 * MIB, "peak_mib_median": 150.0, "limit_mib": 278.0},
        "throughput_size": 256 * MIB,
        "throughput_samples": [[0.0, 0], [0.2, 30 * MIB], [0.4, 70 * MIB], [0.6, 120 * MIB], [0.8, 256 * MIB]],
    },
    "small_files": {
        "command": "python -m bench.small_files --files 600 --runs 2", "files": 600, "files_per_s": 39.2,
        "ceiling_files_per_s": 40.0, "fraction_of_ceiling": 0.98, "target_fraction": 0.95, "responses_429": 3,
        "share_429": 0.0025, "target_share_429_below": 0.01, "raw": [{"requests": 1200}, {"requests": 1200}],
    },
    "latency": {
        "command": "python -m bench.daemon_latency --files 30 --rate 5.0 --runs 3", "rate_per_s": 5.0,
        "p50_s": 2.3, "p95_s": 2.6, "p99_s": 3.4, "target_p95_s": 3.0,
        "latencies_s": [2.1, 2.2, 2.3, 2.3, 2.4, 2.5, 2.6, 3.4],
        "at_box_limit": {"command": "python -m bench.daemon_latency --files 100 --rate 5.0 --runs 3 --box-limit",
                         "rate_per_s": 5.0, "uploads_per_minute": 230, "p50_s": 1.5, "p95_s": 4.5, "p99_s": 6.0},
    },
    "chaos": {"command": "python -m bench.chaos --files 80 --kills 10 --seed 1", "files": 80, "kills": 10, "lost": 0,
              "duplicated": 1, "corrupted": 0, "still_pending": 0, "extra": 0},
}


def _report(tmp_path: Path) -> SuiteReport:
    report = SuiteReport(date="2026-11-21T10:00:00+00:00", command="python -m bench all --quick", quick=True,
                         machine={"cores": 2, "memory_gib": 23.0, "python": "3.11.7", "platform": "Linux",
                                  "load_average_1m": 0.5})
    for name, result in FAKE_RESULTS.items():
        report.outcomes.append(BenchmarkOutcome(name, 12.0, result=result, date=report.date))
        report.figures += figures_of(name, result)
    report.outcomes.append(BenchmarkOutcome("resume", 1.0, error="Traceback...\nModuleNotFoundError: No module named 'bench.resume'",
                                            date=report.date))
    return report


def test_figures_carry_value_baseline_ratio_target():
    rows = {f.name: f for name, result in FAKE_RESULTS.items() for f in figures_of(name, result)}
    loopback = rows["256 MiB chunked upload, loopback, 4 parts"]
    assert loopback.value == 180.0 and loopback.ratio == 1.5 and loopback.met is True
    assert loopback.baseline == pytest.approx(256 * MIB / 1e6)  # sha1sum twice in 1 s, as MB/s
    wan = next(f for f in rows.values() if "WAN" in f.name)
    assert wan.ratio == 3.75 and wan.met is True and wan.baseline == pytest.approx(64 * MIB / 1e6 / 6.0)
    assert rows["close-to-commit p95, small files at 5/s, Box's upload limit x10"].met is True
    assert rows["close-to-commit p99, small files at 5/s, Box's upload limit x10"].met is None  # only p95 has a target
    # Above Box's own limit the backlog is the limit's, not the daemon's: shown, with no target to meet.
    at_limit = rows["close-to-commit p95 at Box's own limit (daemon default 230/min), 5 files/s"]
    assert at_limit.value == 4.5 and at_limit.met is None and at_limit.command.endswith("--box-limit")
    assert rows["429 answers from the emulator"].ratio == 0.0025
    duplicated = next(f for f in rows.values() if "duplicated" in f.name)
    assert duplicated.value == 1 and duplicated.met is False


def test_every_benchmark_names_a_function_that_takes_its_options():
    for benchmark in BENCHMARKS.values():
        run = getattr(importlib.import_module(f"bench.{benchmark.module}"), benchmark.function)
        inspect.signature(run).bind(quick=True, **benchmark.options)  # TypeError names the mismatch


def test_fuzz_figures_are_one_zero_target_per_defect_kind():
    result = {"sequences": 500, "operations": 4100, "lost": 0, "duplicated": 0, "partial": 2, "leaked": 0,
              "command": "python -m bench.fuzz_drops --sequences 500 --operations 12 --seed 1"}
    rows = figures_of("fuzz_drops", result)
    assert [(f.name, f.value, f.met) for f in rows] == [
        (f"fuzzed drops: {kind} (500 sequences, 4100 operations)", value, value == 0)
        for kind, value in (("lost", 0), ("duplicated", 0), ("partial", 2), ("leaked", 0))]


def test_multi_host_figures_compare_each_setup_with_sqlite_and_the_takeover_with_its_bound():
    def row(setup: str, workload: str, files_per_s: float, ratio: float) -> dict:
        size = 64 * 1024 if workload == "small" else 128 * MIB
        files = 400 if workload == "small" else 4
        return {"setup": setup, "workload": workload, "files": files, "size": size, "files_per_s": files_per_s,
                "mb_per_s": files_per_s * size / 1e6, "ratio_to_sqlite": ratio}

    result = {"command": "python -m bench.multi_host --lease 5s", "ingest": [
        row("sqlite_1_host", "small", 80.0, 1.0), row("postgres_2_hosts", "small", 120.0, 1.5),
        row("sqlite_1_host", "large", 0.5, 1.0)],
        "takeover": {"size": 200 * MIB, "parts_acknowledged": 3, "kill_to_takeover_s": 6.0, "bound_takeover_s": 6.0,
                     "kill_to_commit_s": 20.0, "bound_commit_s": 16.0}}
    rows = {f.name: f for f in figures_of("multi_host", result)}
    two = rows["400 x 64 KiB files, two hosts, PostgreSQL"]
    assert (two.value, two.unit, two.baseline, two.ratio, two.met) == (120.0, "files/s", 80.0, 1.5, None)
    assert rows["4 x 128 MiB files, one host, SQLite"].unit == "MB/s"
    commit = rows["takeover of a 200 MiB upload, SIGKILL after part 3: kill to upload_committed"]
    assert commit.ratio == 1.25 and commit.met is None  # reported, never a target


def test_unknown_benchmark_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown benchmark 'nope'"):
        figures_of("nope", {})


def test_markdown_has_machine_command_table_failures_and_plots(tmp_path):
    report = _report(tmp_path)
    json_path, markdown_path = write_outputs(report, results_dir=tmp_path / "results", docs_dir=tmp_path / "docs")
    markdown = markdown_path.read_text()
    assert "2 cores, 23.0 GiB memory, Python 3.11.7" in markdown
    assert "`python -m bench all --quick`" in markdown
    table = [line for line in markdown.splitlines() if line.startswith("| ")]
    assert len(table) == 1 + len(report.figures)  # header + one row per figure
    assert "| large | 256 MiB chunked upload, loopback, 4 parts | 180 | MB/s | sha1sum twice (MB/s) | 268 | 1.50 |" in markdown
    assert "| **no** |" in markdown  # the fake duplicate fails its target
    assert "**resume**: ModuleNotFoundError: No module named 'bench.resume'" in markdown
    assert "![Close-to-commit latency](latency.png)" in markdown
    for png in ("latency.png", "throughput.png"):
        assert (tmp_path / "docs" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads(json_path.read_text())
    assert json_path.name == "2026-11-21-quick.json"  # a quick run never replaces the full-size figures
    assert saved["machine"]["cores"] == 2 and saved["command"] == "python -m bench all --quick"
    assert len(saved["figures"]) == len(report.figures)
    assert saved["benchmarks"]["resume"]["error"].endswith("No module named 'bench.resume'")


def test_markdown_without_plots_or_failures():
    report = SuiteReport(date="2026-11-21T10:00:00+00:00", command="python -m bench all --only chaos", quick=False,
                         machine={"cores": 2})
    report.figures = figures_of("chaos", FAKE_RESULTS["chaos"])
    markdown = render_markdown(report)
    assert "did not run" not in markdown and "## Plots" not in markdown
    assert markdown.count("| chaos | chaos: ") == 5


def test_sustained_rate_leaves_out_the_initial_burst():
    burst = [0.0 + i * 0.01 for i in range(100)]  # 100 commits in the first second
    steady = [5.0 + i * 0.025 for i in range(201)]  # then 40/s for 5 s
    assert sustained_rate(burst + steady, 5.0) == pytest.approx(40.0)
    with pytest.raises(Exception, match="too few commits"):
        sustained_rate(burst, 5.0)


def test_sliding_rates_smooth_part_sized_steps_into_the_link_rate():
    # 0.2 s samples; a 40 MB part is acknowledged every 0.4 s, i.e. 100 MB/s.
    times = [round(i * 0.2, 1) for i in range(16)]
    sent = [40e6 * (i // 2) for i in range(16)]
    ends, rates = sliding_rates(times, sent, 1.0)
    assert ends[0] == 1.0 and ends[-1] == 3.0
    assert all(79.9 < rate < 120.1 for rate in rates), rates  # 0.2 s windows swing from 0 to 200
    assert sliding_rates([0.0, 0.5], [0.0, 1e6], 1.0) == ([], [])  # no full window yet


def test_count_status_sums_over_endpoints():
    stats = {"requests": {"upload_file": {"201": 10, "429": 2}, "preflight": {"200": 12, "429": 1}}}
    assert count_status(stats, "429") == (3, 25)


def test_command_line_help_and_bad_name():
    helped = subprocess.run([sys.executable, "-m", "bench", "all", "--help"], cwd=ROOT, check=False, capture_output=True, text=True,
                            timeout=60)
    assert helped.returncode == 0 and "--quick" in helped.stdout and "--only" in helped.stdout
    listed = subprocess.run([sys.executable, "-m", "bench", "list"], cwd=ROOT, check=False, capture_output=True, text=True, timeout=60)
    assert listed.stdout.split() == ["large", "small_files", "latency", "scale", "resume", "chaos", "chaos_restart",
                                     "fuzz_drops", "emulator", "versus_rclone", "delta_versions", "multi_host"]
    bad = subprocess.run([sys.executable, "-m", "bench", "all", "--only", "nope"], cwd=ROOT, check=False, capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 2 and "invalid choice: 'nope'" in bad.stderr


def test_render_rebuilds_the_table_from_a_results_file(tmp_path):
    report = _report(tmp_path)
    json_path, first = write_outputs(report, results_dir=tmp_path / "results", docs_dir=tmp_path / "docs")
    original = first.read_text()
    from bench.suite import report_from_json

    again = report_from_json(json.loads(json_path.read_text()))
    assert render_markdown(again) == original
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    done = subprocess.run([sys.executable, "-m", "bench", "render", str(bad)], cwd=ROOT, check=False, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2 and "cannot render" in done.stderr and "KeyError" in done.stderr


def test_a_results_file_of_an_older_shape_is_refused_with_what_to_do(tmp_path):
    json_path, _ = write_outputs(_report(tmp_path), results_dir=tmp_path / "results", docs_dir=tmp_path / "docs")
    saved = json.loads(json_path.read_text())
    saved["benchmarks"]["large"]["result"]["wan"] = saved["benchmarks"]["large"]["result"]["wan"][0]  # one size, as once
    json_path.write_text(json.dumps(saved))
    with pytest.raises(ResultsFileError, match="rerun the benchmarks without --only"):
        load_report(json_path)
    with pytest.raises(ResultsFileError, match="cannot read"):
        load_report(tmp_path / "missing.json")


def test_only_rerun_replaces_its_benchmarks_and_keeps_the_rest():
    from bench.suite import merge_reports

    full = SuiteReport(date="2026-11-21T10:00:00+00:00", command="python -m bench all", quick=False, machine={"cores": 2})
    for name in ("large", "latency", "chaos"):
        full.outcomes.append(BenchmarkOutcome(name, 5.0, result=FAKE_RESULTS[name]))
    full.outcomes.append(BenchmarkOutcome("resume", 1.0, error="Traceback...\nRuntimeError: boom"))
    fixed_chaos = {**FAKE_RESULTS["chaos"], "duplicated": 0}
    rerun = SuiteReport(date="2026-11-21T12:00:00+00:00", command="python -m bench all --only chaos", quick=False,
                        machine={"cores": 2}, outcomes=[BenchmarkOutcome("chaos", 9.0, result=fixed_chaos)])
    merged = merge_reports(full, rerun)
    assert [o.name for o in merged.outcomes] == ["large", "latency", "resume", "chaos"]  # the suite's order
    assert merged.command == "python -m bench all; then python -m bench all --only chaos"
    assert all(f.met is not False for f in merged.figures if f.benchmark == "chaos")
    assert {f.benchmark for f in merged.figures} == {"large", "latency", "chaos"}
    assert next(o for o in merged.outcomes if o.name == "resume").error  # a failure stays visible until rerun


def test_only_rerun_completes_the_newest_results_file_of_its_kind(tmp_path):
    from bench.suite import latest_results_path

    results = tmp_path / "results"
    assert latest_results_path(quick=False, results_dir=results) is None  # no directory yet
    results.mkdir()
    for name in ("2026-11-20.json", "2026-11-21.json", "2026-11-24-quick.json", "latency-2026-11-25.json",
                 "2026-11-22.json.bak", "notes.json"):
        (results / name).write_text("{}")
    assert latest_results_path(quick=False, results_dir=results) == results / "2026-11-21.json"
    assert latest_results_path(quick=True, results_dir=results) == results / "2026-11-24-quick.json"


def test_each_benchmark_keeps_the_date_it_ran_through_merge_and_results_file(tmp_path):
    from bench.suite import merge_reports, report_from_json, report_json

    earlier = SuiteReport(date="2026-11-21T10:00:00+00:00", command="python -m bench all", quick=False,
                          machine={"cores": 2},
                          outcomes=[BenchmarkOutcome("chaos", 5.0, result=FAKE_RESULTS["chaos"], date="2026-11-21T10:00:00+00:00")])
    later = SuiteReport(date="2026-11-26T08:00:00+00:00", command="python -m bench all --only latency", quick=False,
                        machine={"cores": 2},
                        outcomes=[BenchmarkOutcome("latency", 9.0, result=FAKE_RESULTS["latency"], date="2026-11-26T08:00:01+00:00")])
    merged = report_from_json(json.loads(json.dumps(report_json(merge_reports(earlier, later)))))
    assert {o.name: o.date for o in merged.outcomes} == {"latency": "2026-11-26T08:00:01+00:00",
                                                         "chaos": "2026-11-21T10:00:00+00:00"}
    markdown = render_markdown(merged)
    assert "- chaos: 5 s, run 2026-11-21" in markdown and "- latency: 9 s, run 2026-11-26" in markdown
    # A file written before outcomes carried a date: every benchmark in it ran on the file's date.
    saved = report_json(earlier)
    del saved["benchmarks"]["chaos"]["date"]
    assert report_from_json(saved).outcomes[0].date == "2026-11-21T10:00:00+00:00"


def test_delta_versions_figures_compare_each_share_with_a_full_re_upload():
    import random

    from bench.delta_versions import parts_to_change

    shares = [{"share": share, "parts_changed": n, "seconds_median": sec, "bytes_sent_median": sent,
               "ratio_time_median": sec / 20.0, "ratio_bytes_median": sent / (1024 * MIB)}
              for share, n, sec, sent in ((0.0, 0, 0.5, 0), (0.01, 1, 2.9, 32 * MIB), (1.0, 32, 21.0, 1024 * MIB))]
    result = {"command": "python -m bench all --only delta_versions", "size": 1024 * MIB, "links": {
        "wan": {"total_parts": 32, "baseline_seconds_median": 20.0, "baseline_bytes_median": 1024 * MIB,
                "shares": shares}}}
    rows = {f.name: f for f in figures_of("delta_versions", result)}
    one = rows["1 GiB new version, 1% of 32 parts changed, WAN 40 ms, 12 MB/s per connection: part bytes sent"]
    assert one.value == 32 and one.baseline == 1024 and one.ratio == pytest.approx(1 / 32) and one.met is None
    assert rows["1 GiB new version, 0% of 32 parts changed, WAN 40 ms, 12 MB/s per connection: time"].ratio == 0.025
    rng = random.Random(1)
    assert parts_to_change(32, 0.0, rng) == [] and len(parts_to_change(32, 0.01, rng)) == 1
    assert len(parts_to_change(32, 0.10, rng)) == 3 and parts_to_change(32, 1.0, rng) == list(range(32))
