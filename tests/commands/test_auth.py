"""`syncd auth login` and `syncd auth check` against the real emulator's OAuth endpoints."""

from __future__ import annotations

import json
import re
import stat
import subprocess
import sys
import time
from pathlib import Path

import requests
import yaml

SYNCD = [sys.executable, "-m", "syncd"]


def oauth_config(tmp_path: Path, emulator) -> Path:
    (tmp_path / "inbox").mkdir(exist_ok=True)
    config = {
        "box": {"api_url": emulator.api_url, "upload_url": emulator.upload_url, "token_url": emulator.token_url,
                "auth": {"type": "oauth", "client_id": "syncd-emulator-client",
                         "client_secret": "syncd-emulator-secret", "token_store": str(tmp_path / "tokens.json")}},
        "journal": str(tmp_path / "journal.db"),
        "watches": [{"path": str(tmp_path / "inbox"), "folder_id": "0"}],
    }
    path = tmp_path / "syncd.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_login_through_the_loopback_redirect_then_check(tmp_path, emulator):
    config = oauth_config(tmp_path, emulator)
    login = subprocess.Popen(SYNCD + ["auth", "login", "-c", str(config), "--timeout", "60"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = None
    deadline = time.monotonic() + 30
    while url is None and time.monotonic() < deadline:
        line = login.stderr.readline()
        match = re.search(r"(http://\S+/api/oauth2/authorize\?\S+)", line)
        url = match.group(1) if match else None
    assert url, "login printed no authorize URL"
    # The "browser": the emulator approves and redirects to syncd's loopback listener.
    answer = requests.get(url, timeout=10, allow_redirects=True)
    assert answer.status_code == 200 and "authorization received" in answer.text
    out, err = login.communicate(timeout=30)
    assert login.returncode == 0, err
    store = tmp_path / "tokens.json"
    assert stat.S_IMODE(store.stat().st_mode) == 0o600
    assert json.loads(store.read_text())["refresh_token"]
    assert "syncd-emulator-secret" not in out + err
    check = subprocess.run(SYNCD + ["auth", "check", "-c", str(config)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr
    assert "authenticated as Emulator User" in check.stdout and "using oauth" in check.stdout


def test_login_with_a_pasted_code_refuses_a_bad_one(tmp_path, emulator):
    config = oauth_config(tmp_path, emulator)
    bad = subprocess.run(SYNCD + ["auth", "login", "-c", str(config), "--code", "not-a-code"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "invalid_grant" in bad.stderr
    assert not (tmp_path / "tokens.json").exists()


def test_check_reports_refused_credentials(tmp_path, emulator):
    (tmp_path / "inbox").mkdir()
    config = tmp_path / "syncd.yaml"
    config.write_text(yaml.safe_dump({
        "box": {"api_url": emulator.api_url, "upload_url": emulator.upload_url,
                "auth": {"type": "developer_token", "token": "wrong-token"}},
        "journal": str(tmp_path / "journal.db"),
        "watches": [{"path": str(tmp_path / "inbox"), "folder_id": "0"}],
    }))
    check = subprocess.run(SYNCD + ["auth", "check", "-c", str(config)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 1 and "do not work" in check.stderr
    assert "wrong-token" not in check.stdout + check.stderr
