"""load_config(resolve_secrets=False), for the commands that never talk to Box: no secret is
read, every source is checked for what can be checked without reading it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from syncd.config import ConfigError, Secret, SecretNotResolved, load_config, summarize_config, unverified_secrets
from tests.config.conftest import MINIMAL


def inspect(path: Path, environ: dict[str, str] | None = None, credstore: Path | None = None):
    return load_config(path, environ=environ or {}, resolve_secrets=False,
                       credstore_dirs=[credstore] if credstore else [])


def test_a_credential_outside_systemd_is_looked_for_in_the_credential_store(write_config, tmp_path: Path) -> None:
    config_path = write_config(MINIMAL.replace("token: dev-token", "token: {credential: box-token}"))
    store = tmp_path / "credstore"
    store.mkdir()
    missing = inspect(config_path, credstore=store)
    token = missing.box.auth.token  # type: ignore[union-attr]
    assert not token.resolved and missing.secrets == ()
    assert "no credential store file found" in token.check
    (warning,) = [w for w in missing.warnings if "credential store" in w]
    assert str(store / "syncd.box-token") in warning

    stored = store / "syncd.box-token"
    stored.write_text("credstore-secret-5521")
    stored.chmod(0o600)
    found = inspect(config_path, credstore=store).box.auth.token  # type: ignore[union-attr]
    assert f"{stored} is present (mode 0600), not read" in found.check
    assert "credstore-secret-5521" not in repr(found) + found.check

    stored.chmod(0o644)
    with pytest.raises(ConfigError) as caught:
        inspect(config_path, credstore=store)
    assert "open to group/others (mode 0644)" in str(caught.value)


def test_an_instance_config_looks_for_its_instance_credential_first(write_config, tmp_path: Path) -> None:
    config_path = write_config(MINIMAL.replace("token: dev-token", "token: {credential: box-token}"), "archive.yaml")
    store = tmp_path / "credstore"
    store.mkdir()
    (store / "syncd-archive.box-token").write_text("x" * 20)
    (store / "syncd-archive.box-token").chmod(0o600)
    token = inspect(config_path, credstore=store).box.auth.token  # type: ignore[union-attr]
    assert "syncd-archive.box-token is present" in token.check


def test_under_systemd_a_missing_credential_is_still_an_error(write_config, tmp_path: Path) -> None:
    config_path = write_config(MINIMAL.replace("token: dev-token", "token: {credential: box-token}"))
    credentials = tmp_path / "creds"
    credentials.mkdir()
    with pytest.raises(ConfigError) as caught:
        inspect(config_path, {"CREDENTIALS_DIRECTORY": str(credentials)})
    assert "credential box-token is not in $CREDENTIALS_DIRECTORY" in str(caught.value)
    (credentials / "box-token").write_text("systemd-secret-8812")
    token = inspect(config_path, {"CREDENTIALS_DIRECTORY": str(credentials)}).box.auth.token  # type: ignore[union-attr]
    assert token.check == "present in $CREDENTIALS_DIRECTORY, not read"


def test_file_secrets_are_checked_not_read(write_config, tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("file-secret-7731")
    secret.chmod(0o600)
    config_path = write_config(MINIMAL.replace("token: dev-token", f"token: {{file: {secret}}}"))
    config = inspect(config_path)
    token = config.box.auth.token  # type: ignore[union-attr]
    with pytest.raises(SecretNotResolved):
        token.reveal()  # a code path that reaches for it fails loudly instead of sending ""
    assert unverified_secrets(config) == [f"box.auth.token from file {secret}: present, mode 0600, not read"]
    assert "file-secret-7731" not in "\n".join(summarize_config(config))
    secret.chmod(0o640)
    with pytest.raises(ConfigError) as caught:
        inspect(config_path)
    assert f"fix: chmod 600 {secret}" in str(caught.value)
    secret.unlink()
    with pytest.raises(ConfigError):
        inspect(config_path)


def test_a_jwt_app_config_is_checked_not_parsed(write_config, tmp_path: Path) -> None:
    app = tmp_path / "box-app.json"
    app.write_text(json.dumps({"boxAppSettings": {"clientID": "id", "clientSecret": "jwt-secret-4410"}}))
    app.chmod(0o600)
    auth = f"auth: {{type: jwt, app_config: {app}, subject_type: enterprise, subject_id: \"99\"}}"
    config = inspect(write_config(MINIMAL.replace("auth: {type: developer_token, token: dev-token}", auth)))
    assert not config.box.auth.private_key.resolved  # type: ignore[union-attr]
    assert config.secrets == ()
    # Resolving it (as `run` does) reads and validates it: this one has no private key.
    with pytest.raises(ConfigError):
        load_config(write_config(MINIMAL.replace("auth: {type: developer_token, token: dev-token}", auth)), environ={})


def test_unresolved_secrets_compare_by_source() -> None:
    assert Secret.unresolved("env A", "x") == Secret.unresolved("env A", "y")
    assert Secret.unresolved("env A", "x") != Secret.unresolved("env B", "x")
    assert Secret.unresolved("env A", "x") != Secret("value", "env A")
    assert repr(Secret.unresolved("env A", "x")) == "Secret(unresolved, env A)"
