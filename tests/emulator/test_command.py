"""The `syncd emulator` command line: help, option validation, start line, shutdown."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import requests

from tests.emulator.wire import auth, create_session, put_part, upload
from tests.support.emulator import EmulatorProcess

REPO_ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str, timeout: float = 30, full_cli: bool = False) -> subprocess.CompletedProcess[str]:
    """`python -m syncd emulator` (full_cli) or the lighter `python -m syncd.emulator` (same options)."""
    entry = ["-m", "syncd", "emulator"] if full_cli else ["-m", "syncd.emulator"]
    return subprocess.run([sys.executable, *entry, *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=timeout)


def test_help_documents_every_knob_and_the_choices() -> None:
    result = run_cli("--help", full_cli=True)
    assert result.returncode == 0
    for option in ("--file-conflicts", "--part-overlap-status", "--version-upload-status", "--unauthorized-body",
                   "--host", "--port", "--data", "--token", "--public-url", "--latency-ms", "--bandwidth",
                   "--upload-rate-limit", "--api-rate-limit", "--commit-202", "--commit-retry-after",
                   "--fail-rate", "--drop-rate", "--token-ttl", "--max-file-size", "--storage-quota",
                   "--min-chunked-size", "--part-sizes", "--seed", "--jwt-public-key", "--jwt-key-id",
                   "--tls-cert", "--tls-key", "--tls-self-signed", "--tls-name", "--allow-remote", "--admin-token"):
        assert option in result.stdout, option
    assert "range_overlaps_existing_part" in result.stdout and "parts_mismatch" in result.stdout
    for topic in ("session_endpoints.plan", "302", "/d/1/", "Range", "POST /oauth/tokens", "ca.pem",
                  "SSL_CERT_FILE", "NODE_EXTRA_CA_CERTS", "api.box.com", "file part alone", "sha512 on every entry"):
        assert topic in result.stdout, topic


def test_bad_options_exit_2_with_a_clear_message(tmp_path: Path) -> None:
    for args, fragment in ((("--fail-rate", "3"), "fail_rate"), (("--part-sizes", "huge"), "part-size"),
                           (("--jwt-key-id", "k"), "--jwt-public-key"), (("--token", ""), "--token")):
        result = run_cli("--port", "0", "--data", str(tmp_path / "d"), *args)
        assert result.returncode == 2 and fragment in result.stderr, (args, result.stderr)
    assert run_cli("--port", "0").returncode == 2  # --data is required


def test_port_in_use_and_clean_sigterm(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = run_cli("--port", str(taken.getsockname()[1]), "--data", str(tmp_path / "d"))
        assert result.returncode == 1 and "cannot listen" in result.stderr
    box = EmulatorProcess(tmp_path / "d2").start()
    assert box.api_url.endswith("/2.0") and box.upload_url.endswith("/api/2.0")
    assert box.token_url.endswith("/oauth2/token")
    assert box.process is not None
    box.process.send_signal(signal.SIGTERM)
    assert box.process.wait(10) == 0
    assert "dev-token" not in box.stderr


def test_compatibility_switches(emulator_factory) -> None:
    box = emulator_factory("--file-conflicts", "array", "--part-overlap-status", "409",
                           "--version-upload-status", "200", "--unauthorized-body", "empty",
                           "--min-chunked-size", "1000", "--part-sizes", "*=1KiB")
    first = upload(box, "same.txt", b"1").json()["entries"][0]
    clash = upload(box, "same.txt", b"2")
    assert clash.status_code == 409 and clash.json()["context_info"]["conflicts"][0]["id"] == first["id"]
    files = [("attributes", (None, "{}")), ("file", ("f", b"v2"))]
    version = requests.post(f"{box.upload_url}/files/{first['id']}/content", files=files, headers=auth(box),
                            timeout=30)
    assert version.status_code == 200
    session = create_session(box, "parts.bin", 2000).json()
    data = os.urandom(1024)
    assert put_part(box, session, data, 0, 2000).status_code == 200
    overlap = put_part(box, session, data, 0, 2000)
    assert overlap.status_code == 409 and overlap.json()["code"] == "range_overlaps_existing_part"
    denied = requests.get(f"{box.api_url}/users/me", timeout=30)
    assert denied.status_code == 401 and denied.content == b"" and "invalid_token" in denied.headers["WWW-Authenticate"]


def test_ipv6_loopback(tmp_path: Path) -> None:
    process = subprocess.Popen([sys.executable, "-m", "syncd.emulator", "--host", "::1", "--port", "0",
                                "--data", str(tmp_path / "v6")], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline() if process.stdout else ""
        assert line.startswith("syncd emulator listening: api=http://[::1]:"), line
        api = line.split("api=")[1].split()[0]
        reply = requests.options(f"{api}/files/content", json={"name": "v6.txt", "parent": {"id": "0"}},
                                 headers={"Authorization": "Bearer dev-token"}, timeout=30)
        assert reply.status_code == 200 and reply.json()["upload_url"].startswith("http://[::1]:")
    finally:
        process.terminate()
        assert process.wait(10) == 0


def test_a_non_loopback_address_needs_allow_remote(tmp_path: Path) -> None:
    for host in ("0.0.0.0", "::"):
        result = run_cli("--host", host, "--port", "0", "--data", str(tmp_path / "d"))
        assert result.returncode == 2, (host, result.stderr)
        assert f"refusing to listen on {host}" in result.stderr and "--allow-remote" in result.stderr
    assert not (tmp_path / "d").exists()  # refused before anything was created
    process = subprocess.Popen([sys.executable, "-m", "syncd.emulator", "--host", "0.0.0.0", "--port", "0",
                                "--allow-remote", "--data", str(tmp_path / "open")], cwd=REPO_ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline() if process.stdout else ""
        assert line.startswith("syncd emulator listening: api=http://0.0.0.0:"), line
        port = line.split("api=http://0.0.0.0:")[1].split("/")[0]
        reply = requests.get(f"http://127.0.0.1:{port}/2.0/users/me", headers={"Authorization": "Bearer dev-token"},
                             timeout=30)
        assert reply.status_code == 200
    finally:
        process.terminate()
        assert process.wait(10) == 0
    assert process.stderr is not None and "--admin-token" in process.stderr.read()  # the warning


def test_the_admin_api_can_require_a_token(tmp_path: Path) -> None:
    secret = "admin-" + os.urandom(8).hex()
    box = EmulatorProcess(tmp_path / "d", admin_token=secret).start()
    try:
        assert box.faults()["fail_rate"] == 0  # the harness sends the token
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {secret}"}):
            reply = requests.get(f"{box.origin}/_emulator/stats", headers=headers, timeout=30)
            assert reply.status_code == 401 and reply.json()["code"] == "unauthorized", headers
            assert secret not in reply.text
        assert requests.post(f"{box.origin}/_emulator/oauth/tokens", timeout=30).status_code == 401
        assert requests.get(f"{box.api_url}/users/me", headers=auth(box), timeout=30).status_code == 200
        assert box.process is not None and secret not in " ".join(box.process.args)  # not on the command line
    finally:
        box.stop()
    assert secret not in box.stderr
    assert run_cli("--port", "0", "--data", str(tmp_path / "e"), "--admin-token", "").returncode == 2
