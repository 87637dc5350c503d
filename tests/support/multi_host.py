"""Several syncd hosts on one drop folder and one PostgreSQL journal (issue 16, docs/MULTI_HOST.md
section 10), for the multi-host daemon tests and `bench/multi_host.py`.

    group = HostGroup(work, emulator, database, lease="3s")
    a, b = group.add("a"), group.add("b", proxy=tcp_proxy)   # its own config, log, metrics port
    a.daemon.start(); b.daemon.start()
    ...                                                       # drop files into group.inbox
    report = group.verify()                                   # Box read back through the emulator's API
    assert report.clean(), report.counts()

Every host is configured as an operator would set up a shared mount (section 1): the same
watch (name, folder, Box folder id), the polling observer with `readiness.settle` at least
twice its interval, its own `host_id`, and `journal: {dsn, password: {file}, lease}` with the
password in a 0600 file, never in the DSN. A host given a `TcpProxy` reaches PostgreSQL
through it, so a test can cut that host alone off the database. Logs are JSON lines, one
file per host (every start of a host appends to it). The daemons are the real `syncd run`
(syncd.testing.daemon_process); what Box holds is read with bench.verifier (plain HTTP,
never the journal), the same independent reading the chaos runs use.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from bench.verifier import BoxReader, VerifyReport, verify
from syncd.emulator.harness import EmulatorProcess
from syncd.testing.daemon_process import DaemonProcess, Watch, config_data, status_json, write_config
from syncd.testing.postgres import free_port
from syncd.testing.tcp_proxy import TcpProxy
from tests.support.postgres import PgDatabase
from tests.support.waiting import wait_until

__all__ = ["POLL_INTERVAL", "SETTLE", "WATCH_NAME", "Host", "HostGroup"]

#: The watch every host has: the same name is what makes it one watch across hosts.
WATCH_NAME = "drop"
#: The polling observer's interval, and a settle of more than twice it (what the loader demands
#: on a polled folder: a file still being written must not look finished between two polls).
POLL_INTERVAL = "200ms"
SETTLE = "500ms"


@dataclass
class Host:
    """One syncd host of a group: its id, config, daemon process (not started), metrics port,
    and the proxy its PostgreSQL connections go through (None: straight to the server)."""

    host_id: str
    config: Path
    daemon: DaemonProcess
    metrics_port: int
    proxy: TcpProxy | None = None

    def __repr__(self) -> str:
        return f"Host({self.host_id!r}, running={self.daemon.running()})"

    def get(self, path: str) -> requests.Response:
        """GET one of the daemon's HTTP endpoints (`/metrics`, `/healthz`)."""
        return requests.get(f"http://127.0.0.1:{self.metrics_port}{path}", timeout=10)

    def events(self, name: str, **fields: Any) -> list[dict[str, Any]]:
        """Its log entries named `name` (every start) whose fields have the given values."""
        return [e for e in self.daemon.events(name) if all(e.get(k) == v for k, v in fields.items())]

    def committed(self) -> list[str]:
        """Paths this host committed to Box (`upload_committed`), over every start, in order."""
        return [str(e["path"]) for e in self.daemon.events("upload_committed")]


class HostGroup:
    """Hosts sharing `work/inbox`, one emulator and one PostgreSQL database.

    `database` None: one host alone on a SQLite journal, configured like the others
    (the baseline a benchmark measures the PostgreSQL hosts against).
    `box` and the other keywords (top-level config keys, merged into the defaults of
    `config_data`) apply to every host; `add` can override them per host.
    """

    def __init__(self, work: Path, emulator: EmulatorProcess, database: PgDatabase | None, *, lease: str = "3s",
                 folder_id: str = "0", box: dict[str, Any] | None = None, **top: Any) -> None:
        self.work = work
        self.emulator = emulator
        self.database = database
        self.lease = lease
        self.folder_id = folder_id
        self.box = dict(box or {})
        self.top = top
        self.inbox = work / "inbox"
        self.inbox.mkdir(parents=True, exist_ok=True)
        self.password_file = work / "secrets" / "pg-password"
        self.hosts: dict[str, Host] = {}

    def add(self, host_id: str, *, proxy: TcpProxy | None = None, box: dict[str, Any] | None = None,
            env: dict[str, str] | None = None, **top: Any) -> Host:
        """Configure (not start) host `host_id`; `proxy`: its way to PostgreSQL."""
        if host_id in self.hosts:
            raise ValueError(f"host {host_id!r} is already in the group")
        if self.database is None and (self.hosts or proxy is not None):
            raise ValueError("a SQLite journal serves one host, reached directly")
        folder = self.work / f"host-{host_id}"
        port = free_port()
        watch = Watch(self.inbox, folder_id=self.folder_id, name=WATCH_NAME,
                      options={"observer": "polling", "poll_interval": POLL_INTERVAL})
        settings: dict[str, Any] = {"readiness": {"settle": SETTLE}, **self.top, **top}
        data = config_data(self.emulator, folder / "journal.db", [watch], box={**self.box, **(box or {})},
                           host_id=host_id, metrics={"listen": f"127.0.0.1:{port}"}, **settings)
        if self.database is not None:  # in place of config_data's SQLite path
            data["journal"] = self.database.journal_config(self.password_file, port=proxy.port if proxy else None,
                                                           lease=self.lease)
        config = write_config(folder / "syncd.yaml", data)
        host = Host(host_id, config, DaemonProcess(config, folder / "daemon.log", env=env), port, proxy)
        self.hosts[host_id] = host
        return host

    def __getitem__(self, host_id: str) -> Host:
        return self.hosts[host_id]

    def start(self) -> None:
        """Start every host not running, each ready (it logged `daemon_started`)."""
        for host in self.hosts.values():
            if not host.daemon.running():
                host.daemon.start()

    def kill(self) -> None:
        """SIGKILL every host still running (a test's end, whatever happened)."""
        for host in self.hosts.values():
            host.daemon.kill()

    def status(self) -> dict[str, Any]:
        """`syncd status --json` of the shared journal, as an operator on any host reads it."""
        return status_json(next(iter(self.hosts.values())).config)

    def verify(self, *, extra_versions: dict[str, int] | None = None) -> VerifyReport:
        """Compare the drop folder with Box through the emulator's API: lost, duplicated (extra
        versions or renamed copies), corrupted, extra, and still pending in the journal."""
        reader = BoxReader(self.emulator.api_url, self.emulator.token)
        try:
            return verify(self.inbox, reader, folder_id=self.folder_id, extra_versions=extra_versions,
                          config=next(iter(self.hosts.values())).config)
        finally:
            reader.close()

    def logs(self) -> dict[str, str]:
        """Every host's whole log, by host id."""
        return {host_id: host.daemon.log_text() for host_id, host in self.hosts.items()}

    def password_leaks(self, outputs: dict[str, str] | None = None) -> list[str]:
        """Names of the texts holding the database password: every host's log, and `outputs`
        (status, metrics... by name). It must be none: the password lives in its file only."""
        if self.database is None:
            return []
        texts = {f"log of {host_id}": text for host_id, text in self.logs().items()} | dict(outputs or {})
        return sorted(name for name, text in texts.items() if self.database.password in text)

    def uploading(self, path: str, *, parts: int, timeout: float = 60.0) -> tuple[Host, list[Host]]:
        """(the host uploading `path`, the others), once the uploader logged `parts` parts
        acknowledged by Box: whichever host claimed the file, found from the logs."""
        found: list[Host] = []

        def acknowledged() -> bool:
            found[:] = [h for h in self.hosts.values() if len(h.events("part_uploaded", path=path)) >= parts]
            return bool(found)

        wait_until(acknowledged, timeout=timeout, interval=0.05,
                   message=lambda: f"no host had {parts} parts of {path} acknowledged\n{self.tails()}")
        return found[0], [h for h in self.hosts.values() if h is not found[0]]

    def tails(self, lines: int = 25) -> str:
        """The end of every host's log, headed by its id (for failure messages)."""
        return "\n".join(f"--- {host_id}\n{host.daemon.tail(lines)}" for host_id, host in self.hosts.items())
