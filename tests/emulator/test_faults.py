"""Every fault knob observed doing what it says, plus the admin stats."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest
import requests

from tests.emulator.wire import auth, create_session, put_part, upload
from syncd.emulator.harness import EmulatorError
from tests.support.emulator import EmulatorProcess
from tests.support.waiting import wait_until


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    with EmulatorProcess(tmp_path_factory.mktemp("faults"), "--min-chunked-size", "1000",
                         "--part-sizes", "*=64KiB", "--seed", "7") as emulator:
        yield emulator


@pytest.fixture(autouse=True)
def calm(box: EmulatorProcess) -> Iterator[None]:
    yield
    box.faults(latency_ms=0, bandwidth=0, upload_rate_limit=0, api_rate_limit=0, fail_rate=0, drop_rate=0,
               max_file_size=0, storage_quota=0, reject_next=None, refuse=None)


def names(box: EmulatorProcess) -> set[str]:
    return {entry["name"] for entry in box.folder_items("0")}


def test_faults_endpoint_reports_and_validates(box: EmulatorProcess) -> None:
    knobs = box.faults()
    assert knobs["commit_retry_after"] == 1 and knobs["token_ttl"] == 3600
    assert knobs["min_chunked_size"] == 1000 and knobs["seed"] == 7 and knobs["reject_next"] is None
    for bad in ({"fail_rate": 2}, {"latency_ms": -1}, {"no_such_knob": 1}, {"bandwidth": "fast"},
                {"reject_next": {"count": 1, "status": 404}}):
        reply = requests.put(f"{box.origin}/_emulator/faults", json=bad, timeout=30)
        assert reply.status_code == 400 and reply.json()["type"] == "error", bad
    assert box.faults()["fail_rate"] == 0


def test_latency(box: EmulatorProcess) -> None:
    box.faults(latency_ms=150)
    start = time.monotonic()
    requests.get(f"{box.api_url}/users/me", headers=auth(box), timeout=30)
    assert time.monotonic() - start >= 0.15


def test_bandwidth_caps_both_directions(box: EmulatorProcess) -> None:
    data = os.urandom(100_000)
    item = upload(box, "bandwidth.bin", data).json()["entries"][0]
    box.faults(bandwidth=250_000)
    start = time.monotonic()
    assert box.download(item["id"]) == data
    assert time.monotonic() - start >= 0.3
    start = time.monotonic()
    assert upload(box, "bandwidth-up.bin", data).status_code == 201
    assert time.monotonic() - start >= 0.3


def test_upload_rate_limit_429_with_retry_after(box: EmulatorProcess) -> None:
    box.faults(upload_rate_limit=3)
    replies = [upload(box, f"rate-{index}.txt", b"r") for index in range(4)]
    assert [reply.status_code for reply in replies] == [201, 201, 201, 429]
    limited = replies[-1]
    assert limited.json()["code"] == "rate_limit_exceeded"
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert "rate-3.txt" not in names(box)
    assert requests.get(f"{box.api_url}/users/me", headers=auth(box), timeout=30).status_code == 200


def test_api_rate_limit(box: EmulatorProcess) -> None:
    box.faults(api_rate_limit=5)
    statuses = [requests.get(f"{box.api_url}/users/me", headers=auth(box), timeout=30) for _ in range(6)]
    assert [reply.status_code for reply in statuses] == [200] * 5 + [429]
    assert statuses[-1].headers["Retry-After"].isdigit()


def test_reject_next_storm(box: EmulatorProcess) -> None:
    box.faults(reject_next={"count": 2, "status": 429, "retry_after": 7, "endpoint": "files.upload"})
    assert requests.get(f"{box.api_url}/users/me", headers=auth(box), timeout=30).status_code == 200
    first, second, third = (upload(box, f"storm-{index}.txt", b"s") for index in range(3))
    assert first.status_code == second.status_code == 429
    assert first.headers["Retry-After"] == "7" and first.json()["code"] == "rate_limit_exceeded"
    assert third.status_code == 201
    box.faults(reject_next={"count": 1, "status": 503})
    unavailable = requests.get(f"{box.api_url}/users/me", headers=auth(box), timeout=30)
    assert unavailable.status_code == 503 and unavailable.json()["code"] == "unavailable"


def test_refuse_answers_401_or_403_for_a_while_and_spends_nothing(box: EmulatorProcess) -> None:
    refresh = box.mint_tokens()["refresh_token"]
    box.faults(refuse={"status": 401, "seconds": 30})
    me = requests.get(f"{box.api_url}/users/me", headers=auth(box), timeout=30)
    assert me.status_code == 401 and "invalid_token" in me.headers["WWW-Authenticate"]
    grant = requests.post(box.token_url, data={"grant_type": "refresh_token", "refresh_token": refresh,
                                               "client_id": "syncd-emulator-client",
                                               "client_secret": "syncd-emulator-secret"}, timeout=30)
    assert (grant.status_code, grant.json()["error"]) == (400, "invalid_grant")
    assert 0 < box.faults()["refuse"]["seconds_left"] <= 30
    box.faults(refuse=None)
    assert requests.get(f"{box.api_url}/users/me", headers=auth(box), timeout=30).status_code == 200
    grant = requests.post(box.token_url, data={"grant_type": "refresh_token", "refresh_token": refresh,
                                               "client_id": "syncd-emulator-client",
                                               "client_secret": "syncd-emulator-secret"}, timeout=30)
    assert grant.status_code == 200  # the refresh token sent during the window was not spent

    box.faults(refuse={"status": 403, "seconds": 0.5, "endpoints": ["files.upload", "folders.get"]})
    assert requests.get(f"{box.api_url}/users/me", headers=auth(box), timeout=30).status_code == 200
    forbidden = upload(box, "refused.txt", b"r")
    assert (forbidden.status_code, forbidden.json()["code"]) == (403, "access_denied_insufficient_permissions")
    # The window ends by itself.
    wait_until(lambda: upload(box, "later.txt", b"l").status_code != 403, interval=0.1,
               message="the refusal window did not end")
    assert box.faults()["refuse"] is None and "refused.txt" not in names(box)
    for bad in ({"status": 500, "seconds": 1}, {"status": 401, "seconds": 0}, {"status": 403, "seconds": 1,
                                                                             "endpoints": ["nope"]}):
        with pytest.raises(EmulatorError, match="400"):
            box.faults(refuse=bad)


def test_fail_rate(box: EmulatorProcess) -> None:
    box.faults(fail_rate=1.0, seed=3)
    statuses = {upload(box, "never.txt", b"n").status_code for _ in range(20)}
    assert statuses <= {500, 502, 503} and len(statuses) >= 2
    box.faults(fail_rate=0.5, seed=3)
    mixed = [requests.get(f"{box.api_url}/users/me", headers=auth(box), timeout=30).status_code
             for _ in range(40)]
    assert 200 in mixed and any(status >= 500 for status in mixed)
    box.faults(fail_rate=0)
    assert "never.txt" not in names(box)  # an injected failure has no effect


def test_drop_rate_cuts_bodies_without_side_effects(box: EmulatorProcess) -> None:
    box.faults(drop_rate=1.0)
    with pytest.raises(requests.ConnectionError):
        upload(box, "dropped.bin", os.urandom(50_000))
    session = create_session_quietly(box)
    assert requests.get(f"{box.api_url}/users/me", headers=auth(box), timeout=30).status_code == 200
    box.faults(drop_rate=0)
    assert "dropped.bin" not in names(box)
    assert session is None
    stats = box.stats()
    assert stats["requests"]["files.upload"].get("0", 0) >= 1  # status 0 = connection dropped


def create_session_quietly(box: EmulatorProcess) -> dict | None:
    try:
        reply = create_session(box, "dropped-session.bin", 5000)
    except requests.ConnectionError:
        return None
    return reply.json()


def test_max_file_size_and_quota(box: EmulatorProcess) -> None:
    box.faults(max_file_size=100)
    too_big = upload(box, "too-big.bin", b"x" * 101)
    assert too_big.status_code == 403 and too_big.json()["code"] == "file_size_limit_exceeded"
    session = create_session(box, "too-big-session.bin", 5000)
    assert session.status_code == 403 and session.json()["code"] == "file_size_limit_exceeded"
    preflight = requests.options(f"{box.api_url}/files/content", headers=auth(box), timeout=30,
                                 json={"name": "p.bin", "size": 101, "parent": {"id": "0"}})
    assert preflight.status_code == 403 and preflight.json()["code"] == "file_size_limit_exceeded"
    assert upload(box, "fits.bin", b"x" * 100).status_code == 201
    box.faults(max_file_size=0)
    used = requests.get(f"{box.api_url}/users/me", headers=auth(box), timeout=30).json()["space_used"]
    box.faults(storage_quota=used + 50)
    assert upload(box, "quota-ok.bin", b"q" * 50).status_code == 201
    full = upload(box, "quota-full.bin", b"q")
    assert full.status_code == 403 and full.json()["code"] == "storage_limit_exceeded"
    session = create_session(box, "quota-session.bin", 5000)
    assert session.status_code == 403 and session.json()["code"] == "storage_limit_exceeded"


def test_stats_count_requests_and_bytes(box: EmulatorProcess) -> None:
    box.reset_stats()
    data = os.urandom(70_000)
    upload(box, "stats.bin", data)
    session = create_session(box, "stats-session.bin", 70_000).json()
    put_part(box, session, data[:65536], 0, len(data))
    requests.get(f"{box.api_url}/folders/0", headers=auth(box), timeout=30)
    requests.get(f"{box.api_url}/bogus", headers=auth(box), timeout=30)
    stats = box.stats()
    assert stats["requests"]["files.upload"] == {"201": 1}
    assert stats["requests"]["sessions.create"] == {"201": 1}
    assert stats["requests"]["sessions.upload_part"] == {"200": 1}
    assert stats["requests"]["folders.get"] == {"200": 1}
    assert stats["requests"]["unknown"] == {"404": 1}
    assert stats["bytes_received"]["sessions.upload_part"] == 65536
    assert stats["bytes_received"]["files.upload"] > 70_000
    assert stats["bytes_received"]["total"] >= 65536 + 70_000
    box.reset_stats()
    assert box.stats()["requests"] == {}


def test_reject_next_applied_does_the_work_then_fails(box: EmulatorProcess) -> None:
    box.faults(reject_next={"count": 1, "status": 503, "retry_after": 2, "endpoint": "files.upload",
                            "applied": True})
    reply = upload(box, "applied-anyway.txt", b"a")
    assert reply.status_code == 503 and reply.headers["Retry-After"] == "2"
    assert "applied-anyway.txt" in names(box)  # the write happened although the answer was an error
    retry = upload(box, "applied-anyway.txt", b"a")
    assert retry.status_code == 409 and retry.json()["context_info"]["conflicts"]["sha1"] == \
        "86f7e437faa5a7fce15d1ddcb9eaeaea377667b8"
    bad = requests.put(f"{box.origin}/_emulator/faults", timeout=30,
                       json={"reject_next": {"count": 1, "status": 429, "applied": True}})
    assert bad.status_code == 400


def test_random_503_carries_retry_after(box: EmulatorProcess) -> None:
    box.faults(fail_rate=1.0, seed=11)
    replies = [requests.get(f"{box.api_url}/users/me", headers=auth(box), timeout=30) for _ in range(30)]
    unavailable = [reply for reply in replies if reply.status_code == 503]
    assert unavailable and all(reply.headers["Retry-After"] == "1" for reply in unavailable)


def test_every_endpoint_can_be_named_in_reject_next() -> None:
    from syncd.emulator.app import ROUTES
    from syncd.emulator.faults import ENDPOINT_NAMES

    served = {route.endpoint for route in ROUTES} | {"oauth.token", "oauth.authorize", "downloads.content"}
    assert served <= ENDPOINT_NAMES, sorted(served - ENDPOINT_NAMES)
