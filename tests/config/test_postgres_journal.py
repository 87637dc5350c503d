"""`journal:` as a SQLite path, a postgresql:// DSN or a mapping {dsn, password, lease}, and
`host_id:`: what is accepted, what is refused (key, problem, fix), and that the database
password is a secret like every other one (never in a message, a summary or a repr)."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncd.config import (
    ConfigError,
    PostgresJournalConfig,
    diff_configs,
    load_config,
    summarize_config,
    unverified_secrets,
)
from tests.config.conftest import MINIMAL, load_ok, load_problems, problem_for

PASSWORD = "pg-secret-7f3a91"
DSN = "postgresql://syncd@db.example.com:5433/syncd?sslmode=verify-full"


def with_journal(journal_yaml: str, extra: str = "") -> str:
    """MINIMAL with its `journal:` line replaced (`journal_yaml` is the whole value, may span lines)."""
    return MINIMAL.replace("journal: ./var/journal.db\n", f"journal: {journal_yaml}\n{extra}")


def password_file(tmp_path: Path, mode: int = 0o600) -> Path:
    path = tmp_path / "pg-password"
    path.write_text(PASSWORD + "\n")
    path.chmod(mode)
    return path


# ----------------------------------------------------------------- accepted


def test_a_path_is_still_a_sqlite_journal(write_config, tmp_path: Path) -> None:
    config = load_ok(write_config(MINIMAL))
    assert config.journal == tmp_path / "var" / "journal.db"
    assert f"journal: {tmp_path / 'var' / 'journal.db'} (SQLite)" in summarize_config(config)


def test_a_bare_dsn_is_a_postgres_journal_without_password(write_config) -> None:
    config = load_ok(write_config(with_journal(DSN)))
    assert config.journal == PostgresJournalConfig(DSN, None, 60.0)
    assert str(config.journal) == DSN
    assert config.warnings == ()


def test_the_mapping_takes_the_password_from_a_file_env_or_credential(write_config, tmp_path: Path) -> None:
    secret_file = password_file(tmp_path)
    from_file = load_ok(write_config(with_journal(f"{{dsn: '{DSN}', password: {{file: {secret_file}}}, lease: 30s}}")))
    journal = from_file.journal
    assert isinstance(journal, PostgresJournalConfig)
    assert (journal.dsn, journal.lease) == (DSN, 30.0)
    assert journal.password is not None and journal.password.reveal() == PASSWORD
    assert journal.password.source == f"file {secret_file}"
    # Registered for the log redactor like Box's secrets.
    assert any(secret.reveal() == PASSWORD for secret in from_file.secrets)

    from_env = load_ok(write_config(with_journal(f"{{dsn: '{DSN}', password: {{env: SYNCD_PG_PASSWORD}}}}")),
                       environ={"SYNCD_PG_PASSWORD": PASSWORD})
    assert from_env.journal.password.reveal() == PASSWORD  # type: ignore[union-attr]
    assert from_env.journal.lease == 60.0  # type: ignore[union-attr]

    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "pg-password").write_text(PASSWORD)
    from_credential = load_ok(write_config(with_journal(f"{{dsn: '{DSN}', password: {{credential: pg-password}}}}")),
                              environ={"CREDENTIALS_DIRECTORY": str(credentials)})
    assert from_credential.journal.password.source == "credential pg-password"  # type: ignore[union-attr]


def test_read_only_commands_check_the_password_source_without_reading_it(write_config, tmp_path: Path) -> None:
    secret_file = password_file(tmp_path)
    path = write_config(with_journal(f"{{dsn: '{DSN}', password: {{file: {secret_file}}}}}"))
    config = load_config(path, environ={}, resolve_secrets=False)
    password = config.journal.password  # type: ignore[union-attr]
    assert password is not None and not password.resolved
    assert f"journal.password from file {secret_file}: present, mode 0600, not read" in unverified_secrets(config)
    secret_file.chmod(0o644)  # still refused without reading it: others could
    error = load_problems(path)
    assert "open to group/others" in problem_for(error, "journal.password.file")


def test_the_summary_and_repr_show_where_the_password_comes_from_never_the_password(write_config,
                                                                                   tmp_path: Path) -> None:
    secret_file = password_file(tmp_path)
    config = load_ok(write_config(with_journal(f"{{dsn: '{DSN}', password: {{file: {secret_file}}}}}",
                                               "host_id: ingest-2\n")))
    summary = "\n".join(summarize_config(config))
    assert f"journal: PostgreSQL {DSN} (password from file {secret_file}), lease 1m, as host ingest-2" in summary
    assert PASSWORD not in summary + repr(config) + str(config.journal)


def test_unix_socket_and_loopback_hosts_need_no_tls(write_config) -> None:
    for dsn in ("postgresql:///syncd?host=/var/run/postgresql", "postgresql://syncd@127.0.0.1/syncd",
                "postgres://syncd@localhost:5432/syncd"):
        config = load_ok(write_config(with_journal(dsn)))
        assert isinstance(config.journal, PostgresJournalConfig) and config.warnings == (), dsn


def test_a_remote_host_without_tls_is_warned_about(write_config) -> None:
    config = load_ok(write_config(with_journal("postgresql://syncd@db1.example.com,db2.example.com/syncd")))
    (warning,) = config.warnings
    assert warning.startswith("journal: connections to db1.example.com, db2.example.com may go without TLS")
    assert "sslmode=verify-full" in warning


# ----------------------------------------------------------------- refused


@pytest.mark.parametrize("dsn", [
    f"postgresql://syncd:{PASSWORD}@db.example.com/syncd",
    f"postgresql://syncd:{PASSWORD}@db1.example.com:5432,db2.example.com/syncd",
])
def test_a_password_inside_the_dsn_is_refused_without_being_repeated(write_config, dsn: str) -> None:
    for journal_yaml, key in ((f"'{dsn}'", "journal"), (f"{{dsn: '{dsn}'}}", "journal.dsn")):
        error = load_problems(write_config(with_journal(journal_yaml)))
        message = problem_for(error, key)
        assert "holds a password" in message and "journal.password" in message
        assert PASSWORD not in str(error)


@pytest.mark.parametrize("parameter", ["password", "passfile", "sslpassword"])
def test_secret_parameters_in_the_dsn_are_refused_by_name(write_config, parameter: str) -> None:
    error = load_problems(write_config(with_journal(f"'{DSN}&{parameter}={PASSWORD}'")))
    assert f"sets {parameter}=" in problem_for(error, "journal")
    assert PASSWORD not in str(error)


@pytest.mark.parametrize(("dsn", "expected"), [
    ("postgresql://syncd@db.example.com", "names no database"),
    ("postgresql://syncd@db.example.com/syncd?application_name=mine", "application_name"),
    ("postgresql://syncd@db.example.com/syncd?tls=on", 'invalid URI query parameter: "tls"'),
    ("postgresql://syncd@db.example.com/sy%zzncd", "invalid percent-encoded token"),
    ("mysql://syncd@db.example.com/syncd", "is a mysql:// URI, not a PostgreSQL one"),
])
def test_a_dsn_libpq_would_refuse_or_misread_is_refused_with_the_reason(write_config, dsn: str,
                                                                      expected: str) -> None:
    message = problem_for(load_problems(write_config(with_journal(f"'{dsn}'"))), "journal")
    assert expected in message and "expected" in message


def test_the_mapping_refuses_unknown_keys_a_short_lease_and_a_missing_dsn(write_config) -> None:
    error = load_problems(write_config(with_journal("{path: /var/lib/syncd/journal.db, lease: 1s}")))
    assert "a SQLite journal is given as the path itself" in problem_for(error, "journal.path")
    assert "at least 2s" in problem_for(error, "journal.lease")
    assert "is required but missing" in problem_for(error, "journal.dsn")
    typo = load_problems(write_config(with_journal(f"{{dsn: '{DSN}', pasword: {{env: X}}}}")))
    assert "did you mean 'password'?" in problem_for(typo, "journal.pasword")


def test_a_password_that_cannot_be_read_is_a_problem_of_its_key(write_config, tmp_path: Path) -> None:
    error = load_problems(write_config(with_journal(f"{{dsn: '{DSN}', password: {{env: SYNCD_PG_PASSWORD}}}}")))
    assert "SYNCD_PG_PASSWORD is not set" in problem_for(error, "journal.password.env")
    unreadable = load_problems(write_config(with_journal(
        f"{{dsn: '{DSN}', password: {{file: {password_file(tmp_path, 0o640)}}}}}")))
    assert "chmod 600" in problem_for(unreadable, "journal.password.file")


# ----------------------------------------------------------------- host_id


def test_host_id_defaults_to_the_hostname(write_config, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("socket.gethostname", lambda: "ingest-7")
    assert load_ok(write_config(MINIMAL)).host_id == "ingest-7"
    assert load_ok(write_config(MINIMAL + "host_id: nas-a.dc1\n")).host_id == "nas-a.dc1"


@pytest.mark.parametrize("value", ["''", "'two words'", "-leading-dash", "x" * 64, "42", "{a: b}", "'caf\u00e9'"])
def test_an_unusable_host_id_is_refused(write_config, value: str) -> None:
    message = problem_for(load_problems(write_config(MINIMAL + f"host_id: {value}\n")), "host_id")
    assert "not a usable host id" in message and "unique among the hosts" in message


def test_an_unusable_hostname_asks_for_host_id(write_config, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("socket.gethostname", lambda: "bad host name")
    message = problem_for(load_problems(write_config(MINIMAL)), "host_id")
    assert "hostname 'bad host name' cannot serve as one" in message and "set host_id: explicitly" in message
    assert load_ok(write_config(MINIMAL + "host_id: ingest-1\n")).host_id == "ingest-1"


def test_a_reload_cannot_change_the_host_id_or_the_journal(write_config, tmp_path: Path) -> None:
    before = load_ok(write_config(MINIMAL + "host_id: ingest-1\n"))
    after = load_ok(write_config(with_journal(DSN, "host_id: ingest-2\n")))
    assert set(diff_configs(before, after).restart_required) == {"journal", "host_id"}
    assert isinstance(after.journal, PostgresJournalConfig)


def test_config_error_lists_every_journal_problem_at_once(write_config) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write_config(with_journal("{dsn: 'postgresql://h', lease: 0s}", "host_id: '!'\n")), environ={})
    keys = {problem.key for problem in caught.value.problems}
    assert {"journal.lease", "journal.dsn", "host_id"} <= keys
