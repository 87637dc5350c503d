"""PostgreSQL fixtures (registered from tests/conftest.py): a real server, started by the tests.

`pg_cluster`: one throwaway cluster for the whole session (started on first use, so a
run that needs none starts none). `pg_database`: a fresh database on it for one test,
owned by the app role, dropped after. `pg_cluster_factory(durable=...)`: clusters of a
test's own, for tests that stop, crash or restart the server. `tcp_proxy_factory(cluster)`:
a `TcpProxy` in front of a cluster, for one client's path (closed after the test).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from syncd.testing.postgres import PostgresCluster
from syncd.testing.tcp_proxy import TcpProxy
from tests.support.offline_config import offline_config


@dataclass(frozen=True)
class PgDatabase:
    """One test's database: its name, the cluster, and how syncd (the app role) reaches it."""

    cluster: PostgresCluster
    name: str

    @property
    def password(self) -> str:
        """The app role's password (kept out of every DSN)."""
        return self.cluster.app_password

    def dsn(self, *, port: int | None = None, application_name: str | None = None) -> str:
        """The app role's DSN, without password; `port`: through a proxy."""
        return self.cluster.app_dsn(self.name, port=port, application_name=application_name)

    def connect(self, *, port: int | None = None, application_name: str | None = None,
                **options: Any) -> psycopg.Connection:
        """A connection as the app role over TCP (the caller closes it)."""
        return psycopg.connect(self.dsn(port=port, application_name=application_name), password=self.password,
                               connect_timeout=5, **options)

    def journal_config(self, password_file: Path, *, port: int | None = None, **options: Any) -> dict[str, Any]:
        """The `journal:` mapping of a syncd config for this database, its password written to
        `password_file` (mode 0600), as an operator would keep it."""
        password_file.parent.mkdir(parents=True, exist_ok=True)
        password_file.write_text(self.password + "\n")
        password_file.chmod(0o600)
        return {"dsn": self.dsn(port=port), "password": {"file": str(password_file)}, **options}

    def syncd_config(self, folder: Path, *, host_id: str, lease: str) -> Path:
        """A syncd config file in `folder` on this journal, with one watch `inbox` and a Box nobody
        listens on (for commands that only read the journal); its password in a file beside it."""
        (folder / "inbox").mkdir(parents=True, exist_ok=True)
        path = folder / "syncd.yaml"
        path.write_text(yaml.safe_dump(offline_config(
            self.journal_config(folder / "secrets" / "pg-password", lease=lease),
            [{"path": str(folder / "inbox"), "folder_id": "0", "name": "inbox"}], host_id=host_id)))
        path.chmod(0o600)
        return path


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster]:
    with PostgresCluster.start() as cluster:
        yield cluster


@pytest.fixture
def pg_database(pg_cluster: PostgresCluster) -> Iterator[PgDatabase]:
    name = pg_cluster.create_database()
    yield PgDatabase(pg_cluster, name)
    pg_cluster.drop_database(name)


@pytest.fixture
def pg_cluster_factory() -> Iterator[Callable[..., PostgresCluster]]:
    started: list[PostgresCluster] = []

    def start(*, durable: bool = False) -> PostgresCluster:
        cluster = PostgresCluster.start(durable=durable)
        started.append(cluster)
        return cluster

    yield start
    for cluster in started:
        cluster.close()


@pytest.fixture
def tcp_proxy_factory() -> Iterator[Callable[[PostgresCluster], TcpProxy]]:
    proxies: list[TcpProxy] = []

    def start(cluster: PostgresCluster) -> TcpProxy:
        proxy = TcpProxy((cluster.host, cluster.port)).start()
        proxies.append(proxy)
        return proxy

    yield start
    for proxy in proxies:
        proxy.close()
