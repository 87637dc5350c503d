"""The emulator's own TLS: real HTTPS clients that trust only the emulator's throwaway CA."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from syncd.emulator.tls import DEFAULT_NAMES, self_signed
from tests.emulator.wire import sha_digest
from tests.support.emulator import EmulatorProcess

REPO_ROOT = Path(__file__).resolve().parents[2]
KIB = 1024
ARGS = ("--min-chunked-size", "1000", "--part-sizes", f"*={KIB}")


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    with EmulatorProcess(tmp_path_factory.mktemp("tls"), *ARGS, tls=True) as process:
        yield process


def https_client(box: EmulatorProcess) -> requests.Session:
    """requests trusting the emulator's CA file and nothing else."""
    assert box.ca_file is not None
    session = requests.Session()
    session.verify = str(box.ca_file)
    session.trust_env = False  # no REQUESTS_CA_BUNDLE or proxy from the environment
    session.headers["Authorization"] = f"Bearer {box.token}"
    return session


def test_an_https_client_lists_uploads_chunks_and_downloads(box: EmulatorProcess) -> None:
    assert box.api_url.startswith("https://127.0.0.1:") and box.ca_file == box.data_dir / "tls" / "ca.pem"
    client = https_client(box)
    folder = client.post(f"{box.api_url}/folders", json={"name": "secure", "parent": {"id": "0"}}, timeout=30).json()

    small = b"over tls\n" * 20
    files = [("attributes", (None, json.dumps({"name": "small.txt", "parent": {"id": folder["id"]}}))),
             ("file", ("small.txt", small))]
    uploaded = client.post(f"{box.upload_url}/files/content", files=files, timeout=30)
    assert uploaded.status_code == 201 and uploaded.json()["entries"][0]["sha1"] == hashlib.sha1(small).hexdigest()

    big = os.urandom(3 * KIB + 5)
    session = client.post(f"{box.upload_url}/files/upload_sessions", timeout=30,
                          json={"folder_id": folder["id"], "file_size": len(big), "file_name": "big.bin"}).json()
    # Absolute URLs carry the scheme the request came in on.
    assert all(url.startswith(f"{box.origin}/api/2.0/files/upload_sessions/")
               for url in session["session_endpoints"].values())
    parts = []
    for offset in range(0, len(big), KIB):
        chunk = big[offset:offset + KIB]
        reply = client.put(session["session_endpoints"]["upload_part"], data=chunk, timeout=30, headers={
            "Digest": sha_digest(chunk), "Content-Range": f"bytes {offset}-{offset + len(chunk) - 1}/{len(big)}"})
        assert reply.status_code == 200, reply.text
        parts.append(reply.json()["part"])
    done = client.post(session["session_endpoints"]["commit"], json={"parts": parts}, timeout=30,
                       headers={"Digest": sha_digest(big)})
    assert done.status_code == 201, done.text
    big_id = done.json()["entries"][0]["id"]

    listing = client.get(f"{box.api_url}/folders/{folder['id']}/items", timeout=30).json()
    assert sorted(entry["name"] for entry in listing["entries"]) == ["big.bin", "small.txt"]

    redirect = client.get(f"{box.api_url}/files/{big_id}/content", allow_redirects=False, timeout=30)
    assert redirect.status_code == 302 and redirect.headers["Location"].startswith(f"{box.origin}/d/1/")
    assert client.get(f"{box.api_url}/files/{big_id}/content", timeout=30).content == big
    ranged = client.get(f"{box.api_url}/files/{big_id}/content", headers={"Range": "bytes=1000-1100"}, timeout=30)
    assert ranged.status_code == 206 and ranged.content == big[1000:1101]

    # A client trusting only the public CAs refuses the emulator's certificate ...
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{box.api_url}/users/me", headers={"Authorization": f"Bearer {box.token}"}, timeout=30,
                     verify=True)
    # ... which costs the emulator nothing.
    assert client.get(f"{box.api_url}/users/me", timeout=30).status_code == 200


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to `host` (checked against the certificate) while connecting to 127.0.0.1."""

    def connect(self) -> None:
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=self.timeout)
        self.sock = self._context.wrap_socket(raw, server_hostname=self.host)  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", DEFAULT_NAMES)
def test_the_certificate_names_loopback_and_boxs_hosts(box: EmulatorProcess, name: str) -> None:
    context = ssl.create_default_context(cafile=str(box.ca_file))
    context.verify_flags |= ssl.VERIFY_X509_STRICT  # what Python 3.13 verifies by default
    connection = _PinnedHTTPSConnection(name, box.port, context=context, timeout=30)
    try:
        connection.request("POST", "/api/2.0/files/upload_sessions",
                           body=json.dumps({"folder_id": "0", "file_size": 2000, "file_name": f"{name}.bin"}),
                           headers={"Authorization": f"Bearer {box.token}", "Content-Type": "application/json"})
        reply = connection.getresponse()
        body: dict[str, Any] = json.loads(reply.read())
    finally:
        connection.close()
    assert reply.status == 201
    host = f"[{name}]" if ":" in name else name
    assert body["session_endpoints"]["plan"].startswith(f"https://{host}:{box.port}/api/2.0/files/upload_sessions/")


def test_plain_http_stays_available_on_the_same_port(box: EmulatorProcess) -> None:
    plain = f"http://127.0.0.1:{box.port}"
    reply = requests.post(f"{plain}/api/2.0/files/upload_sessions", headers={"Authorization": f"Bearer {box.token}"},
                          json={"folder_id": "0", "file_size": 2000, "file_name": "plain.bin"}, timeout=30)
    assert reply.status_code == 201
    assert reply.json()["session_endpoints"]["commit"].startswith(f"{plain}/api/2.0/")


def test_the_ca_outlives_a_restart_and_new_names_keep_it(tmp_path: Path) -> None:
    box = EmulatorProcess(tmp_path / "box", tls=True).start()
    try:
        ca_before = box.ca_file.read_bytes() if box.ca_file else b""
        cert_before = (box.data_dir / "tls" / "server.pem").read_bytes()
        box.restart()
        assert box.ca_file is not None and box.ca_file.read_bytes() == ca_before
        assert (box.data_dir / "tls" / "server.pem").read_bytes() == cert_before
        assert https_client(box).get(f"{box.api_url}/users/me", timeout=30).status_code == 200
    finally:
        box.stop()
    # A name the certificate lacks gets a new server certificate from the same CA.
    files = self_signed(tmp_path / "box" / "tls", ("emulator.internal.test",))
    assert files.ca is not None and files.ca.read_bytes() == ca_before
    assert files.cert.read_bytes() != cert_before
    assert oct((tmp_path / "box" / "tls" / "ca-key.pem").stat().st_mode & 0o777) == "0o600"
    assert oct(files.key.stat().st_mode & 0o777) == "0o600"


def test_given_certificate_files_and_their_errors(tmp_path: Path) -> None:
    mine = self_signed(tmp_path / "mine")
    box = EmulatorProcess(tmp_path / "box", "--tls-cert", str(mine.cert), "--tls-key", str(mine.key)).start()
    try:
        assert box.api_url.startswith("https://") and box.ca_file is None  # not the emulator's CA
        reply = requests.get(f"{box.api_url}/users/me", headers={"Authorization": f"Bearer {box.token}"},
                             verify=str(mine.ca), timeout=30)
        assert reply.status_code == 200
    finally:
        box.stop()

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "syncd.emulator", "--port", "0", "--data", str(tmp_path / "d"),
                               *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=30)

    for args, fragment in ((("--tls-cert", str(mine.cert)), "--tls-key"),
                           (("--tls-cert", str(tmp_path / "none.pem"), "--tls-key", str(mine.key)), "not found"),
                           (("--tls-cert", str(mine.key), "--tls-key", str(mine.key)), "cannot load"),
                           (("--tls-cert", str(mine.cert), "--tls-key", str(mine.key), "--tls-self-signed"),
                            "--tls-self-signed"),
                           (("--tls-name", "x.test"), "--tls-self-signed")):
        result = run(*args)
        assert result.returncode == 2 and fragment in result.stderr, (args, result.stderr)
