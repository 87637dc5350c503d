"""The commands with a PostgreSQL journal configured: `syncd check-config` accepts and describes
it (without reading the password); the commands that read or change the journal beside the
daemons (status, history, retry, forget) and the daemon itself connect to it, reading its password,
and say clearly when it cannot be reached."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncd.testing.daemon_process import run_syncd
from syncd.testing.postgres import free_port

PASSWORD = "pg-secret-51c0e2"


@pytest.fixture
def postgres_config(tmp_path: Path) -> Path:
    (tmp_path / "inbox").mkdir()
    secret = tmp_path / "pg-password"
    secret.write_text(PASSWORD)
    secret.chmod(0o600)
    config = tmp_path / "syncd.yaml"
    config.write_text(f"""\
box:
  api_url: http://127.0.0.1:8765/2.0
  upload_url: http://127.0.0.1:8765/api/2.0
  auth: {{type: developer_token, token: dev-token}}
journal:
  dsn: postgresql://syncd@127.0.0.1:5432/syncd
  password: {{file: {secret}}}
host_id: ingest-1
watches:
  - path: {tmp_path / "inbox"}
    folder_id: "0"
""")
    config.chmod(0o600)
    return config


def test_check_config_describes_the_postgres_journal(postgres_config: Path, tmp_path: Path) -> None:
    checked = run_syncd("check-config", "--config", str(postgres_config))
    assert checked.returncode == 0, checked.stderr
    assert ("journal: PostgreSQL postgresql://syncd@127.0.0.1:5432/syncd "
            f"(password from file {tmp_path / 'pg-password'}), lease 1m, as host ingest-1") in checked.stdout
    assert "journal.password from file" in checked.stdout and "not read" in checked.stdout
    assert PASSWORD not in checked.stdout + checked.stderr


@pytest.mark.parametrize("command", [["status"], ["history"], ["retry", "--failed"], ["run"]])
def test_commands_that_open_the_journal_say_when_it_cannot_be_reached(postgres_config: Path,
                                                                      command: list[str]) -> None:
    unreachable = postgres_config.read_text().replace("127.0.0.1:5432", f"127.0.0.1:{free_port()}")
    postgres_config.write_text(unreachable)  # nobody listens there (tests/commands/test_status_hosts.py connects)
    done = run_syncd(*command, "--config", str(postgres_config))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "is unreachable" in done.stderr
    assert "Traceback" not in done.stderr and PASSWORD not in done.stdout + done.stderr
