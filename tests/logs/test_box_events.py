"""The Box client's log lines carry their fields: a request Box answered 429 and that was
sent again, against the real emulator, rendered as JSON (journald: test_journald.py)."""

from __future__ import annotations

import io
import json

from syncd import logs
from syncd.box import BoxClient, DeveloperTokenAuth, RateLimits, RetryPolicy


def retried_request(emulator) -> None:
    """One GET /users/me that Box first answers 429 (Retry-After: 0), then 200."""
    emulator.faults(reject_next={"count": 1, "status": 429, "retry_after": 0, "endpoint": "users.me"})
    with BoxClient(DeveloperTokenAuth(emulator.token), api_url=emulator.api_url, upload_url=emulator.upload_url,
                   retry=RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05),
                   rate_limits=RateLimits(api_calls_per_minute=None, uploads_per_minute=None)) as client:
        assert client.get_current_user()["id"]


def test_a_retried_request_logs_method_attempt_wait_status_code_and_request_id_as_json(emulator) -> None:
    buffer = io.StringIO()
    logs.configure_logging("json", "info", stream=buffer)
    retried_request(emulator)
    [line] = [json.loads(text) for text in buffer.getvalue().splitlines()]
    assert (line["logger"], line["level"], line["event"]) == ("syncd.box.transport", "info", "box_request_retrying")
    assert (line["method"], line["url"], line["attempt"]) == ("GET", f"{emulator.api_url}/users/me", 1)
    assert (line["status"], line["error_code"]) == (429, "rate_limit_exceeded")
    assert isinstance(line["wait_s"], float) and 0.0 <= line["wait_s"] <= 0.05  # Retry-After 0 plus jitter
    assert isinstance(line["request_id"], str) and line["request_id"]
    assert emulator.token not in buffer.getvalue()
