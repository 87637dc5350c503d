"""A throwaway PostgreSQL cluster for tests and benchmarks: a real server, started here, gone after.

    with PostgresCluster.start() as cluster:          # initdb in a temporary folder, a free port
        name = cluster.create_database()               # owned by the app role
        dsn = cluster.app_dsn(name)                    # postgresql://syncd_app@127.0.0.1:PORT/NAME
        cluster.app_password                           # the app role's password (not in the DSN)
        with cluster.admin(name) as conn: ...          # superuser, over the private unix socket
        cluster.terminate_backends(application_name="syncd host-b")
        cluster.crash(); cluster.restart()             # immediate shutdown, then WAL replay
    # stopped; no process and no folder left

How, and why so:

* **Binaries**: Debian's server packages put them in ``/usr/lib/postgresql/VERSION/bin``
  (not on PATH); the newest version there with ``initdb`` and ``postgres`` is used, or
  ``$SYNCD_PG_BIN`` when set (`find_postgres_bin`).
* **Unprivileged**: PostgreSQL refuses to run as root, and tests run as root. The cluster
  then runs as the ``postgres`` system user (created by Debian's postgresql-common, or
  ``$SYNCD_PG_OS_USER``): its folder is made by us and handed to that user. Run as
  another user, the cluster simply runs as that user.
* **No leak**: ``postgres`` is started directly as our child (not daemonised by
  ``pg_ctl``) through ``setpriv --pdeathsig SIGQUIT``: should the test process die, even
  by SIGKILL, the kernel tells the postmaster, which stops at once with its backends. A
  normal stop is PostgreSQL's fast shutdown (SIGINT), then the folder is removed.
* **Reachable two ways**: TCP on 127.0.0.1 and a free port, with SCRAM passwords (so
  the code that reads a password from a file, env or credential is exercised), and a
  unix socket in a private folder, trusted, for the harness's own superuser connection.
* **Fast, or durable**: ``fsync`` off by default (a test's cluster does not outlive the
  machine); ``durable=True`` keeps fsync and full-page writes for crash tests that
  want PostgreSQL's own guarantees, not only a process's. Either way an immediate
  shutdown (`crash`) loses nothing committed: WAL replay at the next start.

Cutting one client off while others still reach the server is `syncd.testing.tcp_proxy`'s
job (a proxy per client); `terminate_backends` ends a client's open sessions.
"""

from __future__ import annotations

import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Self
from urllib.parse import quote

import psycopg
from psycopg import sql

__all__ = [
    "APP_ROLE",
    "SUPERUSER",
    "PostgresCluster",
    "PostgresUnavailable",
    "find_postgres_bin",
]

#: Environment variable naming a folder with ``initdb`` and ``postgres`` (else the newest Debian one).
PG_BIN_ENV = "SYNCD_PG_BIN"
#: Environment variable naming the user the cluster runs as when the tests run as root.
PG_OS_USER_ENV = "SYNCD_PG_OS_USER"
#: Where Debian's server packages install their binaries.
DEBIAN_PG_LIB = Path("/usr/lib/postgresql")
#: The cluster's bootstrap superuser (the harness's own connections).
SUPERUSER = "postgres"
#: The role syncd connects as: owns the databases `create_database` makes, no other rights.
APP_ROLE = "syncd_app"
#: Seconds to wait for the server to accept connections, and for it to stop.
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0

_DB_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class PostgresUnavailable(RuntimeError):
    """PostgreSQL cannot be started here; the message says what is missing and how to get it."""


def find_postgres_bin() -> Path:
    """The folder holding ``initdb`` and ``postgres``: ``$SYNCD_PG_BIN``, else the newest
    ``/usr/lib/postgresql/VERSION/bin`` that has both. PostgresUnavailable otherwise."""
    wanted = ("initdb", "postgres")
    override = os.environ.get(PG_BIN_ENV)
    if override:
        folder = Path(override)
        if not all(os.access(folder / name, os.X_OK) for name in wanted):
            raise PostgresUnavailable(f"${PG_BIN_ENV} is {folder}, which lacks an executable initdb or postgres")
        return folder
    candidates = []
    for folder in DEBIAN_PG_LIB.glob("*/bin"):
        version = folder.parent.name
        if version.replace(".", "").isdigit() and all(os.access(folder / name, os.X_OK) for name in wanted):
            candidates.append((tuple(int(p) for p in version.split(".")), folder))
    if not candidates:
        raise PostgresUnavailable(
            f"no PostgreSQL server binaries in {DEBIAN_PG_LIB}/*/bin: install Debian's postgresql "
            f"(scripts/bootstrap.sh does), or set ${PG_BIN_ENV} to a folder with initdb and postgres")
    return max(candidates)[1]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on now (another process may take it before we do: callers retry)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class _RunAs:
    """The unprivileged user the server runs as (None: the current user, who is not root)."""

    name: str | None
    uid: int
    gid: int

    @classmethod
    def choose(cls) -> _RunAs:
        if os.geteuid() != 0:
            return cls(None, os.geteuid(), os.getegid())
        name = os.environ.get(PG_OS_USER_ENV) or "postgres"
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            raise PostgresUnavailable(
                f"running as root, and there is no user {name!r} to run PostgreSQL as (it refuses root): "
                f"install Debian's postgresql, which creates it, or set ${PG_OS_USER_ENV}") from None
        if entry.pw_uid == 0:
            raise PostgresUnavailable(f"${PG_OS_USER_ENV} names {name!r}, which is root; PostgreSQL refuses root")
        return cls(name, entry.pw_uid, entry.pw_gid)

    def argv(self, command: list[str], *, die_with_parent: bool = False) -> list[str]:
        """`command` as this user; with `die_with_parent`, it gets SIGQUIT when its parent dies."""
        wrapper = ["setpriv"]
        if self.name is not None:
            wrapper += [f"--reuid={self.uid}", f"--regid={self.gid}", "--init-groups", "--reset-env"]
        if die_with_parent:
            wrapper.append("--pdeathsig=SIGQUIT")
        return [*wrapper, "--", *command]

    def give(self, path: Path) -> None:
        if self.name is not None:
            os.chown(path, self.uid, self.gid)


class PostgresCluster:
    """A PostgreSQL server of our own, in a temporary folder. Make one with `start()`; `close()` ends it.

    Attributes: ``port`` (TCP, 127.0.0.1), ``socket_dir`` (its unix socket), ``data_dir``,
    ``log_file``, ``app_password`` and ``superuser_password`` (SCRAM, over TCP).
    """

    host = "127.0.0.1"

    def __init__(self, base_dir: Path, bin_dir: Path, run_as: _RunAs, *, durable: bool) -> None:
        """Use `start()`."""
        self.base_dir = base_dir
        self.bin_dir = bin_dir
        self.data_dir = base_dir / "data"
        self.socket_dir = base_dir / "socket"
        self.log_file = base_dir / "postgres.log"
        self.durable = durable
        self.port = 0
        self.superuser_password = secrets.token_urlsafe(18)
        self.app_password = secrets.token_urlsafe(18)
        self._run_as = run_as
        self._server: subprocess.Popen[bytes] | None = None
        self._log_handle: int | None = None

    # ------------------------------------------------------------------ life

    @classmethod
    def start(cls, *, durable: bool = False, bin_dir: Path | None = None, tmp_root: Path | None = None) -> Self:
        """initdb a new cluster in a temporary folder, start it on a free port, create the app role.

        `durable`: keep fsync and full-page writes on (crash tests); off by default (speed).
        `tmp_root`: where the folder is made (default: the system's temporary folder). It
        must be reachable by the user the server runs as: a pytest ``tmp_path`` (mode 0700,
        root's) is not, which is why the cluster makes its own.
        """
        run_as = _RunAs.choose()
        folder = Path(tempfile.mkdtemp(prefix="syncd-pg-", dir=tmp_root))
        cluster = cls(folder, bin_dir or find_postgres_bin(), run_as, durable=durable)
        try:
            cluster._initdb()
            cluster._start_on_a_free_port()
            with cluster.admin() as conn:
                conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(APP_ROLE), sql.Literal(cluster.app_password)))
        except BaseException:
            cluster.close()
            raise
        return cluster

    def _initdb(self) -> None:
        self._run_as.give(self.base_dir)
        self.socket_dir.mkdir(mode=0o700)
        self._run_as.give(self.socket_dir)
        password_file = self.base_dir / "superuser-password"
        password_file.write_text(self.superuser_password + "\n")
        password_file.chmod(0o600)
        self._run_as.give(password_file)
        try:
            self._run([str(self.bin_dir / "initdb"), "--pgdata", str(self.data_dir), "--username", SUPERUSER,
                       "--pwfile", str(password_file), "--auth-local", "trust", "--auth-host", "scram-sha-256",
                       "--encoding", "UTF8", "--locale", "C", "--no-instructions",
                       *([] if self.durable else ["--no-sync"])])
        finally:
            password_file.unlink(missing_ok=True)

    def _write_settings(self) -> None:
        # postgresql.auto.conf is read last and is PostgreSQL's own file for settings made
        # from outside: rewriting it whole keeps a restart on a new port clean.
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.socket_dir}'",
            "max_connections": "200",  # several daemons, each with a pool, plus the tests' own
            "shared_buffers": "'32MB'",
            "fsync": "on" if self.durable else "off",
            "full_page_writes": "on" if self.durable else "off",
            # synchronous_commit stays at its default (on): syncd sets it per transaction.
            "log_line_prefix": "'%m [%p] %q%u@%d %a '",
            "log_min_messages": "warning",
            "log_connections": "off",
            "dynamic_shared_memory_type": "posix",
        }
        path = self.data_dir / "postgresql.auto.conf"
        path.write_text("".join(f"{key} = {value}\n" for key, value in settings.items()))
        self._run_as.give(path)

    def _start_on_a_free_port(self) -> None:
        # A port free when probed may be taken before the server binds it: try another then.
        for _ in range(5):
            self.port = free_port(self.host)
            self._write_settings()
            if self._launch():
                return
        raise PostgresUnavailable(f"PostgreSQL did not start after 5 ports; log {self.log_file}:\n{self.log_tail()}")

    def _launch(self) -> bool:
        """Start the server and wait until it accepts connections. False if the port was taken."""
        mark = self.log_file.stat().st_size if self.log_file.exists() else 0
        self._log_handle = os.open(self.log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._server = subprocess.Popen(
            self._run_as.argv([str(self.bin_dir / "postgres"), "-D", str(self.data_dir)], die_with_parent=True),
            stdin=subprocess.DEVNULL, stdout=self._log_handle, stderr=self._log_handle, cwd=self.base_dir,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._server.poll() is not None:
                self._reap()
                log = self.log_file.read_text(errors="replace")[mark:]
                if "could not bind" in log or "Address already in use" in log:
                    return False
                raise PostgresUnavailable(f"PostgreSQL exited at start; log {self.log_file}:\n{self.log_tail()}")
            try:
                with self.admin():
                    return True
            except psycopg.OperationalError:
                time.sleep(0.05)
        self._stop(signal.SIGQUIT)
        raise PostgresUnavailable(f"PostgreSQL did not accept connections in {START_TIMEOUT:g}s; "
                                  f"log {self.log_file}:\n{self.log_tail()}")

    @property
    def running(self) -> bool:
        """Whether the postmaster is alive."""
        return self._server is not None and self._server.poll() is None

    @property
    def postmaster_pid(self) -> int | None:
        """The postmaster's process id while it runs."""
        return self._server.pid if self.running and self._server is not None else None

    def stop(self) -> None:
        """Fast shutdown (SIGINT: sessions ended, a checkpoint written), waited for."""
        self._stop(signal.SIGINT)

    def crash(self) -> None:
        """Immediate shutdown (SIGQUIT: no checkpoint, like a power cut for the server's own
        state; with `durable` also for its files): the next `restart` replays the WAL."""
        self._stop(signal.SIGQUIT)

    def restart(self) -> None:
        """Start again after `stop` or `crash`, on the same port (the data and roles are kept)."""
        if self.running:
            raise RuntimeError("the cluster is running; stop or crash it first")
        if not self._launch():
            raise PostgresUnavailable(f"port {self.port} was taken while the cluster was down")

    def _stop(self, how: signal.Signals) -> None:
        if self._server is None:
            return
        if self._server.poll() is None:
            self._server.send_signal(how)
            try:
                self._server.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._server.kill()
                self._server.wait(STOP_TIMEOUT)
        self._reap()

    def _reap(self) -> None:
        if self._server is not None:
            self._server.wait()
        if self._log_handle is not None:
            os.close(self._log_handle)
            self._log_handle = None

    def close(self) -> None:
        """Stop the server (if running) and remove its folder. Safe to call twice."""
        try:
            self._stop(signal.SIGINT)
        finally:
            self._server = None
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"PostgresCluster(port={self.port}, base_dir={str(self.base_dir)!r}, running={self.running})"

    def log_tail(self, lines: int = 30) -> str:
        """The end of the server's log (for failure messages)."""
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # --------------------------------------------------------- connections

    @contextmanager
    def admin(self, dbname: str = "postgres") -> Iterator[psycopg.Connection]:
        """A superuser connection over the unix socket, in autocommit mode."""
        with psycopg.connect(host=str(self.socket_dir), port=self.port, user=SUPERUSER, dbname=dbname,
                             autocommit=True, connect_timeout=5, application_name="syncd-test-harness") as conn:
            yield conn

    def app_dsn(self, dbname: str, *, port: int | None = None, application_name: str | None = None) -> str:
        """``postgresql://syncd_app@127.0.0.1:PORT/DBNAME`` without the password (`app_password`).

        `port`: another port to go through (a `TcpProxy` in front of this cluster).
        """
        query = f"?application_name={quote(application_name)}" if application_name else ""
        return f"postgresql://{APP_ROLE}@{self.host}:{port or self.port}/{quote(dbname)}{query}"

    def superuser_dsn(self, dbname: str = "postgres") -> str:
        """``postgresql://postgres@127.0.0.1:PORT/DBNAME`` without the password (`superuser_password`)."""
        return f"postgresql://{SUPERUSER}@{self.host}:{self.port}/{quote(dbname)}"

    # ----------------------------------------------------------- databases

    def create_database(self, name: str | None = None) -> str:
        """A new, empty database owned by the app role (its ``public`` schema too); returns its name."""
        name = name or f"t_{uuid.uuid4().hex[:16]}"
        if not _DB_NAME.match(name):
            raise ValueError(f"database name {name!r}: lower-case letters, digits and _ only")
        with self.admin() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(APP_ROLE)))
        with self.admin(name) as conn:
            conn.execute(sql.SQL("ALTER SCHEMA public OWNER TO {}").format(sql.Identifier(APP_ROLE)))
        return name

    def drop_database(self, name: str) -> None:
        """Drop a database, ending its open sessions first (PostgreSQL 13's WITH (FORCE))."""
        with self.admin() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def databases(self) -> list[str]:
        """Names of the databases other than PostgreSQL's own."""
        with self.admin() as conn:
            rows = conn.execute("SELECT datname FROM pg_database WHERE NOT datistemplate AND datname <> 'postgres'")
            return sorted(row[0] for row in rows)

    # ------------------------------------------------------------ sessions

    def sessions(self, *, dbname: str | None = None, application_name: str | None = None) -> list[int]:
        """Backend pids of client sessions (not the harness's own), filtered by database and name."""
        with self.admin() as conn:
            rows = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
                " AND application_name <> 'syncd-test-harness'"
                " AND (%(db)s::text IS NULL OR datname = %(db)s) AND (%(app)s::text IS NULL OR application_name = %(app)s)",
                {"db": dbname, "app": application_name},
            ).fetchall()
        return [row[0] for row in rows]

    def terminate_backends(self, *, dbname: str | None = None, application_name: str | None = None) -> int:
        """End the matching client sessions (``pg_terminate_backend``); returns how many were ended."""
        ended = 0
        with self.admin() as conn:
            for pid in self.sessions(dbname=dbname, application_name=application_name):
                row = conn.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,)).fetchone()
                ended += bool(row and row[0])
        return ended

    # ------------------------------------------------------------- helpers

    def _run(self, command: list[str]) -> None:
        done = subprocess.run(self._run_as.argv(command), cwd=self.base_dir, capture_output=True, text=True,
                              timeout=START_TIMEOUT, check=False)
        if done.returncode != 0:
            raise PostgresUnavailable(f"{Path(command[0]).name} failed ({done.returncode}): "
                                      f"{(done.stderr or done.stdout).strip()[-2000:]}")
