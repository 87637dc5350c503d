"""Unit tests of pure logic: backoff, error classification,
conflict parsing, content-range math, secret hygiene of reprs."""

from __future__ import annotations

import random

import pytest
import requests

from syncd.box import (
    BoxAPIError,
    ClientCredentialsAuth,
    DeveloperTokenAuth,
    ErrorClass,
    OAuthRefreshAuth,
    RetryPolicy,
    SavedSession,
    TokenStore,
    UploadedPart,
    Uploader,
    classify,
)
from syncd.box.errors import parse_conflicts, parse_retry_after
from syncd.box.http_retry import backoff_delay, retry_delay
from syncd.box.transport import is_loopback
from syncd.box.chunked_upload import content_range, part_ranges, sha_digest_header
from syncd.box.upload_values import box_time


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (429, "rate_limit_exceeded", ErrorClass.RETRY_LATER),
        (503, None, ErrorClass.RETRY_LATER),
        (500, "internal_server_error", ErrorClass.RETRY_LATER),
        (401, "unauthorized", ErrorClass.REFRESH_AUTH),
        (401, None, ErrorClass.REFRESH_AUTH),
        (409, "item_name_in_use", ErrorClass.NAME_CONFLICT),
        (409, "name_temporarily_reserved", ErrorClass.RETRY_LATER),
        (409, "operation_blocked_temporary", ErrorClass.RETRY_LATER),
        (400, "item_name_invalid", ErrorClass.QUARANTINE),
        (403, "file_size_limit_exceeded", ErrorClass.QUARANTINE),
        (400, "item_name_too_long", ErrorClass.QUARANTINE),
        (413, "request_entity_too_large", ErrorClass.QUARANTINE),
        (400, "file_size_too_small", ErrorClass.PERMANENT_FILE),
        (412, "precondition_failed", ErrorClass.PERMANENT_FILE),
        (403, "storage_limit_exceeded", ErrorClass.QUOTA),
        (404, "not_found", ErrorClass.PERMANENT_CONFIG),
        (400, "invalid_grant", ErrorClass.PERMANENT_CONFIG),
        (410, "session_expired", ErrorClass.RETRY_LATER),
        (400, "parts_mismatch", ErrorClass.RETRY_LATER),
    ],
)
def test_classification(status: int, code: str | None, expected: ErrorClass) -> None:
    assert classify(status, code) is expected


def test_conflicts_object_and_array_forms() -> None:
    item = {"type": "file", "id": "12", "sha1": "ab" * 20, "etag": 1, "name": "a.txt"}
    as_object = parse_conflicts({"conflicts": item})
    as_array = parse_conflicts({"conflicts": [item, {"type": "folder", "id": "7"}]})
    assert as_object[0].id == "12" and as_object[0].sha1 == "ab" * 20 and as_object[0].etag == "1"
    assert [c.id for c in as_array] == ["12", "7"]
    # sha1 only inside file_version is accepted too
    nested = parse_conflicts({"conflicts": {"type": "file", "id": "3", "file_version": {"sha1": "cd" * 20}}})
    assert nested[0].sha1 == "cd" * 20
    assert parse_conflicts(None) == [] and parse_conflicts({"conflicts": "x"}) == []


def _response(status: int, body: bytes, headers: dict[str, str] | None = None) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = body
    response.headers.update(headers or {})
    response.url = "http://127.0.0.1:1/2.0/files/content?secret=nope"
    return response


def test_error_from_box_body_and_oauth_body() -> None:
    box = BoxAPIError.from_response(_response(
        409, b'{"type":"error","status":409,"code":"item_name_in_use","message":"taken",'
             b'"request_id":"r1","context_info":{"conflicts":{"type":"file","id":"5","sha1":"00"}}}',
        {"Retry-After": "3"}))
    assert (box.status, box.code, box.request_id, box.retry_after) == (409, "item_name_in_use", "r1", 3.0)
    assert box.conflicts[0].id == "5" and box.error_class is ErrorClass.NAME_CONFLICT
    assert "secret" not in str(box)  # query strings are not echoed
    oauth = BoxAPIError.from_response(_response(400, b'{"error":"invalid_grant","error_description":"spent"}'))
    assert (oauth.code, oauth.message, oauth.error_class) == ("invalid_grant", "spent", ErrorClass.PERMANENT_CONFIG)
    empty = BoxAPIError.from_response(_response(401, b"", {"box-request-id": "h1"}))
    assert (empty.code, empty.request_id, empty.error_class) == ("unauthorized", "h1", ErrorClass.REFRESH_AUTH)


def test_retry_after_parsing() -> None:
    assert parse_retry_after("2") == 2.0 and parse_retry_after("0.5") == 0.5
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") is None
    assert parse_retry_after("-1") is None and parse_retry_after(None) is None


def test_full_jitter_backoff_is_bounded_and_grows() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=8.0)
    rng = random.Random(1)
    for attempt in range(10):
        ceiling = min(8.0, 0.5 * 2**attempt)
        samples = [backoff_delay(attempt, policy, rng) for _ in range(200)]
        assert all(0.0 <= s <= ceiling for s in samples)
        # full jitter: spread over the whole range, not clustered at the top
        assert min(samples) < ceiling * 0.2 and max(samples) > ceiling * 0.8


def test_retry_after_is_honoured_with_small_jitter() -> None:
    rng = random.Random(2)
    policy = RetryPolicy()
    for _ in range(100):
        delay = retry_delay(3, 4.0, policy, rng)
        assert 4.0 <= delay <= 4.0 + 0.45


def test_retry_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)


def test_content_range_and_parts() -> None:
    assert content_range(0, 8, 20) == "bytes 0-7/20"
    assert content_range(16, 4, 20) == "bytes 16-19/20"
    with pytest.raises(ValueError):
        content_range(16, 5, 20)
    assert part_ranges(20, 8) == [(0, 8), (8, 8), (16, 4)]
    assert part_ranges(16, 8) == [(0, 8), (8, 8)]
    assert part_ranges(0, 8) == []
    ranges = part_ranges(10**9 + 7, 32 * 1024 * 1024)
    assert sum(length for _, length in ranges) == 10**9 + 7
    assert all(offset % (32 * 1024 * 1024) == 0 for offset, _ in ranges)


def test_digest_header_and_box_time() -> None:
    import hashlib

    assert sha_digest_header(hashlib.sha1(b"abc").digest()) == "sha=qZk+NkcGgWq6PiVxeFDCbJzQ2J0="
    assert box_time(0) == "1970-01-01T00:00:00+00:00"
    assert box_time(1.9) == "1970-01-01T00:00:01+00:00"  # whole seconds


def test_loopback_detection() -> None:
    assert is_loopback("http://127.0.0.1:8/2.0") and is_loopback("http://localhost/") and is_loopback("http://[::1]/")
    assert not is_loopback("https://api.box.com/2.0") and not is_loopback("http://10.0.0.1/")


def test_secrets_never_in_repr(tmp_path) -> None:
    dev = DeveloperTokenAuth("s3cr3t-token-value", as_user="42")
    oauth = OAuthRefreshAuth("client-id", "client-s3cr3t", TokenStore(tmp_path / "t.json"))
    ccg = ClientCredentialsAuth("cid", "ccg-s3cr3t", subject_id="1234567")
    for auth, secret in ((dev, "s3cr3t-token-value"), (oauth, "client-s3cr3t"), (ccg, "ccg-s3cr3t")):
        assert secret not in repr(auth) and secret not in str(auth)
    from syncd.box import AccessToken

    assert "tok-value" not in repr(AccessToken("tok-value", 10.0, 10.0))


def test_bad_configuration_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="20000000"):
        Uploader(object(), chunked_threshold=1024)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="subject_type"):
        ClientCredentialsAuth("a", "b", subject_type="group", subject_id="1")
    with pytest.raises(ValueError):
        DeveloperTokenAuth("")


def test_saved_session_round_trips_through_json() -> None:
    import json

    from syncd.box import SavedSession, UploadedPart

    raw = {"id": "ABC", "part_size": 8, "total_parts": 3, "session_expires_at": "2026-01-01T00:00:00+00:00",
           "session_endpoints": {"upload_part": "http://h/s/ABC", "commit": "http://h/s/ABC/commit",
                                 "list_parts": "http://h/s/ABC/parts", "abort": "http://h/s/ABC",
                                 "status": "http://h/s/ABC"}}
    session = SavedSession.from_json(raw, file_size=20)
    session = SavedSession(**{**vars(session), "parts": (UploadedPart("p1", 0, 8, "aa"),)})
    again = SavedSession.from_saved_json(json.loads(json.dumps(session.to_json())))
    assert again == session and again.commit_url.endswith("/commit")


def test_fingerprint_differences() -> None:
    from syncd.box import SourceFingerprint

    base = SourceFingerprint(10, 100, 5, 1)
    assert base.difference(base) is None
    assert "inode" in base.difference(SourceFingerprint(10, 100, 6, 1))
    assert "size" in base.difference(SourceFingerprint(11, 100, 5, 1))
    assert "modification" in base.difference(SourceFingerprint(10, 101, 5, 1))


def test_malformed_urls_fail_at_once_without_retries() -> None:
    from syncd.box import Transport

    slept: list[float] = []
    transport = Transport(DeveloperTokenAuth("t"), sleep=slept.append)
    with pytest.raises(ValueError, match="bad request"):
        transport.request("GET", "no-scheme/2.0/users/me")
    assert slept == []


class PagedFolder:
    """Stands in for the transport: serves a folder listing page by page (paging logic only)."""

    def __init__(self, items: list[dict], *, markers: bool) -> None:
        self.items, self.markers, self.calls = items, markers, []

    def request_json(self, method: str, url: str, params: dict) -> dict:
        self.calls.append(dict(params))
        limit = params["limit"]
        if self.markers and params.get("usemarker"):
            start = int(params.get("marker") or 0)
            page = {"entries": self.items[start:start + limit], "limit": limit}
            if start + limit < len(self.items):
                page["next_marker"] = str(start + limit)
            return page
        start = params.get("offset", 0)
        return {"entries": self.items[start:start + limit], "total_count": len(self.items), "offset": start}


@pytest.mark.parametrize("markers", [True, False])
def test_folder_paging_by_marker_or_offset(markers: bool) -> None:
    from syncd.box import BoxClient

    items = [{"type": "file", "id": str(i), "name": f"f{i}"} for i in range(7)]
    fake = PagedFolder(items, markers=markers)
    client = BoxClient(DeveloperTokenAuth("t"), api_url="http://127.0.0.1:1/2.0")
    client.transport = fake  # type: ignore[assignment]
    assert [item["id"] for item in client.iter_folder_items("0", limit=3)] == [str(i) for i in range(7)]
    assert len(fake.calls) == 3


def test_a_resumed_session_derives_its_urls_as_box_lays_them_out() -> None:
    # The journal keeps one URL per session; the others follow from it, as for a session
    # Box describes with its upload_part endpoint only.
    base = "https://upload.box.com/api/2.0"
    values = dict(file_size=30, part_size=8, total_parts=4, expires_at="2030-01-01T00:00:00+00:00")
    from_box = SavedSession.from_json({"id": "S1", "part_size": 8, "total_parts": 4,
                                       "session_expires_at": values["expires_at"],
                                       "session_endpoints": {"upload_part": f"{base}/files/upload_sessions/S1"}}, 30)
    assert SavedSession.resumed("S1", endpoint=None, upload_url=base + "/", **values) == from_box
    elsewhere = "https://upload-las.app.box.com/api/2.0/files/upload_sessions/S1"
    moved = SavedSession.resumed("S1", endpoint=elsewhere, upload_url=base, **values,
                                 parts=[UploadedPart("P0", 0, 8, "00" * 20)])
    assert (moved.upload_part_url, moved.status_url, moved.abort_url) == (elsewhere, elsewhere, elsewhere)
    assert (moved.commit_url, moved.list_parts_url) == (f"{elsewhere}/commit", f"{elsewhere}/parts")
    assert moved.parts == (UploadedPart("P0", 0, 8, "00" * 20),)


# ------------------------------------------------- the transport's parts, one by one


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_retry_state_retries_rate_limits_and_server_errors_within_the_policy() -> None:
    from syncd.box.http_retry import RetryState

    clock = _Clock()
    state = RetryState(RetryPolicy(max_attempts=3, deadline=100.0), lambda retry, after: after or 1.0 + retry,
                       clock=clock)
    assert state.after_answer(400, None, replay_safe=True) is None  # not transient: final
    assert state.after_answer(429, 7.0, replay_safe=False) == 7.0  # Retry-After obeyed, even for a write
    assert state.after_answer(503, None, replay_safe=True) == 2.0  # second retry's backoff
    assert state.after_answer(503, None, replay_safe=True) is None  # third send failed: max_attempts
    assert state.failures == 3
    # A write answered 5xx may have been applied: never sent again from here.
    assert RetryState(RetryPolicy(), lambda r, a: 0.0).after_answer(502, None, replay_safe=False) is None


def test_retry_state_stops_at_the_deadline() -> None:
    from syncd.box.http_retry import RetryState

    clock = _Clock()
    state = RetryState(RetryPolicy(max_attempts=50, deadline=10.0), lambda retry, after: after or 1.0, clock=clock)
    assert state.after_no_answer() == 1.0
    assert state.after_answer(429, 20.0, replay_safe=True) is None  # waiting would pass the deadline
    clock.now = 10.5
    assert state.after_no_answer() is None and state.failures == 3


def test_send_errors_are_mapped_by_whether_the_body_may_have_arrived() -> None:
    import urllib3.exceptions

    from syncd.box import BoxConnectionError, OutcomeUnknown
    from syncd.box.http_errors import mapped_send_errors

    url = "https://upload.box.com/api/2.0/files/content?token=x"
    refused = requests.ConnectionError(urllib3.exceptions.MaxRetryError(
        None, url, urllib3.exceptions.NewConnectionError(None, "refused")))  # type: ignore[arg-type]
    cases = [
        (requests.ConnectTimeout(), False, BoxConnectionError),  # never reached Box: safe to send again
        (refused, False, BoxConnectionError),
        (requests.ReadTimeout(), False, OutcomeUnknown),  # may have been applied: look first
        (requests.ReadTimeout(), True, BoxConnectionError),
        (requests.exceptions.MissingSchema(), True, ValueError),  # a mistake in the request
    ]
    for raised, replay_safe, expected in cases:
        with pytest.raises(expected) as caught:
            with mapped_send_errors("POST", url, replay_safe=replay_safe):
                raise raised
        assert "token=x" not in str(caught.value)
        if expected is not ValueError:
            assert (caught.value.method, caught.value.cause) == ("POST", type(raised).__name__)


def test_unaccepted_answers_become_box_errors_with_code_and_request_id() -> None:
    from syncd.box.http_errors import accepted

    ok = _response(202, b"")
    assert accepted(ok, None) is ok and accepted(ok, (200, 202)) is ok
    with pytest.raises(BoxAPIError) as caught:
        accepted(_response(404, b'{"type":"error","code":"not_found","message":"gone","request_id":"r9"}'), None)
    assert (caught.value.status, caught.value.code, caught.value.request_id) == (404, "not_found", "r9")
    with pytest.raises(BoxAPIError):
        accepted(_response(200, b""), (201,))


class _CountingAuth(DeveloperTokenAuth):
    """A refreshable token source that hands out t1, t2... (the auth flow's logic only)."""

    can_refresh = True

    def __init__(self) -> None:
        super().__init__("unused", as_user="42")
        self.issued = 0
        self.invalidated: list[str] = []

    def access_token(self) -> str:
        if not self.issued or self.invalidated:
            self.issued += 1
            self.invalidated.clear()
        return f"t{self.issued}"

    def invalidate(self, token: str) -> None:
        self.invalidated.append(token)


def test_auth_flow_sets_headers_and_refreshes_once_after_a_401() -> None:
    auth = _CountingAuth()
    flow = auth.flow()
    headers: dict[str, str] = {}
    flow.apply(headers)
    assert headers == {"Authorization": "Bearer t1", "As-User": "42"}
    assert flow.refresh_after(_response(200, b"")) is False
    assert flow.refresh_after(_response(401, b"")) is True and auth.invalidated == ["t1"]
    flow.apply(headers)
    assert headers["Authorization"] == "Bearer t2"
    assert flow.refresh_after(_response(401, b"")) is False  # refused again: the 401 is the answer
    assert auth.flow().refresh_after(_response(401, b"")) is False  # nothing sent yet, nothing to refresh
    assert DeveloperTokenAuth("d").flow().refresh_after(_response(401, b"")) is False
