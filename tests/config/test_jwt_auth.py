"""JWT auth reads a Box app config JSON, checks its key and keeps every secret in it masked."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from syncd.config import JwtAuth
from tests.config.conftest import MINIMAL, load_ok, load_problems, problem_for


@pytest.fixture(scope="module")
def private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem(key: rsa.RSAPrivateKey, passphrase: str | None) -> str:
    encryption = (serialization.BestAvailableEncryption(passphrase.encode()) if passphrase
                  else serialization.NoEncryption())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption).decode()


def _app_config(path: Path, pem: str, passphrase: str, mode: int = 0o600, **drop: bool) -> Path:
    document = {
        "boxAppSettings": {
            "clientID": "jwt-client-id",
            "clientSecret": "jwt-client-secret-value",
            "appAuth": {"publicKeyID": "kid1", "privateKey": pem, "passphrase": passphrase},
        },
        "enterpriseID": "31337",
    }
    for key in drop:
        document["boxAppSettings"]["appAuth"].pop(key)
    path.write_text(json.dumps(document))
    os.chmod(path, mode)
    return path


def _jwt_yaml(extra: str = "") -> str:
    return MINIMAL.replace("auth: {type: developer_token, token: dev-token}",
                           "auth:\n    type: jwt\n    app_config: app.json" + extra)


def test_jwt_app_config_loads(write_config, tmp_path: Path, private_key) -> None:
    _app_config(tmp_path / "app.json", _pem(private_key, "pass-phrase-1"), "pass-phrase-1")
    config = load_ok(write_config(_jwt_yaml()))
    auth = config.box.auth
    assert isinstance(auth, JwtAuth)
    assert (auth.client_id, auth.public_key_id, auth.subject_type, auth.subject_id) == (
        "jwt-client-id", "kid1", "enterprise", "31337")
    assert auth.private_key_passphrase.reveal() == "pass-phrase-1"
    revealed = {s.reveal() for s in config.secrets}
    assert {"jwt-client-secret-value", "pass-phrase-1", auth.private_key.reveal()} <= revealed
    assert "BEGIN" not in repr(config) and "jwt-client-secret-value" not in repr(config)


def test_jwt_passphrase_override_and_user_subject(write_config, tmp_path: Path, private_key) -> None:
    _app_config(tmp_path / "app.json", _pem(private_key, "real-pass"), "stale-pass")
    config = load_ok(write_config(_jwt_yaml("\n    private_key_passphrase: {env: KEY_PASS}\n"
                                            "    subject_type: user\n    subject_id: '555'")),
                     environ={"KEY_PASS": "real-pass"})
    assert config.box.auth.private_key_passphrase.reveal() == "real-pass"
    assert (config.box.auth.subject_type, config.box.auth.subject_id) == ("user", "555")


def test_jwt_problems(write_config, tmp_path: Path, private_key) -> None:
    _app_config(tmp_path / "app.json", _pem(private_key, "right"), "wrong")
    message = problem_for(load_problems(write_config(_jwt_yaml())), "box.auth.app_config")
    assert "cannot be loaded (not PEM, or the passphrase is wrong)" in message

    _app_config(tmp_path / "app.json", _pem(private_key, "right"), "right", mode=0o640)
    message = problem_for(load_problems(write_config(_jwt_yaml())), "box.auth.app_config")
    assert "mode 0640" in message and f"chmod 600 {tmp_path / 'app.json'}" in message

    _app_config(tmp_path / "app.json", _pem(private_key, None), "", privateKey=True)
    message = problem_for(load_problems(write_config(_jwt_yaml())), "box.auth.app_config")
    assert "lacks boxAppSettings.appAuth.privateKey" in message

    _app_config(tmp_path / "app.json", _pem(private_key, "right"), "")
    error = load_problems(write_config(_jwt_yaml("\n    subject_type: user")))
    assert "is encrypted but no passphrase is given" in problem_for(error, "box.auth.app_config")
    assert "required when subject_type is user" in problem_for(error, "box.auth.subject_id")
    assert "BEGIN" not in str(error)
