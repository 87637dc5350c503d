"""Every token obtained at run time reaches `Auth.on_token` the moment it is received (the daemon
registers them with its log redactor): OAuth access tokens, the stored and every rotated refresh
token, Client Credentials and JWT access tokens. Against the real emulator."""

from __future__ import annotations

from pathlib import Path

from syncd.box import ClientCredentialsAuth, JWTAuth, OAuthRefreshAuth, TokenStore

from .conftest import make_client
from .test_credentials import CLIENT_ID, CLIENT_SECRET, ENTERPRISE, _app_config


def test_oauth_hands_over_the_stored_and_every_rotated_token_before_using_them(emulator, tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "box-token.json")
    first = emulator.mint_refresh_token()
    store.save(first)
    received: list[str] = []
    auth = OAuthRefreshAuth(CLIENT_ID, CLIENT_SECRET, store, token_url=emulator.token_url)
    auth.on_token = received.append

    persisted_when_handed: list[bool] = []
    real_save = store.save

    def save(token: str) -> None:
        persisted_when_handed.append(token in received)  # handed over before it is written anywhere
        real_save(token)

    store.save = save  # type: ignore[method-assign]
    with make_client(emulator, auth) as client:
        client.get_current_user()
        rotated = store.load()
        emulator.expire_tokens()
        client.get_current_user()  # a 401, one refresh: new access and refresh tokens
        access = auth.access_token()
    assert first in received and rotated in received and store.load() in received and access in received
    assert len(set(received)) == 5  # the stored one, then two (access, refresh) pairs
    assert persisted_when_handed == [True, True]


def test_ccg_and_jwt_hand_over_their_access_tokens(emulator, tmp_path: Path) -> None:
    ccg = ClientCredentialsAuth(CLIENT_ID, CLIENT_SECRET, subject_type="enterprise", subject_id=ENTERPRISE,
                                token_url=emulator.token_url)
    jwt = JWTAuth.from_config_file(_app_config(tmp_path, emulator, "pass phrase"), token_url=emulator.token_url)
    for auth in (ccg, jwt):
        received: list[str] = []
        auth.on_token = received.append
        with make_client(emulator, auth) as client:
            client.get_current_user()
            assert received == [auth.access_token()]
