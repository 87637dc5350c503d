"""Run the emulator (`python -m syncd.emulator`) in a subprocess: for syncd's own
tests and benchmarks, and for anyone's test suite that wants a Box to talk to.

    with EmulatorProcess(tmp_path / "box", "--latency-ms", "40") as box:
        ...  # point a client at box.api_url / box.upload_url with box.token
        box.faults(fail_rate=0.05)
        box.stats()["requests"]

The read helpers use plain `requests` against the emulator's HTTP API, so a
test can check what "Box" holds independently of the client under test.

With `tls=True` it serves HTTPS with a throwaway CA (`--tls-self-signed`):
`box.ca_file` is the file to trust (e.g. REQUESTS_CA_BUNDLE), and the helpers
trust it. `port=443, host="127.0.0.1"` plus an /etc/hosts entry for Box's host
names lets clients with fixed https://api.box.com URLs reach it (binding 443
needs the privilege to). `admin_token` starts it with an admin token (passed in
the environment, not on its command line) that the admin helpers then send.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import requests

from syncd.emulator.command import ADMIN_TOKEN_ENV

_LINE_RE = re.compile(r"api=(?P<api>\S+) upload=(?P<upload>\S+) token=(?P<token>\S+)(?: ca=(?P<ca>.+))?$")
START_TIMEOUT = 20.0


class EmulatorError(RuntimeError):
    """The emulator process failed to start or answered an admin call with an error."""


class EmulatorProcess:
    """One emulator process serving `data_dir`; start() binds an ephemeral port."""

    def __init__(self, data_dir: Path, *extra_args: str, token: str = "dev-token", tls: bool = False,
                 host: str = "127.0.0.1", port: int = 0, admin_token: str | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.extra_args = tuple(extra_args)
        self.token = token
        self.tls = tls
        self.host = host
        self.port = port
        self.admin_token = admin_token
        self.ca_file: Path | None = None  # the CA to trust, once a tls=True emulator started
        self.process: subprocess.Popen[str] | None = None
        self.origin = self.api_url = self.upload_url = self.token_url = ""
        self._http = requests.Session()
        self._stderr: list[str] = []

    def __repr__(self) -> str:
        return f"EmulatorProcess(origin={self.origin!r}, data_dir={str(self.data_dir)!r})"

    # -- lifecycle ---------------------------------------------------------
    def start(self) -> "EmulatorProcess":
        """Start the process and wait for its start line (reuses the port after a restart)."""
        if self.process is not None and self.process.poll() is None:
            raise EmulatorError("emulator already running")
        command = [sys.executable, "-m", "syncd.emulator", "--host", self.host, "--port", str(self.port),
                   "--data", str(self.data_dir), "--token", self.token,
                   *(["--tls-self-signed"] if self.tls else []), *self.extra_args]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env.pop(ADMIN_TOKEN_ENV, None)
        if self.admin_token is not None:
            env[ADMIN_TOKEN_ENV] = self.admin_token
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True, env=env)
        self._stderr = []
        threading.Thread(target=self._drain_stderr, args=(self.process,), daemon=True).start()
        line = self._read_start_line(self.process)
        match = _LINE_RE.search(line)
        if match is None:
            self.kill()
            raise EmulatorError(f"unexpected start line {line!r}; stderr: {''.join(self._stderr)[-2000:]}")
        self.api_url, self.upload_url, self.token_url = match["api"], match["upload"], match["token"]
        self.origin = self.api_url[: -len("/2.0")]
        self.port = int(self.origin.rsplit(":", 1)[1])
        if match["ca"]:
            self.ca_file = Path(match["ca"])
            self._http.verify = str(self.ca_file)
        return self

    def _read_start_line(self, process: subprocess.Popen[str]) -> str:
        result: list[str] = []
        reader = threading.Thread(target=lambda: result.append(process.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(START_TIMEOUT)
        if not result or not result[0]:
            process.kill()
            process.wait(5)
            raise EmulatorError(f"emulator did not start; stderr: {''.join(self._stderr)[-2000:]}")
        return result[0]

    def _drain_stderr(self, process: subprocess.Popen[str]) -> None:
        assert process.stderr is not None
        for line in process.stderr:
            self._stderr.append(line)

    @property
    def pid(self) -> int:
        """The emulator's process id (raises if it was never started)."""
        if self.process is None:
            raise EmulatorError("emulator not started")
        return self.process.pid

    @property
    def stderr(self) -> str:
        return "".join(self._stderr)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM and wait; returns the exit code (None if it was not running)."""
        process = self.process
        if process is None or process.poll() is not None:
            return None if process is None else process.returncode
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait(5)

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)

    def restart(self) -> "EmulatorProcess":
        self.stop()
        self._http.close()
        self._http = requests.Session()
        return self.start()

    def __enter__(self) -> "EmulatorProcess":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- admin helpers -----------------------------------------------------
    def _admin(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        headers = {"Authorization": f"Bearer {self.admin_token}"} if self.admin_token is not None else {}
        response = self._http.request(method, f"{self.origin}/_emulator/{path}", json=body, headers=headers,
                                      timeout=30)
        if response.status_code >= 400:
            raise EmulatorError(f"{method} /_emulator/{path} -> {response.status_code}: {response.text}")
        return response.json()

    def faults(self, **knobs: Any) -> dict[str, Any]:
        """PUT the given knobs (none: just GET the current values)."""
        if not knobs:
            return self._admin("GET", "faults")
        return self._admin("PUT", "faults", knobs)

    def stats(self) -> dict[str, Any]:
        return self._admin("GET", "stats")

    def part_bytes_received(self) -> int:
        """Request-body bytes the emulator received on part uploads since the last stats reset."""
        return int(self.stats()["bytes_received"].get("sessions.upload_part", 0))

    def reset_stats(self) -> None:
        self._admin("POST", "stats/reset")

    def advance_clock(self, seconds: float) -> str:
        return self._admin("POST", "clock", {"advance_seconds": seconds})["now"]

    def expire_tokens(self) -> None:
        self._admin("POST", "tokens/expire")

    def mint_tokens(self, user_id: str | None = None) -> dict[str, Any]:
        """A fresh access + refresh token pair for a user (default: the --token user), as
        the token endpoint answers it: start an OAuth client from its refresh_token."""
        return self._admin("POST", "oauth/tokens", {} if user_id is None else {"user_id": user_id})

    def mint_refresh_token(self, user_id: str | None = None) -> str:
        return self._admin("POST", "oauth/refresh-token", {} if user_id is None else {"user_id": user_id})[
            "refresh_token"]

    def register_jwt_key(self, kid: str, pem: str) -> None:
        self._admin("POST", "jwt-keys", {"kid": kid, "public_key_pem": pem})

    def create_user(self, name: str, login: str) -> dict[str, Any]:
        return self._admin("POST", "users", {"name": name, "login": login})

    # -- read helpers (plain requests, independent of syncd.box) -----------
    def _get(self, path: str, **params: Any) -> requests.Response:
        response = self._http.get(f"{self.api_url}{path}", params=params,
                                  headers={"Authorization": f"Bearer {self.token}"}, timeout=60)
        if response.status_code != 200:
            raise EmulatorError(f"GET {path} -> {response.status_code}: {response.text[:500]}")
        return response

    def folder_items(self, folder_id: str) -> list[dict[str, Any]]:
        """All entries of a folder (every page)."""
        entries: list[dict[str, Any]] = []
        offset = 0
        while True:
            page = self._get(f"/folders/{folder_id}/items", offset=offset, limit=1000).json()
            entries.extend(page["entries"])
            offset += len(page["entries"])
            if not page["entries"] or offset >= page["total_count"]:
                return entries

    def get_file(self, file_id: str) -> dict[str, Any]:
        return self._get(f"/files/{file_id}").json()

    def file_versions(self, file_id: str) -> list[dict[str, Any]]:
        return self._get(f"/files/{file_id}/versions").json()["entries"]

    def download(self, file_id: str) -> bytes:
        return self._get(f"/files/{file_id}/content").content

    # -- operator actions (plain requests, as someone working in Box would) --
    def delete_folder(self, folder_id: str, *, recursive: bool = True) -> None:
        """Move a folder (and, with `recursive`, everything in it) to the trash."""
        response = self._http.delete(f"{self.api_url}/folders/{folder_id}",
                                     params={"recursive": "true" if recursive else "false"},
                                     headers={"Authorization": f"Bearer {self.token}"}, timeout=60)
        if response.status_code != 204:
            raise EmulatorError(f"DELETE /folders/{folder_id} -> {response.status_code}: {response.text[:500]}")
