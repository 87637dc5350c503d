"""The daemon as an operator sees it: systemd notify and watchdog on a real NOTIFY_SOCKET,
/metrics and /healthz scraped during an ingestion, `status --json` during and after, and
SIGHUP reloads. Real emulator, real daemon process, real files."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.support.notify import NotifySocket

SYNCD = [sys.executable, "-m", "syncd"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(path: Path, emulator, inbox: Path, journal: Path, metrics_port: int, *,
                 extra_watches: list[dict] | None = None, workers: int = 2) -> None:
    data = {
        "box": {"api_url": emulator.api_url, "upload_url": emulator.upload_url,
                "auth": {"type": "developer_token", "token": emulator.token}},
        "journal": str(journal),
        "workers": workers,
        "readiness": {"settle": "500ms"},
        "watches": [{"path": str(inbox), "folder_id": "0"}] + (extra_watches or []),
        "logging": {"format": "json"},
        "metrics": {"listen": f"127.0.0.1:{metrics_port}"},
    }
    path.write_text(yaml.safe_dump(data))


def status(config: Path) -> dict:
    done = subprocess.run(SYNCD + ["status", "--json", "-c", str(config)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def scrape(port: int) -> dict[str, float]:
    """Every sample, keyed `name{label=value,...}` without the host label, which every syncd
    sample must carry: the config sets no host_id, so the hostname."""
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            rest = dict(sample.labels)
            if sample.name.startswith("syncd_"):
                assert rest.pop("host", None) == socket.gethostname(), sample
            labels = ",".join(f"{k}={v}" for k, v in sorted(rest.items()))
            values[f"{sample.name}{{{labels}}}"] = sample.value
    return values


def test_notify_metrics_status_during_an_ingestion(tmp_path, emulator_factory):
    emulator = emulator_factory("--latency-ms", "30")  # slow enough to be seen mid-flight
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    config = tmp_path / "syncd.yaml"
    port = free_port()
    write_config(config, emulator, inbox, tmp_path / "journal.db", port)
    notify = NotifySocket(tmp_path / "notify.sock")
    env = dict(os.environ, NOTIFY_SOCKET=str(notify.path), WATCHDOG_USEC="1000000", PYTHONUNBUFFERED="1")
    log = (tmp_path / "daemon.log").open("w")
    daemon = subprocess.Popen(SYNCD + ["run", "-c", str(config)], stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        notify.wait_for("READY=1")
        emulator.faults(reject_next={"count": 3, "status": 429, "retry_after": 1})  # a short 429 storm
        for i in range(40):
            (inbox / f"doc-{i:02}.txt").write_bytes(os.urandom(2048) + str(i).encode())
        during = status(config)
        assert during["daemon_running"] and during["daemon_pid"] == daemon.pid
        assert notify.wait_for("WATCHDOG=1")
        deadline = time.monotonic() + 60
        metrics = scrape(port)
        # The latency histogram is the last metric a commit updates: once it counts 40, all do.
        while metrics.get("syncd_detect_to_commit_seconds_count{}", 0) < 40 and time.monotonic() < deadline:
            time.sleep(0.3)
            metrics = scrape(port)
        size = sum(p.stat().st_size for p in inbox.iterdir())
        assert metrics["syncd_uploaded_files_total{watch=inbox}"] == 40
        assert metrics["syncd_committed_bytes_total{watch=inbox}"] == size
        # Bytes are counted as Box takes them; the 429s refused some bodies after they were sent.
        assert metrics["syncd_uploaded_bytes_total{}"] >= size
        assert metrics["syncd_files{state=uploaded}"] == 40
        assert metrics["syncd_detect_to_commit_seconds_count{}"] == 40
        assert sum(v for k, v in metrics.items() if k.startswith("syncd_box_responses_total{code=429,")) == 3
        assert metrics["syncd_box_responses_total{code=201,endpoint=POST /files/content}"] == 40
        assert metrics["syncd_last_arrival_timestamp_seconds{watch=inbox}"] > 0
        health = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
        assert health.status_code == 200
        assert notify.wait_for("STATUS=").startswith("STATUS=uploading")
        after = status(config)
        assert after["counts"]["uploaded"] == 40 and after["counts"]["pending"] == 0
        assert after["last_upload_path"].startswith("inbox:doc-")
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(30) == 0
        notify.wait_for("STOPPING=1")
        assert status(config)["daemon_running"] is False
    finally:
        if daemon.poll() is None:
            daemon.kill()
        log.close()
    assert len(emulator.folder_items("0")) == 40


def test_sighup_adds_a_watch_and_rejects_a_bad_config(tmp_path, emulator):
    inbox, second = tmp_path / "inbox", tmp_path / "second"
    inbox.mkdir()
    second.mkdir()
    config = tmp_path / "syncd.yaml"
    port = free_port()
    write_config(config, emulator, inbox, tmp_path / "journal.db", port)
    notify = NotifySocket(tmp_path / "notify.sock")
    env = dict(os.environ, NOTIFY_SOCKET=str(notify.path), PYTHONUNBUFFERED="1")
    log_path = tmp_path / "daemon.log"
    with log_path.open("w") as log:
        daemon = subprocess.Popen(SYNCD + ["run", "-c", str(config)], stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        notify.wait_for("READY=1")
        folder = requests.post(f"{emulator.api_url}/folders", json={"name": "second", "parent": {"id": "0"}},
                               headers={"Authorization": f"Bearer {emulator.token}"}, timeout=10).json()
        write_config(config, emulator, inbox, tmp_path / "journal.db", port,
                     extra_watches=[{"path": str(second), "folder_id": folder["id"]}])
        daemon.send_signal(signal.SIGHUP)
        notify.wait_for("RELOADING=1")
        (second / "late.txt").write_text("arrived after reload")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not emulator.folder_items(folder["id"]):
            time.sleep(0.2)
        assert [i["name"] for i in emulator.folder_items(folder["id"])] == ["late.txt"]

        config.write_text("box: {auth: {type: developer_token}}\nwatches: nope\n")
        daemon.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and "reload_rejected" not in log_path.read_text():
            time.sleep(0.2)
        assert "reload_rejected" in log_path.read_text()
        assert daemon.poll() is None  # still running on the old config
        (inbox / "still.txt").write_text("old config still works")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "still.txt" not in [i["name"] for i in emulator.folder_items("0")]:
            time.sleep(0.2)
        assert "still.txt" in [i["name"] for i in emulator.folder_items("0")]
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(30) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
    assert emulator.token not in log_path.read_text()
