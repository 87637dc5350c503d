"""Bearer tokens, OAuth grants (code, refresh rotation, CCG, JWT) and as-user."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.emulator.wire import auth, upload
from tests.support.emulator import EmulatorProcess

CLIENT = {"client_id": "syncd-emulator-client", "client_secret": "syncd-emulator-secret"}


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    with EmulatorProcess(tmp_path_factory.mktemp("auth")) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def token(box: EmulatorProcess, **form: str) -> requests.Response:
    return requests.post(box.token_url, data=form, timeout=30)


def me(box: EmulatorProcess, access: str, **headers: str) -> requests.Response:
    return requests.get(f"{box.api_url}/users/me", headers={"Authorization": f"Bearer {access}", **headers},
                        timeout=30)


def assert_401(reply: requests.Response) -> None:
    assert reply.status_code == 401
    assert reply.headers["WWW-Authenticate"].startswith('Bearer realm="Service", error="invalid_token"')
    assert reply.json()["code"] == "unauthorized"


def test_missing_unknown_and_expired_tokens(box: EmulatorProcess, emulator_factory) -> None:
    assert_401(requests.get(f"{box.api_url}/users/me", timeout=30))
    assert_401(me(box, "no-such-token"))
    assert_401(requests.get(f"{box.api_url}/users/me", headers={"Authorization": "Basic abc"}, timeout=30))
    other = emulator_factory(token="secret-dev")
    assert me(other, "secret-dev").status_code == 200
    assert_401(me(other, "dev-token"))
    other.expire_tokens()
    assert_401(me(other, "secret-dev"))
    other.restart()  # a restart registers --token afresh
    assert me(other, "secret-dev").status_code == 200
    other.token = "next-dev"
    other.restart()  # ...and only the current one
    assert me(other, "next-dev").status_code == 200
    assert_401(me(other, "secret-dev"))


def test_refresh_tokens_rotate_and_die_after_use(box: EmulatorProcess) -> None:
    refresh = box.mint_refresh_token()
    first = token(box, grant_type="refresh_token", refresh_token=refresh, **CLIENT)
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["token_type"] == "bearer" and body["expires_in"] == 3600
    assert body["refresh_token"] != refresh and me(box, body["access_token"]).status_code == 200
    reused = token(box, grant_type="refresh_token", refresh_token=refresh, **CLIENT)
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"
    second = token(box, grant_type="refresh_token", refresh_token=body["refresh_token"], **CLIENT)
    assert second.status_code == 200
    wrong_client = token(box, grant_type="refresh_token", refresh_token=second.json()["refresh_token"],
                         client_id="syncd-emulator-client", client_secret="wrong")
    assert wrong_client.status_code == 400 and wrong_client.json()["error"] == "invalid_client"
    assert "wrong" not in wrong_client.text


def test_token_endpoint_bad_requests(box: EmulatorProcess) -> None:
    assert token(box).json()["error"] == "invalid_request"
    assert token(box, grant_type="password", **CLIENT).json()["error"] == "unsupported_grant_type"
    assert token(box, grant_type="refresh_token", **CLIENT).json()["error"] == "invalid_request"
    assert requests.get(box.token_url, timeout=30).status_code == 405


def test_authorization_code_flow(box: EmulatorProcess) -> None:
    authorize = requests.get(f"{box.origin}/api/oauth2/authorize", allow_redirects=False, timeout=30, params={
        "response_type": "code", "client_id": CLIENT["client_id"], "redirect_uri": "http://localhost:9/cb",
        "state": "xyz"})
    assert authorize.status_code == 302
    query = parse_qs(urlsplit(authorize.headers["Location"]).query)
    assert query["state"] == ["xyz"]
    grant = token(box, grant_type="authorization_code", code=query["code"][0], **CLIENT)
    assert grant.status_code == 200 and grant.json()["refresh_token"]
    again = token(box, grant_type="authorization_code", code=query["code"][0], **CLIENT)
    assert again.json()["error"] == "invalid_grant"
    authorize = requests.get(f"{box.origin}/api/oauth2/authorize", allow_redirects=False, timeout=30, params={
        "response_type": "code", "client_id": CLIENT["client_id"], "redirect_uri": "http://localhost:9/cb"})
    code = parse_qs(urlsplit(authorize.headers["Location"]).query)["code"][0]
    box.advance_clock(31)  # codes live 30 s
    assert token(box, grant_type="authorization_code", code=code, **CLIENT).json()["error"] == "invalid_grant"


def test_client_credentials(box: EmulatorProcess) -> None:
    enterprise = token(box, grant_type="client_credentials", box_subject_type="enterprise",
                       box_subject_id="1234567", **CLIENT)
    assert enterprise.status_code == 200 and "refresh_token" not in enterprise.json()
    service = me(box, enterprise.json()["access_token"]).json()
    assert service["id"] != "11446498"
    user = token(box, grant_type="client_credentials", box_subject_type="user", box_subject_id="11446498", **CLIENT)
    assert me(box, user.json()["access_token"]).json()["id"] == "11446498"
    for bad in ({"box_subject_type": "enterprise", "box_subject_id": "999"},
                {"box_subject_type": "user", "box_subject_id": "424242"},
                {"box_subject_type": "enterprise", "box_subject_id": "1234567", "client_secret": "nope"}):
        reply = token(box, grant_type="client_credentials", **{**CLIENT, **bad})
        assert reply.status_code == 400 and reply.json() == {"error": "invalid_grant",
                                                              "error_description": "Grant credentials are invalid"}


def _assertion(key: rsa.RSAPrivateKey, algorithm: str = "RS256", kid: str = "kid-1", lifetime: int = 30,
               jti: str | None = None, **claims: object) -> str:
    payload = {"iss": CLIENT["client_id"], "sub": "1234567", "box_sub_type": "enterprise",
               "aud": "https://api.box.com/oauth2/token", "jti": jti or secrets.token_hex(16),
               "exp": int(time.time()) + lifetime, **claims}
    return jwt.encode(payload, key, algorithm=algorithm, headers={"kid": kid})


def test_jwt_bearer_grant(box: EmulatorProcess, rsa_key: rsa.RSAPrivateKey) -> None:
    pem = rsa_key.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    box.register_jwt_key("kid-1", pem)
    grant = "urn:ietf:params:oauth:grant-type:jwt-bearer"
    for algorithm in ("RS256", "RS384", "RS512"):
        reply = token(box, grant_type=grant, assertion=_assertion(rsa_key, algorithm), **CLIENT)
        assert reply.status_code == 200, reply.text
        assert me(box, reply.json()["access_token"]).status_code == 200
    reused_jti = secrets.token_hex(16)
    assert token(box, grant_type=grant, assertion=_assertion(rsa_key, jti=reused_jti), **CLIENT).status_code == 200
    failures = [
        _assertion(rsa_key, jti=reused_jti),
        _assertion(rsa_key, lifetime=120),
        _assertion(rsa_key, lifetime=-30),
        _assertion(rsa_key, kid="unknown-kid"),
        _assertion(rsa_key, jti="short"),
        _assertion(rsa_key, iss="someone-else"),
        _assertion(rsa_key, aud="https://example.com"),
        _assertion(rsa_key, sub="999"),
        _assertion(rsa.generate_private_key(public_exponent=65537, key_size=2048)),
        "not.a.jwt",
    ]
    for assertion in failures:
        reply = token(box, grant_type=grant, assertion=assertion, **CLIENT)
        assert reply.status_code == 400 and reply.json()["error"] == "invalid_grant", reply.text
    hs = jwt.encode({"iss": CLIENT["client_id"]}, "secret-key-of-at-least-32-bytes!", algorithm="HS256",
                    headers={"kid": "kid-1"})
    assert token(box, grant_type=grant, assertion=hs, **CLIENT).json()["error"] == "invalid_grant"


def test_jwt_key_from_the_command_line(emulator_factory, rsa_key: rsa.RSAPrivateKey, tmp_path) -> None:
    pem_file = tmp_path / "public.pem"
    pem_file.write_bytes(rsa_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                           serialization.PublicFormat.SubjectPublicKeyInfo))
    box = emulator_factory("--jwt-public-key", str(pem_file), "--jwt-key-id", "cli-kid",
                           "--client-id", "my-app", "--client-secret", "my-secret")
    assertion = _assertion(rsa_key, kid="cli-kid", iss="my-app", sub="11446498", box_sub_type="user")
    reply = token(box, grant_type="urn:ietf:params:oauth:grant-type:jwt-bearer", assertion=assertion,
                  client_id="my-app", client_secret="my-secret")
    assert reply.status_code == 200, reply.text
    assert me(box, reply.json()["access_token"]).json()["id"] == "11446498"


def test_token_ttl_knob(emulator_factory) -> None:
    box = emulator_factory("--token-ttl", "60")
    reply = token(box, grant_type="refresh_token", refresh_token=box.mint_refresh_token(), **CLIENT)
    assert reply.json()["expires_in"] == 60
    access = reply.json()["access_token"]
    assert me(box, access).status_code == 200
    box.advance_clock(61)
    assert_401(me(box, access))
    box.faults(token_ttl=7200)
    fresh = token(box, grant_type="refresh_token", refresh_token=reply.json()["refresh_token"], **CLIENT)
    assert fresh.json()["expires_in"] == 7200


def test_as_user(box: EmulatorProcess) -> None:
    other = box.create_user("Alice", "alice@example.com")
    mine = upload(box, "only-mine.txt", b"m").json()["entries"][0]
    assert me(box, "dev-token", **{"As-User": other["id"]}).json()["id"] == other["id"]
    hidden = requests.get(f"{box.api_url}/files/{mine['id']}", headers={**auth(box), "As-User": other["id"]},
                          timeout=30)
    assert hidden.status_code == 404
    files = [("attributes", (None, '{"name": "alice.txt", "parent": {"id": "0"}}')), ("file", ("f", b"a"))]
    created = requests.post(f"{box.upload_url}/files/content", files=files,
                            headers={**auth(box), "As-User": other["id"]}, timeout=30)
    assert created.json()["entries"][0]["owned_by"]["id"] == other["id"]
    assert "alice.txt" not in {entry["name"] for entry in box.folder_items("0")}
    unknown = me(box, "dev-token", **{"As-User": "5"})
    assert unknown.status_code == 400
    user_token = token(box, grant_type="client_credentials", box_subject_type="user",
                       box_subject_id=other["id"], **CLIENT).json()["access_token"]
    denied = me(box, user_token, **{"As-User": "11446498"})
    assert denied.status_code == 403 and denied.json()["code"] == "access_denied_insufficient_permissions"


def test_refresh_tokens_expire_after_60_days(emulator_factory) -> None:
    box = emulator_factory()
    refresh = box.mint_refresh_token()
    box.advance_clock(60 * 24 * 3600 + 1)
    reply = token(box, grant_type="refresh_token", refresh_token=refresh, **CLIENT)
    assert reply.status_code == 400 and reply.json()["error"] == "invalid_grant"
