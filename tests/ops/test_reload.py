"""`systemctl reload` as the shipped unit performs it, against a real daemon and emulator:
the unit's ExecReload= commands run in order as systemd runs them (stop at the first that
fails). A bad config fails the first command and the daemon is never signalled; a good one
is applied, logging level included, and the reload metric says how the last one went."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import requests
import yaml

from syncd.service.daemon_state import state_path_for
from tests.daemon.daemon_process import wait_until
from tests.deploy.test_units import DEPLOY, parse_unit
from tests.ops.test_daemon_operations import free_port, scrape
from tests.support.notify import NotifySocket

SYNCD = [sys.executable, "-m", "syncd"]


def exec_reload(unit: str, config: Path, mainpid: int) -> list[subprocess.CompletedProcess[str]]:
    """Run the unit's ExecReload= lines as systemd would, with this checkout's syncd standing in
    for /opt/syncd/bin/syncd and `config` for the unit's config path; returns what ran."""
    done = []
    for line in parse_unit(DEPLOY / unit)["Service"]["ExecReload"]:
        argv = shlex.split(line.replace("$MAINPID", str(mainpid)))
        if argv[0] == "/opt/syncd/bin/syncd":
            argv = [*SYNCD, *argv[1:]]
        argv = [str(config) if arg.startswith("/etc/syncd/") else arg for arg in argv]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        done.append(result)
        if result.returncode != 0:
            break
    return done


def events(log_path: Path, name: str) -> list[dict]:
    found = []
    for line in log_path.read_text().splitlines():
        if line.startswith("{") and f'"{name}"' in line:
            entry = json.loads(line)
            if entry.get("event") == name:
                found.append(entry)
    return found


def test_exec_reload_validates_first_and_logging_level_applies(tmp_path: Path, emulator) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    config = tmp_path / "syncd.yaml"
    port = free_port()
    data = {
        "box": {"api_url": emulator.api_url, "upload_url": emulator.upload_url,
                "auth": {"type": "developer_token", "token": emulator.token}},
        "journal": str(tmp_path / "journal.db"),
        "watches": [{"path": str(inbox), "folder_id": "0"}],
        "logging": {"format": "json", "level": "warning"},
        "metrics": {"listen": f"127.0.0.1:{port}"},
    }
    config.write_text(yaml.safe_dump(data))
    notify = NotifySocket(tmp_path / "notify.sock")
    log_path = tmp_path / "daemon.log"
    env = dict(os.environ, NOTIFY_SOCKET=str(notify.path), PYTHONUNBUFFERED="1")
    with log_path.open("w") as log:
        daemon = subprocess.Popen([*SYNCD, "run", "-c", str(config)], stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        notify.wait_for("READY=1")
        # At level warning, a scrape's debug line and the info events are not logged.
        assert scrape(port)["syncd_config_last_reload_successful{}"] == 1
        assert events(log_path, "metrics_http_request") == [] and events(log_path, "daemon_started") == []

        # A bad config: the validation step fails, so systemd would fail the reload and never send SIGHUP.
        config.write_text("box: {auth: {type: developer_token}}\nwatches: nope\n")
        for unit in ("syncd.service", "syncd@.service"):
            ran = exec_reload(unit, config, daemon.pid)
            assert len(ran) == 1 and ran[0].returncode == 2, [r.stderr for r in ran]
            assert "watches" in ran[0].stderr
        time.sleep(0.5)
        assert events(log_path, "reload_rejected") == []  # the daemon never heard of it
        assert daemon.poll() is None

        # A good config with logging.level debug: validated, signalled, and really applied.
        data["logging"]["level"] = "debug"
        config.write_text(yaml.safe_dump(data))
        before = len(notify.messages)
        ran = exec_reload("syncd.service", config, daemon.pid)
        assert [r.returncode for r in ran] == [0, 0], [r.stderr for r in ran]
        notify.wait_for("READY=1", after=before)
        wait_until(lambda: events(log_path, "config_reloaded"), timeout=30, message="config_reloaded")
        (reloaded,) = events(log_path, "config_reloaded")
        assert reloaded["changes"] == ["setting changed: logging.level: 'warning' -> 'debug'"]
        requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
        wait_until(lambda: events(log_path, "metrics_http_request"), timeout=30, message="a debug line after the reload")
        metrics = scrape(port)
        assert metrics["syncd_config_last_reload_successful{}"] == 1
        assert metrics["syncd_config_last_reload_success_timestamp_seconds{}"] >= datetime.fromisoformat(reloaded["timestamp"]).timestamp() - 1

        # A config the daemon itself rejects (SIGHUP sent directly, bypassing the validation).
        config.write_text("box: {auth: {type: developer_token}}\nwatches: nope\n")
        daemon.send_signal(signal.SIGHUP)
        wait_until(lambda: events(log_path, "reload_rejected"), timeout=30, message="reload_rejected")
        wait_until(lambda: scrape(port)["syncd_config_last_reload_successful{}"] == 0, timeout=30, message="reload metric 0")
        status = subprocess.run([*SYNCD, "status", "--check", "-c", str(tmp_path / "good.yaml")],
                                capture_output=True, text=True, timeout=60, check=False)
        assert status.returncode == 3  # that file does not exist: UNKNOWN, not a crash
        (tmp_path / "good.yaml").write_text(yaml.safe_dump(data))
        status = subprocess.run([*SYNCD, "status", "--check", "-c", str(tmp_path / "good.yaml")],
                                capture_output=True, text=True, timeout=60, check=False)
        assert status.returncode == 1 and "last reload rejected" in status.stdout, status.stdout + status.stderr
        published = state_path_for(tmp_path / "journal.db")
        assert json.loads(published.read_text())["last_reload"]["ok"] is False
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(30) == 0
        assert not published.exists()  # a stopped daemon has nothing to tell
    finally:
        if daemon.poll() is None:
            daemon.kill()
        notify.close()
