"""The shipped alert rules and Grafana dashboard: valid for Prometheus's own tools, and every
metric they name is exported by a real daemon (real emulator, real scrape)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import requests
import yaml

from syncd.testing.daemon_process import DaemonProcess, Watch, config_data, write_config
from tests.ops.test_daemon_operations import free_port

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "deploy/prometheus/alerts.yml"
RULE_TESTS = REPO / "deploy/prometheus/alerts_test.yml"
DASHBOARD = REPO / "deploy/grafana/syncd.json"
PROMTOOL = "/usr/bin/promtool"  # Debian's prometheus package, installed by scripts/bootstrap.sh
# Names that Prometheus itself makes (not the exporter's to provide).
PROMETHEUS_OWN = {"up"}
METRIC = re.compile(r"\b((?:syncd|process)_[a-z0-9_]+)\b")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60, check=False)


def rule_exprs() -> list[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    exprs += [v["definition"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    return exprs


def named_metrics(exprs: list[str]) -> set[str]:
    return {name for expr in exprs for name in METRIC.findall(expr)}


def test_promtool_checks_and_unit_tests_the_rules() -> None:
    checked = promtool("check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 13 rules found" in checked.stdout
    tested = promtool("test", "rules", str(RULE_TESTS))
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_promtool_would_catch_a_broken_rule(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text(RULES.read_text().replace("syncd_box_refusing == 1", "syncd_box_refusing == ", 1))
    assert promtool("check", "rules", str(broken)).returncode != 0


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    """Grafana has no offline checker; promtool checks each query as a recording rule."""
    exprs = [re.sub(r"\$(instance|host)\b", ".*", expr) for expr in dashboard_exprs() if "label_values" not in expr]
    rules = {"groups": [{"name": "dashboard", "rules": [{"record": f"dashboard:query_{n}", "expr": expr}
                                                        for n, expr in enumerate(exprs)]}]}
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump(rules))
    checked = promtool("check", "rules", str(path))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)) and all(p["gridPos"]["x"] + p["gridPos"]["w"] <= 24 for p in dashboard["panels"])


def test_a_running_daemon_exports_every_metric_the_rules_and_dashboard_use(tmp_path: Path, emulator) -> None:
    port = free_port()
    config = write_config(tmp_path / "syncd.yaml", config_data(
        emulator, tmp_path / "journal.db", [Watch(tmp_path / "inbox", name="inbox", options={"expect_files_every": "1h"})],
        metrics={"listen": f"127.0.0.1:{port}"}, host_id="ingest-test"))
    (tmp_path / "inbox").mkdir()
    with DaemonProcess(config, tmp_path / "daemon.log") as daemon:
        (tmp_path / "inbox" / "one.txt").write_text("one file, so that per-file series exist too")
        daemon.wait_for_event("upload_committed", timeout=30)
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    # Families are declared (# TYPE) even before their first labelled sample.
    exported = set(re.findall(r"^# TYPE (\S+) ", text, flags=re.M))
    exported |= {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}
    used_by_rules = named_metrics(rule_exprs()) - PROMETHEUS_OWN
    used_by_dashboard = named_metrics(dashboard_exprs()) - PROMETHEUS_OWN
    assert used_by_rules and used_by_dashboard
    assert used_by_rules - exported == set()
    assert used_by_dashboard - exported == set()
    # Not only declared: the series the rules join on carry values for this watch, and this host.
    assert 'syncd_expected_arrival_interval_seconds{host="ingest-test",watch="inbox"} 3600.0' in text
    assert re.search(r'^syncd_last_arrival_timestamp_seconds\{host="ingest-test",watch="inbox"\} [1-9]', text, flags=re.M)
    assert 'syncd_health_probe_ok{host="ingest-test",probe="journal"} 1.0' in text
    assert 'syncd_box_refusing{host="ingest-test",scope="credentials"} 0.0' in text
    # Every syncd sample is this host's; the multi-host series exist before any lease was taken.
    samples = [line for line in text.splitlines() if line.startswith("syncd_")]
    assert samples and all('host="ingest-test"' in line for line in samples)
    for series in ('syncd_lease_renewals_total{host="ingest-test",outcome="failed"}',
                   'syncd_takeovers_total{host="ingest-test"}', 'syncd_leases_held{host="ingest-test"}',
                   'syncd_claim_outcomes_refused_total{host="ingest-test"}'):
        assert f"{series} 0.0" in text
    assert re.search(r'^syncd_journal_available\{host="ingest-test"\} 1\.0$', text, flags=re.M)


def test_uploaded_bytes_count_parts_before_the_file_commits(tmp_path: Path, emulator_factory) -> None:
    """A large upload shows as it goes: bytes are counted as Box acknowledges each part."""
    from syncd.testing.daemon_process import CHUNKED_MIN
    from tests.daemon.daemon_process import wait_until

    emulator = emulator_factory("--bandwidth", "3000000")  # per connection: ~3 s per 8 MiB part
    port = free_port()
    config = write_config(tmp_path / "syncd.yaml", config_data(
        emulator, tmp_path / "journal.db", [Watch(tmp_path / "inbox")], box={"part_concurrency": 1},
        metrics={"listen": f"127.0.0.1:{port}"}))
    (tmp_path / "inbox").mkdir()

    def sample(name: str) -> float:
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name)]
        return sum(values)

    with DaemonProcess(config, tmp_path / "daemon.log") as daemon:
        big = tmp_path / "inbox" / "big.bin"
        big.write_bytes(b"\x5a" * (CHUNKED_MIN + 1_000_000))
        wait_until(lambda: sample("syncd_uploaded_bytes_total") > 0, timeout=60, interval=0.2,
                   message=daemon.tail)
        assert sample("syncd_uploaded_files_total") == 0  # counted before the commit, not at it
        assert 0 < sample("syncd_uploaded_bytes_total") < big.stat().st_size
        daemon.wait_for_event("upload_committed", timeout=120)
        wait_until(lambda: sample("syncd_uploaded_files_total") == 1, timeout=10, message=daemon.tail)
        assert sample("syncd_uploaded_bytes_total") == big.stat().st_size
