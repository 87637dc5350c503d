"""The command line as an operator and a script use it: where -c goes, $SYNCD_CONFIG, --json
with ISO 8601 timestamps on every command, a closed pipe, warnings said once, monitoring exit
codes, and read-only commands that never ask for secrets. Real `syncd` processes on a real
journal; the commands that talk to Box run against the real emulator."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import yaml

from syncd.service.daemon_state import BoxRefusal, PublishedState, ReloadResult, publish
from syncd.journal import Journal

SYNCD = [sys.executable, "-m", "syncd"]
# The environment an operator's root shell has: no systemd credentials, no SYNCD_CONFIG.
SHELL_ENV = {k: v for k, v in os.environ.items() if k not in ("CREDENTIALS_DIRECTORY", "SYNCD_CONFIG")}


def syncd(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SYNCD, *args], capture_output=True, text=True, timeout=timeout,
                          env=SHELL_ENV if env is None else env, check=False)


def write_config(tmp_path: Path, *, token: object = "dev-token", api: str = "http://127.0.0.1:9",
                 **top: object) -> Path:
    (tmp_path / "inbox").mkdir(exist_ok=True)
    path = tmp_path / "syncd.yaml"
    path.write_text(yaml.safe_dump({
        "box": {"api_url": f"{api}/2.0", "upload_url": f"{api}/api/2.0", "token_url": f"{api}/oauth2/token",
                "auth": {"type": "developer_token", "token": token}},
        "journal": str(tmp_path / "journal.db"),
        "watches": [{"path": str(tmp_path / "inbox"), "folder_id": "0", "name": "inbox"}],
        **top,
    }))
    path.chmod(0o600)
    return path


def journal_with_history(tmp_path: Path, files: int = 3) -> Journal:
    """A migrated journal with `files` arrivals, left open as the daemon (its lock held by this process)."""
    journal = Journal.open(tmp_path / "journal.db", role="daemon")
    for start in range(0, files, 500):
        journal.observe_many("inbox", [(f"f{i:05}.txt", 10, i, i + 1) for i in range(start, min(files, start + 500))],
                             now=time.time())
    return journal


def is_utc_iso(text: str) -> bool:
    return datetime.fromisoformat(text).utcoffset() == timedelta(0)


def test_a_closed_pipe_ends_quietly_with_the_sigpipe_exit_code(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    journal_with_history(tmp_path, files=3000).close()  # far more output than a pipe buffer holds
    reader = subprocess.Popen([*SYNCD, "history", "-c", str(config), "--limit", "3000"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=SHELL_ENV)
    assert reader.stdout is not None and reader.stderr is not None
    first = reader.stdout.readline()  # `| head -1`
    reader.stdout.close()
    stderr = reader.stderr.read().decode()
    assert reader.wait(60) == 141  # 128 + SIGPIPE, as a shell reports a writer killed by it
    assert b"arrived" in first
    assert stderr == ""  # no BrokenPipeError traceback, no "Exception ignored" at exit


def test_check_config_says_each_warning_once(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    data = yaml.safe_load(config.read_text())
    data["watches"].append({"path": str(tmp_path / "not-yet"), "folder_id": 7})  # two warnings
    config.write_text(yaml.safe_dump(data))
    done = syncd("check-config", "-c", str(config))
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stdout.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2 and len(set(warnings)) == 2, done.stdout
    assert sum("does not exist (yet)" in line for line in done.stdout.splitlines()) == 1


def test_config_option_before_or_after_the_command_and_from_the_environment(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    journal_with_history(tmp_path).close()
    other = tmp_path / "elsewhere"
    other.mkdir()
    wrong = write_config(other)  # a valid config whose journal does not exist
    after = syncd("status", "--json", "-c", str(config))
    before = syncd("-c", str(config), "status", "--json")
    from_env = syncd("status", "--json", env=dict(SHELL_ENV, SYNCD_CONFIG=str(config)))
    for done in (after, before, from_env):
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["counts"]["pending"] == 3
    # The command line beats the environment, and the sub-command's -c beats the top-level one.
    assert syncd("status", "-c", str(config), env=dict(SHELL_ENV, SYNCD_CONFIG=str(wrong))).returncode == 0
    assert syncd("--config", str(wrong), "status", "--config", str(config)).returncode == 0
    missing = syncd("status", env=dict(SHELL_ENV, SYNCD_CONFIG=str(tmp_path / "absent.yaml")))
    assert missing.returncode == 2 and "absent.yaml" in missing.stderr


def test_json_on_every_command_with_iso_timestamps(tmp_path: Path, emulator) -> None:
    config = write_config(tmp_path, api=emulator.origin, token=emulator.token)
    journal = journal_with_history(tmp_path, files=2)
    claimed = journal.claim_next(time.time())
    assert claimed is not None
    journal.claimed(claimed).mark_failed("Box said no", "access_denied")
    journal.close()
    outputs: dict[str, object] = {}
    for name, args in {
        "status": ["status"], "history": ["history"], "check-config": ["check-config"],
        "retry": ["retry", "--failed"], "forget": ["forget", "inbox:f00001.txt"],
        "auth check": ["auth", "check"],
    }.items():
        done = syncd(*args, "-c", str(config), "--json")
        assert done.returncode == 0, (name, done.stderr)
        lines = done.stdout.strip().splitlines()
        outputs[name] = json.loads(done.stdout) if name != "history" else [json.loads(line) for line in lines]
    history = outputs["history"]
    assert isinstance(history, list) and all(is_utc_iso(entry["ts"]) for entry in history)
    assert {entry["event"] for entry in history} >= {"arrived", "failed"}
    status = outputs["status"]
    assert isinstance(status, dict)
    assert [is_utc_iso(f["at"]) for f in status["recent_failures"]] == [True]
    assert status["check"]["level"] == "critical"  # a failed file, no daemon running
    assert outputs["retry"] == {"retried": 1}
    assert outputs["forget"] == {"watch": "inbox", "path": "f00001.txt", "forgotten": True}
    assert outputs["check-config"]["valid"] is True  # type: ignore[index]
    assert outputs["auth check"]["authenticated"] is True  # type: ignore[index]

    # push: one object per file on stdout, the progress on stderr.
    sample = tmp_path / "push-me.txt"
    sample.write_text("pushed")
    done = syncd("push", "-c", str(config), "--folder", "0", str(sample), "--json",
                 "--state-file", str(tmp_path / "push.json"))
    assert done.returncode == 0, done.stderr
    (pushed,) = [json.loads(line) for line in done.stdout.splitlines()]
    assert pushed["outcome"] == "uploaded" and pushed["file_id"]

    # once/run: the log itself becomes JSON lines (with ISO 8601 UTC timestamps).
    (tmp_path / "inbox" / "once.txt").write_text("once")
    data = yaml.safe_load(config.read_text())
    data |= {"readiness": {"settle": "200ms", "closed_settle": "100ms"}, "logging": {"format": "console"}}
    config.write_text(yaml.safe_dump(data))
    done = syncd("once", "-c", str(config), "--json")
    events = [json.loads(line) for line in done.stderr.splitlines()]
    assert "daemon_stopped" in [e["event"] for e in events], done.stderr[-2000:]
    assert all(is_utc_iso(e["timestamp"]) for e in events)

    # An invalid config under --json: the problems as data, exit 2.
    config.write_text("box: {auth: {type: developer_token}}\nwatches: nope\n")
    done = syncd("check-config", "-c", str(config), "--json")
    report = json.loads(done.stdout)
    assert done.returncode == 2 and report["valid"] is False
    assert {p["key"] for p in report["problems"]} >= {"box.auth.token", "watches", "journal"}


def test_status_check_exit_codes_for_monitoring(tmp_path: Path) -> None:
    config = write_config(tmp_path, alerts={"pending_older_than": "1h"})

    def check() -> tuple[int, str]:
        done = syncd("status", "--check", "-c", str(config))
        return done.returncode, done.stdout.strip()

    code, line = check()
    assert (code, line) == (3, f"SYNCD UNKNOWN - no journal at {tmp_path / 'journal.db'} yet: "
                               "the daemon has not run with this configuration")
    journal = journal_with_history(tmp_path, files=0)  # this process holds the daemon lock: "running"
    try:
        assert check() == (0, "SYNCD OK")
        journal.observe("inbox", "late.pdf", 10, 1, 1, now=time.time() - 7200)
        code, line = check()
        assert code == 1 and line.startswith("SYNCD WARNING - inbox:late.pdf has been pending for 2h")
        publish(journal.path, PublishedState(os.getpid(), time.time(), (), ReloadResult(False, time.time(), "bad")))
        assert "last reload rejected: bad" in check()[1]
        claimed = journal.claim_next(time.time())
        assert claimed is not None
        journal.claimed(claimed).mark_failed("no", "access_denied")
        code, line = check()
        assert code == 2 and line.startswith("SYNCD CRITICAL - 1 failed file(s)")
        journal.retry(None, None)
        refusal = BoxRefusal("credentials", "401 after a refused refresh", time.time())
        publish(journal.path, PublishedState(os.getpid(), time.time(), (refusal,)))
        code, line = check()
        assert code == 2 and line.startswith("SYNCD CRITICAL - Box refuses credentials: 401 after a refused refresh; "
                                             "inbox:late.pdf has been pending for 2h")
        # A state file left by another process (a dead daemon) is not believed.
        publish(journal.path, PublishedState(os.getpid() + 1, time.time(), (refusal,)))
        assert check()[0] == 1
    finally:
        journal.close()
    code, line = check()
    assert code == 2 and "daemon not running" in line
    config.write_text("watches: nope\n")
    assert check()[0] == 3


@pytest.mark.parametrize("source", ["credential", "env", "file"])
def test_read_only_commands_need_no_secret(tmp_path: Path, source: str) -> None:
    """The documented production setup, from a root shell: no $CREDENTIALS_DIRECTORY, no token."""
    secret_file = tmp_path / "token"
    secret_file.write_text("file-secret-2291")
    secret_file.chmod(0o600)
    token = {"credential": {"credential": "box-token"}, "env": {"env": "BOX_TOKEN_FOR_TEST"},
             "file": {"file": str(secret_file)}}[source]
    config = write_config(tmp_path, token=token)
    journal_with_history(tmp_path, files=2).close()
    for args in (["status"], ["status", "--json"], ["history"], ["retry", "--failed"],
                 ["forget", "inbox:f00000.txt"], ["check-config"]):
        done = syncd(*args, "-c", str(config))
        assert done.returncode in (0, 1), (args, done.stderr)  # retry: 1 = nothing to retry
        assert "CREDENTIALS_DIRECTORY is not set" not in done.stderr and "invalid configuration" not in done.stderr
        assert "file-secret-2291" not in done.stdout + done.stderr
    checked = syncd("check-config", "-c", str(config)).stdout
    expected = {"credential": "not verified outside systemd", "env": "not set in this environment",
                "file": "present, mode 0600, not read"}[source]
    assert f"box.auth.token from {source}" in checked and expected in checked, checked
    if source != "file":
        # The commands that talk to Box still resolve secrets, and say what is missing.
        done = syncd("once", "-c", str(config))
        assert done.returncode == 2 and "box.auth.token" in done.stderr
