"""Every auth method against the real emulator over HTTP, including a refresh-token
rotation that survives a crash between refresh and persist."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from syncd.box import (
    AuthError,
    BoxAPIError,
    ClientCredentialsAuth,
    DeveloperTokenAuth,
    ErrorClass,
    JWTAuth,
    OAuthRefreshAuth,
    TokenStore,
)

from .conftest import count, make_client

CLIENT_ID = "syncd-emulator-client"
CLIENT_SECRET = "syncd-emulator-secret"
DEFAULT_USER = "11446498"
ENTERPRISE = "1234567"


def test_developer_token(emulator) -> None:
    with make_client(emulator) as client:
        me = client.get_current_user()
    assert me["id"] == DEFAULT_USER and me["login"] == "emulator@example.com"


def test_wrong_developer_token_is_refresh_auth(emulator) -> None:
    with make_client(emulator, DeveloperTokenAuth("not-the-token")) as client:
        with pytest.raises(BoxAPIError) as caught:
            client.get_current_user()
    assert caught.value.status == 401 and caught.value.error_class is ErrorClass.REFRESH_AUTH
    assert "not-the-token" not in str(caught.value) and "not-the-token" not in repr(caught.value)


def test_expired_developer_token_cannot_be_refreshed(emulator) -> None:
    with make_client(emulator) as client:
        client.get_current_user()
        emulator.expire_tokens()
        with pytest.raises(BoxAPIError) as caught:
            client.get_current_user()
    assert caught.value.error_class is ErrorClass.REFRESH_AUTH


def _oauth(emulator, store: TokenStore) -> OAuthRefreshAuth:
    return OAuthRefreshAuth(CLIENT_ID, CLIENT_SECRET, store, token_url=emulator.token_url)


def test_oauth_refresh_rotates_and_persists_0600(emulator, tmp_path: Path) -> None:
    first = emulator.mint_refresh_token()
    store = TokenStore(tmp_path / "state" / "box-token.json")
    store.save(first)
    auth = _oauth(emulator, store)
    with make_client(emulator, auth) as client:
        assert client.get_current_user()["id"] == DEFAULT_USER
        rotated = store.load()
        assert rotated != first  # Box hands out a new refresh token on every refresh
        assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600
        # The old refresh token is spent.
        with pytest.raises(AuthError) as spent:
            _spent(emulator, tmp_path, first)
        assert spent.value.error_class is ErrorClass.PERMANENT_CONFIG
        assert first not in str(spent.value) and CLIENT_SECRET not in str(spent.value)
        # An expired access token: the 401 triggers exactly one refresh, then success.
        emulator.expire_tokens()
        emulator.reset_stats()
        assert client.get_current_user()["id"] == DEFAULT_USER
        stats = emulator.stats()
        assert count(stats, "oauth.token") == 1 and count(stats, "users.me", "401") == 1
        assert store.load() not in (first, rotated)
    assert not list(store.path.parent.glob("*.tmp"))  # no temp files left behind


def _spent(emulator, tmp_path: Path, token: str) -> None:
    store = TokenStore(tmp_path / "old.json")
    store.save(token)
    _oauth(emulator, store).access_token()


def test_concurrent_401s_refresh_once(emulator, tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "t.json")
    store.save(emulator.mint_refresh_token())
    with make_client(emulator, _oauth(emulator, store), concurrency=8) as client:
        client.get_current_user()
        emulator.expire_tokens()
        emulator.reset_stats()
        errors: list[BaseException] = []

        def call() -> None:
            try:
                client.get_current_user()
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=call) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    assert errors == []
    # A second refresh would have used a spent refresh token and failed.
    assert count(emulator.stats(), "oauth.token") == 1


CRASHING_CHILD = r"""
import os, signal, sys
from syncd.box import OAuthRefreshAuth, TokenStore

class CrashAfterPersist(OAuthRefreshAuth):
    def _after_persist(self):
        # Box has rotated the token and we persisted it; die before using the access token.
        os.kill(os.getpid(), signal.SIGKILL)

auth = CrashAfterPersist(sys.argv[1], sys.argv[2], TokenStore(sys.argv[3]), token_url=sys.argv[4])
auth.access_token()
"""


def test_refresh_rotation_survives_a_crash_between_refresh_and_use(emulator, tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "t.json")
    first = emulator.mint_refresh_token()
    store.save(first)
    child = subprocess.run(
        [sys.executable, "-c", CRASHING_CHILD, CLIENT_ID, CLIENT_SECRET, str(store.path), emulator.token_url],
        capture_output=True, timeout=30, cwd=Path(__file__).resolve().parents[2],
    )
    assert child.returncode == -9, child.stderr.decode()
    persisted = store.load()
    assert persisted != first  # the rotated token made it to disk before the crash
    # A restarted process continues with the persisted token.
    with make_client(emulator, _oauth(emulator, store)) as client:
        assert client.get_current_user()["id"] == DEFAULT_USER


def test_failed_persist_never_uses_the_new_access_token(emulator, tmp_path: Path) -> None:
    class FlakyStore(TokenStore):
        broken = True

        def save(self, refresh_token: str) -> None:
            if self.broken:
                raise OSError("disk full")
            super().save(refresh_token)

    store = FlakyStore(tmp_path / "t.json")
    first = emulator.mint_refresh_token()
    TokenStore(store.path).save(first)
    auth = _oauth(emulator, store)
    with pytest.raises(OSError):
        auth.access_token()
    assert auth._token is None  # the new access token was not kept for use
    with pytest.raises(OSError):
        auth.access_token()  # still cannot persist: no second refresh with a spent token
    assert count(emulator.stats(), "oauth.token") == 1
    store.broken = False  # the disk has room again
    with make_client(emulator, auth) as client:
        assert client.get_current_user()["id"] == DEFAULT_USER
    assert store.load() != first
    assert count(emulator.stats(), "oauth.token", "200") == 2


def test_authorization_code_flow(emulator, tmp_path: Path) -> None:
    redirect = "http://127.0.0.1:9/callback"
    answer = requests.get(
        f"{emulator.origin}/api/oauth2/authorize",
        params={"response_type": "code", "client_id": CLIENT_ID, "redirect_uri": redirect, "state": "xyz"},
        allow_redirects=False, timeout=10,
    )
    assert answer.status_code == 302
    query = parse_qs(urlsplit(answer.headers["Location"]).query)
    assert query["state"] == ["xyz"]
    store = TokenStore(tmp_path / "t.json")
    auth = OAuthRefreshAuth.from_authorization_code(query["code"][0], CLIENT_ID, CLIENT_SECRET, store,
                                                     token_url=emulator.token_url)
    assert store.load()
    with make_client(emulator, auth) as client:
        assert client.get_current_user()["id"] == DEFAULT_USER


def test_client_credentials_enterprise_user_and_as_user(emulator) -> None:
    enterprise = ClientCredentialsAuth(CLIENT_ID, CLIENT_SECRET, subject_type="enterprise",
                                       subject_id=ENTERPRISE, token_url=emulator.token_url)
    with make_client(emulator, enterprise) as client:
        service = client.get_current_user()
    assert service["id"] != DEFAULT_USER  # the enterprise's service account
    user = ClientCredentialsAuth(CLIENT_ID, CLIENT_SECRET, subject_type="user", subject_id=DEFAULT_USER,
                                 token_url=emulator.token_url)
    with make_client(emulator, user) as client:
        assert client.get_current_user()["id"] == DEFAULT_USER
    other = emulator.create_user("Other", "o@example.com")
    acting = ClientCredentialsAuth(CLIENT_ID, CLIENT_SECRET, subject_type="enterprise", subject_id=ENTERPRISE,
                                   token_url=emulator.token_url, as_user=str(other["id"]))
    with make_client(emulator, acting) as client:
        assert client.get_current_user()["id"] == str(other["id"])


def test_client_credentials_bad_secret(emulator) -> None:
    bad = ClientCredentialsAuth(CLIENT_ID, "wrong-secret-value", subject_id=ENTERPRISE, token_url=emulator.token_url)
    with make_client(emulator, bad) as client:
        with pytest.raises(AuthError) as caught:
            client.get_current_user()
    assert caught.value.error_class is ErrorClass.PERMANENT_CONFIG
    assert "wrong-secret-value" not in str(caught.value)


def _app_config(tmp_path: Path, emulator, passphrase: str) -> Path:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    emulator.register_jwt_key("kid-test-1", public_pem)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(passphrase.encode())).decode()
    config = {
        "boxAppSettings": {
            "clientID": CLIENT_ID, "clientSecret": CLIENT_SECRET,
            "appAuth": {"publicKeyID": "kid-test-1", "privateKey": private_pem, "passphrase": passphrase},
        },
        "enterpriseID": ENTERPRISE,
    }
    path = tmp_path / "box_config.json"
    path.write_text(json.dumps(config))
    return path


def test_jwt_from_app_config(emulator, tmp_path: Path) -> None:
    path = _app_config(tmp_path, emulator, "correct horse")
    auth = JWTAuth.from_config_file(path, token_url=emulator.token_url)
    assert "PRIVATE KEY" not in repr(auth) and CLIENT_SECRET not in repr(auth)
    with make_client(emulator, auth) as client:
        assert client.get_current_user()["id"] != DEFAULT_USER  # service account
        emulator.expire_tokens()
        client.get_current_user()  # new assertion (new jti) after the 401
    as_user = JWTAuth.from_config_file(path, user_id=DEFAULT_USER, token_url=emulator.token_url)
    with make_client(emulator, as_user) as client:
        assert client.get_current_user()["id"] == DEFAULT_USER


def test_jwt_wrong_passphrase_is_a_clear_error(emulator, tmp_path: Path) -> None:
    path = _app_config(tmp_path, emulator, "right")
    config = json.loads(path.read_text())
    config["boxAppSettings"]["appAuth"]["passphrase"] = "wrong"
    with pytest.raises(ValueError, match="private key"):
        JWTAuth.from_config(config, token_url=emulator.token_url)


def test_access_token_is_refreshed_shortly_before_expiry(emulator_factory, tmp_path: Path) -> None:
    emulator = emulator_factory("--token-ttl", "2")
    store = TokenStore(tmp_path / "t.json")
    store.save(emulator.mint_refresh_token())
    with make_client(emulator, _oauth(emulator, store)) as client:
        client.get_current_user()
        time.sleep(1.9)  # still valid on the server, but inside the refresh margin
        client.get_current_user()
    stats = emulator.stats()
    assert count(stats, "oauth.token", "200") == 2 and count(stats, "users.me", "401") == 0


def test_token_endpoint_hiccups_are_retried_for_repeatable_grants(emulator, tmp_path: Path) -> None:
    emulator.faults(reject_next={"count": 2, "status": 503, "endpoint": "oauth.token"})
    ccg = ClientCredentialsAuth(CLIENT_ID, CLIENT_SECRET, subject_id=ENTERPRISE, token_url=emulator.token_url)
    assert ccg.access_token()
    path = _app_config(tmp_path, emulator, "pw")
    emulator.faults(reject_next={"count": 2, "status": 502, "endpoint": "oauth.token"})
    assert JWTAuth.from_config_file(path, token_url=emulator.token_url).access_token()
    # A refresh token is never sent twice: a lost or failed answer may have spent it.
    store = TokenStore(tmp_path / "t.json")
    store.save(emulator.mint_refresh_token())
    emulator.faults(reject_next={"count": 1, "status": 503, "endpoint": "oauth.token"})
    with pytest.raises(AuthError) as caught:
        _oauth(emulator, store).access_token()
    assert caught.value.error_class is ErrorClass.RETRY_LATER
    assert count(emulator.stats(), "oauth.token", "503") == 3 and count(emulator.stats(), "oauth.token", "502") == 2


def test_secrets_stay_out_of_logs_and_errors(emulator, tmp_path: Path, caplog) -> None:
    import logging

    from structlog.testing import capture_logs

    caplog.set_level(logging.DEBUG)
    first = emulator.mint_refresh_token()
    store = TokenStore(tmp_path / "t.json")
    store.save(first)
    auth = _oauth(emulator, store)
    seen: list[str] = []
    with make_client(emulator, auth) as client, capture_logs() as events:
        client.get_current_user()
        emulator.faults(reject_next={"count": 2, "status": 503, "endpoint": "users.me"})
        emulator.expire_tokens()
        client.get_current_user()  # 503 x2 (faults answer first) -> 401 -> refresh -> success
        seen += [first, store.load(), auth._token.value]
        with pytest.raises(BoxAPIError) as caught:
            client.get_file("999999999")
    texts = [caplog.text, str(caught.value), repr(caught.value), repr(auth), repr(client), repr(events)]
    texts += [repr(vars(record)) for record in caplog.records]
    assert caplog.records  # the retries were logged
    assert [e["event"] for e in events] == ["box_request_retrying", "box_request_retrying", "box_token_rejected"]
    for secret in seen + [CLIENT_SECRET]:
        assert all(secret not in text for text in texts)
