"""Secrets nowhere (issue 11): ingestions with every kind of secret, and each one looked for in
everything syncd writes or shows: the journal database file (and its WAL), `syncd status --json`,
`syncd history --json`, `/metrics`, the daemon's log, and what a real systemd-journald received.

The secrets: a developer token; an OAuth client secret with its stored refresh token and every
access and refresh token Box hands out while the daemon runs (the emulator's access tokens live
2 s, so they rotate during the run, and a 401 window forces refreshes that Box refuses); a Client
Credentials secret and its access tokens; a JWT app's client secret, private key and passphrase
and its access tokens. Run-time tokens are recorded on their way from the token endpoint by a
small forwarder the daemon is pointed at, so the test knows each one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from syncd.box import TokenStore
from tests.daemon.daemon_process import (
    Watch, config_data, free_port, history_json, local_files, run_syncd, status_json, wait_for_box, wait_until,
    write_config,
)
from tests.daemon.drops import write_file
from tests.emulator.wire import create_folder

REPO = Path(__file__).resolve().parents[2]
DEV_TOKEN = "devtoken-5e1f0a9c7b33"
CLIENT_ID = "syncd-emulator-client"
CLIENT_SECRET = "clientsecret-91c4e2d7aa08"
PASSPHRASE = "jwt-passphrase-77d1c0b3"
ENTERPRISE = "1234567"
USER = "11446498"  # the emulator's default user: the CCG and JWT runs act as it, into folders it owns


class TokenRecorder:
    """Forwards token requests to the emulator and remembers every token in the answers.

    It is also a careless server: a refused grant's error_description echoes the form it was
    sent (refresh token, client secret, assertion), so the secrets reach syncd's error text and
    only syncd's redaction keeps them out of what it writes.
    """

    def __init__(self, token_url: str) -> None:
        self.tokens: set[str] = set()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                answer = requests.post(token_url, data=body, timeout=30,
                                       headers={"Content-Type": self.headers.get("Content-Type", "")})
                content = answer.content
                if answer.ok:
                    data = answer.json()
                    recorder.tokens.update(data[k] for k in ("access_token", "refresh_token") if data.get(k))
                else:
                    form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
                    refusal = answer.json()
                    refusal["error_description"] = f"{refusal.get('error_description')} for {form}"
                    content = json.dumps(refusal).encode()
                self.send_response(answer.status_code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/oauth2/token"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def jwt_app_config(tmp_path: Path, emulator) -> tuple[Path, str]:
    """A Box app config for JWT (key encrypted with PASSPHRASE); returns it and a piece of the key's PEM."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    emulator.register_jwt_key("kid-secrets", key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.BestAvailableEncryption(PASSPHRASE.encode())).decode()
    path = tmp_path / "box_config.json"
    path.write_text(json.dumps({"boxAppSettings": {"clientID": CLIENT_ID, "clientSecret": CLIENT_SECRET, "appAuth": {
        "publicKeyID": "kid-secrets", "privateKey": pem}}, "enterpriseID": ENTERPRISE}))
    path.chmod(0o600)
    return path, pem.splitlines()[5]


def ingest(tmp_path: Path, name: str, emulator, auth: dict, *, token_url: str | None,
           journald: bool = False) -> list[str]:
    """Run an ingestion with `auth` (through a 401 window) and return every text it produced."""
    inbox = tmp_path / name / "inbox"
    inbox.mkdir(parents=True)
    folder = create_folder(emulator, name).json()["id"]
    port = free_port()
    config = write_config(tmp_path / name / "syncd.yaml", config_data(
        emulator, tmp_path / name / "var" / "journal.db", [Watch(inbox, folder_id=folder)], auth=auth,
        box={"token_url": token_url} if token_url else None, readiness={"settle": "200ms"},
        retry={"max_attempts": 3, "initial_backoff": "300ms", "max_backoff": "1s"},
        metrics={"listen": f"127.0.0.1:{port}"},
        logging={"format": "journald" if journald else "json", "level": "debug"}))
    log_path = tmp_path / name / "daemon.log"
    stop_file = tmp_path / name / "stop"
    if journald:
        daemon = subprocess.Popen(["unshare", "--mount", "--propagation", "private", sys.executable,
                                   str(REPO / "tests/daemon/journald_daemon.py"), str(config), str(stop_file)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                                  env={**os.environ, "PYTHONPATH": str(REPO)})
    else:
        with log_path.open("wb") as log:
            daemon = subprocess.Popen([sys.executable, "-m", "syncd", "run", "--config", str(config)],
                                      stdout=log, stderr=subprocess.STDOUT)
    outputs: list[str] = []
    try:
        for i in range(3):
            write_file(inbox / f"first/{i}.txt", os.urandom(100 + i))
        wait_for_box(emulator, {f"first/{i}.txt": local_files(inbox)[f"first/{i}.txt"] for i in range(3)},
                     timeout=60, folder_id=folder)
        # Box refuses us for a moment: 401s, refused refreshes, the breaker's reasons, deferred files.
        emulator.faults(refuse={"status": 401, "seconds": 1})
        for i in range(3):
            write_file(inbox / f"second/{i}.txt", os.urandom(200 + i))
        wait_until(lambda: emulator.faults()["refuse"] is None, timeout=10)  # (the test reads Box after it)
        wait_for_box(emulator, local_files(inbox), timeout=60, folder_id=folder)
        outputs.append(run_syncd("status", "--config", str(config), "--json").stdout)
        outputs.append(json.dumps(history_json(config)))
        outputs.append(requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text)
        outputs.append(requests.get(f"http://127.0.0.1:{port}/healthz", timeout=10).text)
        outputs += [p.read_bytes().decode("latin-1") for p in (tmp_path / name / "var").iterdir() if p.is_file()]
    finally:
        stop_file.touch()
        if not journald:
            daemon.terminate()
        stdout, stderr = daemon.communicate(timeout=90)
    assert daemon.returncode == 0, stderr
    assert status_json(config)["counts"]["uploaded"] == 6
    outputs += [p.read_bytes().decode("latin-1") for p in (tmp_path / name / "var").iterdir() if p.is_file()]
    if journald:
        entries = [json.loads(line) for line in stdout.splitlines() if line.strip()]
        assert any(e.get("SYSLOG_IDENTIFIER") == "syncd" and "upload_committed" in e.get("MESSAGE", "")
                   for e in entries), "journald received no syncd entries"
        outputs += [stdout, stderr]
    else:
        text = log_path.read_text()
        assert "upload_committed" in text and "box_refusing" in text  # the log covers the refusal too
        outputs.append(text)
    return outputs


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_no_secret_in_the_journal_status_history_metrics_logs_or_journald(tmp_path: Path, emulator_factory):
    emulator = emulator_factory("--client-secret", CLIENT_SECRET, "--token-ttl", "2", token=DEV_TOKEN)
    recorder = TokenRecorder(emulator.token_url)
    try:
        store = tmp_path / "box-token.json"
        stored = emulator.mint_tokens()["refresh_token"]
        TokenStore(store).save(stored)
        app_config, key_piece = jwt_app_config(tmp_path, emulator)
        oauth = {"type": "oauth", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "token_store": str(store)}
        runs = {
            "developer-token": {"type": "developer_token", "token": DEV_TOKEN},
            "oauth": oauth,
            "client-credentials": {"type": "client_credentials", "client_id": CLIENT_ID,
                                   "client_secret": CLIENT_SECRET, "subject_type": "user", "subject_id": USER},
            "jwt": {"type": "jwt", "app_config": str(app_config), "private_key_passphrase": PASSPHRASE,
                    "subject_type": "user", "subject_id": USER},
        }
        seen: dict[str, list[str]] = {}
        for name, auth in runs.items():
            # Every auth but the developer token fetches its tokens through the recorder.
            token_url = None if auth["type"] == "developer_token" else recorder.url
            seen[name] = ingest(tmp_path, name, emulator, auth, token_url=token_url)
        seen["oauth-journald"] = ingest(tmp_path, "oauth-journald", emulator, oauth, token_url=recorder.url,
                                        journald=True)
        secrets = {DEV_TOKEN, CLIENT_SECRET, PASSPHRASE, key_piece, stored, *recorder.tokens}
        # Refreshes really rotated tokens during the runs (a few per run at least).
        assert len(recorder.tokens) >= 10, len(recorder.tokens)
        leaks = {(name, secret[:6]) for name, texts in seen.items() for text in texts for secret in secrets
                 if secret in text}
        assert not leaks, f"secrets found in the output of: {sorted(leaks)}"
    finally:
        recorder.close()

