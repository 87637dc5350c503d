"""A process killed between Box rotating the OAuth refresh token and writing the new one.

Box's refresh tokens are single use with no grace period (Box's developer guide on refresh
tokens; the emulator models exactly that, docs/EMULATOR.md): once Box has answered a
refresh, the token on disk is spent. A real process is SIGKILLed after Box's answer arrived and before a
byte of the new token reached the token store. What follows is the documented
recovery (deploy/README.md): the daemon does not fail a file, it pauses uploads and
says which token store to renew and how; `syncd auth check` says the same; the
operator runs `syncd auth login`, and the running daemon uploads without a restart.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests

from syncd.box import TokenStore
from tests.daemon.daemon_process import (
    Watch, config_data, local_files, status_json, syncd_command, wait_for_box, write_config,
)
from tests.daemon.drops import write_file

CLIENT_ID = "syncd-emulator-client"
CLIENT_SECRET = "syncd-emulator-secret"
REPO = Path(__file__).resolve().parents[2]

# The real OAuthRefreshAuth and the real token endpoint; the store dies as it is asked to
# write, i.e. after Box rotated the token and its answer was read, before anything is on disk.
KILLED_BEFORE_THE_WRITE = r"""
import os, signal, sys
from syncd.box import OAuthRefreshAuth, TokenStore

class DiesBeforeWriting(TokenStore):
    def save(self, refresh_token):
        os.kill(os.getpid(), signal.SIGKILL)

auth = OAuthRefreshAuth(sys.argv[1], sys.argv[2], DiesBeforeWriting(sys.argv[3]), token_url=sys.argv[4])
auth.access_token()
"""

ADVICE = "run `syncd auth login` to authorize syncd again"


def authorization_code(emulator) -> str:
    """What the browser step of `syncd auth login` yields: the emulator approves at once."""
    query = urlencode({"response_type": "code", "client_id": CLIENT_ID, "state": "s",
                       "redirect_uri": "http://127.0.0.1/callback"})
    answer = requests.get(f"{emulator.origin}/api/oauth2/authorize?{query}", allow_redirects=False, timeout=10)
    assert answer.status_code == 302, answer.text
    return parse_qs(urlsplit(answer.headers["Location"]).query)["code"][0]


@pytest.mark.timeout(180)
def test_killed_between_rotation_and_write_pauses_then_recovers_by_auth_login(
        tmp_path: Path, emulator, daemon_factory):
    store = TokenStore(tmp_path / "state" / "box-token.json")
    spent = emulator.mint_refresh_token()
    store.save(spent)
    child = subprocess.run(
        [sys.executable, "-c", KILLED_BEFORE_THE_WRITE, CLIENT_ID, CLIENT_SECRET, str(store.path),
         emulator.token_url], capture_output=True, timeout=60, cwd=REPO)
    assert child.returncode == -9, child.stderr.decode()
    assert emulator.stats()["requests"]["oauth.token"] == {"200": 1}  # Box rotated it...
    assert store.load() == spent  # ...and the new one never reached the disk
    assert not list(store.path.parent.glob(".*.tmp"))

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    write_file(inbox / "report.pdf", b"%PDF-1.7 quarterly")
    config = write_config(tmp_path / "syncd.yaml", config_data(
        emulator, tmp_path / "var" / "journal.db", [Watch(inbox)], readiness={"settle": "200ms"},
        auth={"type": "oauth", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
              "token_store": str(store.path)}))
    daemon = daemon_factory(config).start()

    # No automatic way back exists (the token is spent on Box's side): the daemon pauses
    # uploads and says what to do; the file waits, neither failed nor lost.
    refused = daemon.wait_for_event("box_credentials_refused", timeout=60)
    assert "invalid_grant" in refused["reason"] and ADVICE in refused["reason"], refused
    assert str(store.path) in refused["reason"], refused
    assert daemon.running()
    status = status_json(config)
    assert status["counts"]["failed"] == 0 and status["counts"]["uploaded"] == 0, status["counts"]
    check = subprocess.run(syncd_command("auth", "check", "-c", str(config)), capture_output=True, text=True,
                           timeout=60, cwd=REPO)
    assert check.returncode == 1 and ADVICE in check.stderr, check.stderr

    # The documented fix, while the daemon runs: authorize again.
    login = subprocess.run(syncd_command("auth", "login", "-c", str(config), "--code", authorization_code(emulator)),
                           capture_output=True, text=True, timeout=60, cwd=REPO)
    assert login.returncode == 0, login.stderr
    assert store.load() != spent
    wait_for_box(emulator, local_files(inbox), timeout=90, daemon=daemon)
    assert daemon.stop() == 0
    assert status_json(config)["counts"]["uploaded"] == 1
    for text in (daemon.log_text(), check.stdout + check.stderr, login.stdout + login.stderr):
        assert spent not in text and CLIENT_SECRET not in text
