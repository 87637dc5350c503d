"""Box-style errors raised by the emulator's request handlers.

A handler raises `BoxError`; the HTTP layer turns it into the JSON body Box
sends (`type: "error"`, `status`, `code`, `message`, `context_info`,
`help_url`, `request_id`). The token endpoint uses `OAuthError` instead,
whose body is Box's OAuth2Error shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

HELP_URL = "https://developer.box.com/guides/api-calls/permissions-and-errors/common-errors/"


@dataclass
class BoxError(Exception):
    """An error answered with Box's ClientError body."""

    status: int
    code: str
    message: str
    context_info: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    empty_body: bool = False  # the live 401 has no body, only WWW-Authenticate

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.message}"

    def body(self, request_id: str) -> dict[str, Any]:
        """The JSON body Box sends for this error."""
        return {
            "type": "error",
            "status": self.status,
            "code": self.code,
            "message": self.message,
            "context_info": self.context_info,
            "help_url": HELP_URL,
            "request_id": request_id,
        }


@dataclass
class OAuthError(Exception):
    """An error of the token endpoint: `{"error", "error_description"}`."""

    error: str
    description: str
    status: int = 400

    def __str__(self) -> str:
        return f"{self.status} {self.error}: {self.description}"

    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}


def bad_request(message: str, name: str | None = None, code: str = "bad_request") -> BoxError:
    """400 with the `context_info.errors[]` list Box sends for validation failures."""
    context = None
    if name is not None:
        context = {"errors": [{"reason": "invalid_parameter", "name": name, "message": message}]}
    return BoxError(400, code, message, context)


def not_found(what: str = "Not Found") -> BoxError:
    return BoxError(404, "not_found", what)


STATUS_CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    411: "length_required",
    413: "request_entity_too_large",
    414: "request_uri_too_long",
    429: "rate_limit_exceeded",
    431: "request_header_fields_too_large",
    500: "internal_server_error",
    501: "not_implemented",
    502: "bad_gateway",
    503: "unavailable",
    505: "http_version_not_supported",
}


def generic(status: int, message: str) -> BoxError:
    """An error whose code follows from the status alone."""
    return BoxError(status, STATUS_CODES.get(status, "bad_request"), message)
