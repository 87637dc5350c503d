"""A valid config loads into frozen dataclasses with defaults, resolved paths and masked secrets."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from syncd.config import DeveloperTokenAuth, Secret
from tests.config.conftest import MINIMAL, load_ok


def test_design_contract_config_loads_with_defaults(write_config, tmp_path: Path) -> None:
    config = load_ok(write_config(MINIMAL))

    assert config.box.api_url == "http://127.0.0.1:8765/2.0"
    assert config.box.upload_url == "http://127.0.0.1:8765/api/2.0"
    assert config.box.token_url == "http://127.0.0.1:8765/oauth2/token"
    assert isinstance(config.box.auth, DeveloperTokenAuth)
    assert config.box.auth.token.reveal() == "dev-token"
    assert config.box.direct_upload_max == 50 * 1024 * 1024
    assert (config.box.connect_timeout, config.box.read_timeout) == (10.0, 60.0)
    assert (config.box.part_concurrency, config.box.uploads_per_minute, config.box.calls_per_minute) == (4, 230, 950)
    assert config.box.verify_tls is True and config.box.as_user is None
    assert config.journal == tmp_path / "var" / "journal.db"
    assert (config.workers, config.shutdown_timeout, config.scan_interval) == (4, 30.0, 600.0)
    assert (config.retry.max_attempts, config.retry.initial_backoff, config.retry.max_backoff) == (10, 5.0, 3600.0)
    assert (config.readiness.settle, config.readiness.closed_settle, config.readiness.never_settles_after) == (
        2.0, 0.3, 3600.0)
    (watch,) = config.watches
    assert watch.path == tmp_path / "inbox" and watch.folder_id == "0" and watch.name == "inbox"
    assert watch.recursive and watch.observer == "native" and watch.poll_interval == 5.0
    assert watch.include == ("*",) and watch.exclude == () and watch.default_excludes
    assert (watch.conflict, watch.invalid_names, watch.after_upload) == ("version", "quarantine", "keep")
    assert watch.name_collisions == "quarantine"
    assert watch.archive_dir is None and watch.expect_files_every is None
    assert (config.logging.format, config.logging.level) == ("auto", "info")
    assert config.metrics.listen is None
    assert config.alerts.pending_older_than == 3600.0
    assert config.health.stuck_after == 600.0
    assert (config.retention.history, config.retention.uploaded_rows) == (90 * 86400.0, 90 * 86400.0)
    assert config.source == (tmp_path / "syncd.yaml").resolve()


def test_result_is_frozen_and_secrets_never_show(write_config) -> None:
    config = load_ok(write_config(MINIMAL))
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.workers = 9  # type: ignore[misc]
    assert "dev-token" not in repr(config) and "dev-token" not in str(config)
    assert repr(config.box.auth.token) == str(config.box.auth.token) == "Secret('***')"
    assert [s.reveal() for s in config.secrets] == ["dev-token"]


def test_every_setting_is_read(write_config, tmp_path: Path) -> None:
    (tmp_path / "archive").mkdir()
    config = load_ok(write_config("""\
        box:
          api_url: https://box.example.com/2.0/
          upload_url: https://upload.example.com/api/2.0
          auth: {type: developer_token, token: dev-token}
          as_user: "4242"
          connect_timeout: 500ms
          read_timeout: 2m
          direct_upload_max: 20000000
          part_concurrency: 8
          uploads_per_minute: 100
          calls_per_minute: 500
        journal: /var/lib/syncd/j.db
        workers: 2
        shutdown_timeout: 0
        scan_interval: 1h30m
        retry: {max_attempts: 3, initial_backoff: 1s, max_backoff: 1m}
        readiness: {settle: 1m, closed_settle: 0, never_settles_after: 1d}
        watches:
          - path: inbox
            folder_id: "123"
            name: drops
            recursive: false
            observer: polling
            poll_interval: 30s
            include: "*.pdf"
            exclude: []
            default_excludes: false
            mirror_subfolders: false
            conflict: rename
            invalid_names: sanitize
            name_collisions: rename
            after_upload: move
            archive_dir: archive
            archive_template: "{watch}/{date:%Y}/{name}"
            expect_files_every: 1d
        logging: {format: json, level: debug}
        metrics: {listen: "[::1]:9200"}
        alerts: {pending_older_than: null}
        health: {stuck_after: 5s}
        retention: {history: 30d, uploaded_rows: null}
        """))
    assert config.box.api_url == "https://box.example.com/2.0"
    assert config.box.token_url == "https://box.example.com/oauth2/token"
    assert config.box.as_user == "4242"
    assert (config.box.connect_timeout, config.box.read_timeout) == (0.5, 120.0)
    assert config.box.direct_upload_max == 20_000_000
    assert config.journal == Path("/var/lib/syncd/j.db")
    assert (config.shutdown_timeout, config.scan_interval) == (0.0, 5400.0)
    assert config.readiness.never_settles_after == 86400.0
    (watch,) = config.watches
    assert watch.name == "drops" and watch.include == ("*.pdf",) and watch.exclude == ()
    assert not watch.default_excludes and watch.name_collisions == "rename" and watch.poll_interval == 30.0
    assert watch.archive_dir == tmp_path / "archive"
    assert watch.expect_files_every == 86400.0
    assert str(config.metrics.listen) == "[::1]:9200" and config.metrics.listen.is_loopback
    assert config.alerts.pending_older_than is None
    assert config.health.stuck_after == 5.0
    assert (config.retention.history, config.retention.uploaded_rows) == (30 * 86400.0, None)


def test_secret_from_file_env_and_credential(write_config, tmp_path: Path) -> None:
    secret_file = tmp_path / "token.txt"
    secret_file.write_text("file-secret-value\n")
    os.chmod(secret_file, 0o600)
    credentials = tmp_path / "creds"
    credentials.mkdir()
    (credentials / "box-secret").write_text("credential-secret")
    base = MINIMAL.replace("token: dev-token", "token: {file: token.txt}")
    config = load_ok(write_config(base))
    assert config.box.auth.token.reveal() == "file-secret-value"
    assert config.box.auth.token.source == f"file {secret_file}"

    config = load_ok(write_config(MINIMAL.replace("token: dev-token", "token: {env: BOX_TOKEN}")),
                     environ={"BOX_TOKEN": "env-secret-value"})
    assert config.box.auth.token.reveal() == "env-secret-value"

    ccg = MINIMAL.replace(
        "auth: {type: developer_token, token: dev-token}",
        "auth: {type: client_credentials, client_id: cid, client_secret: {credential: box-secret},"
        " subject_type: enterprise, subject_id: '77'}",
    )
    config = load_ok(write_config(ccg), environ={"CREDENTIALS_DIRECTORY": str(credentials)})
    auth = config.box.auth
    assert auth.type == "client_credentials" and auth.client_id == "cid"
    assert auth.client_secret.reveal() == "credential-secret" and auth.client_secret.source == "credential box-secret"
    assert (auth.subject_type, auth.subject_id) == ("enterprise", "77")
    assert [s.reveal() for s in config.secrets] == ["credential-secret"]


def test_oauth_token_store_missing_is_a_warning(write_config, tmp_path: Path) -> None:
    text = MINIMAL.replace(
        "auth: {type: developer_token, token: dev-token}",
        "auth: {type: oauth, client_id: cid, client_secret: {env: CS}, token_store: state/oauth.json}",
    )
    (tmp_path / "state").mkdir()
    config = load_ok(write_config(text), environ={"CS": "client-secret-1"})
    assert config.box.auth.token_store == tmp_path / "state" / "oauth.json"
    assert any("syncd auth" in w for w in config.warnings)


def test_unquoted_folder_id_is_accepted_with_a_warning(write_config) -> None:
    config = load_ok(write_config(MINIMAL.replace('folder_id: "0"', "folder_id: 12345")))
    assert config.watches[0].folder_id == "12345"
    assert 'watches[0].folder_id: 12345 should be quoted ("12345")' in config.warnings


def test_secret_values_cannot_be_pickled() -> None:
    import pickle

    with pytest.raises(TypeError):
        pickle.dumps(Secret("abc-secret"))
    assert Secret("a", "inline") == Secret("a", "env X") and Secret("a") != Secret("b")


def test_summary_names_secret_sources_not_values(write_config, tmp_path: Path) -> None:
    from syncd.config import summarize_config

    config = load_ok(write_config(MINIMAL.replace("token: dev-token", "token: {env: BOX_TOKEN}")),
                     environ={"BOX_TOKEN": "summary-secret-77"})
    lines = summarize_config(config)
    assert "auth: developer_token (token from env BOX_TOKEN)" in lines
    assert f"watch inbox: {tmp_path / 'inbox'} -> folder 0 (recursive, native, conflict version, after upload keep)" in lines
    assert "summary-secret-77" not in "\n".join(lines)


def test_inline_secret_warning_only_for_a_remote_box(write_config) -> None:
    path = write_config(MINIMAL)
    os.chmod(path, 0o644)
    assert not any("inline secret" in w for w in load_ok(path).warnings)
    remote = write_config(MINIMAL.replace("http://127.0.0.1:8765/2.0", "https://api.box.com/2.0")
                          .replace("http://127.0.0.1:8765/api/2.0", "https://upload.box.com/api/2.0"), "remote.yaml")
    os.chmod(remote, 0o644)
    (warning,) = [w for w in load_ok(remote).warnings if "inline secret" in w]
    assert warning.startswith("box.auth.token: an inline secret in a config file readable by others (mode 0644)")
    os.chmod(remote, 0o600)
    assert not any("inline secret" in w for w in load_ok(remote).warnings)
