"""Request builders for the emulator behaviour tests: plain `requests`, Box's wire format."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import requests

from tests.support.emulator import EmulatorProcess


def sha_digest(data: bytes) -> str:
    """`sha=<base64 SHA-1>` as sent in the Digest header."""
    return "sha=" + base64.b64encode(hashlib.sha1(data).digest()).decode()


def auth(emulator: EmulatorProcess, token: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token or emulator.token}"}


def upload(emulator: EmulatorProcess, name: str, data: bytes, parent: str = "0",
           headers: dict[str, str] | None = None, **attributes: Any) -> requests.Response:
    """Direct upload of a new file (attributes first, then the file part)."""
    files = [("attributes", (None, json.dumps({"name": name, "parent": {"id": parent}, **attributes}))),
             ("file", ("unused", data, "application/octet-stream"))]
    return requests.post(f"{emulator.upload_url}/files/content", files=files,
                         headers={**auth(emulator), **(headers or {})}, timeout=30)


def create_folder(emulator: EmulatorProcess, name: str, parent: str = "0") -> requests.Response:
    return requests.post(f"{emulator.api_url}/folders", json={"name": name, "parent": {"id": parent}},
                         headers=auth(emulator), timeout=30)


def create_session(emulator: EmulatorProcess, name: str, size: int, folder: str = "0") -> requests.Response:
    return requests.post(f"{emulator.upload_url}/files/upload_sessions",
                         json={"folder_id": folder, "file_size": size, "file_name": name},
                         headers=auth(emulator), timeout=30)


def put_part(emulator: EmulatorProcess, session: dict[str, Any], data: bytes, offset: int,
             total: int, headers: dict[str, str] | None = None,
             http: requests.Session | None = None) -> requests.Response:
    sender = http or requests
    base = {**auth(emulator), "Digest": sha_digest(data), "Content-Type": "application/octet-stream",
            "Content-Range": f"bytes {offset}-{offset + len(data) - 1}/{total}"}
    return sender.put(session["session_endpoints"]["upload_part"], data=data, headers={**base, **(headers or {})},
                      timeout=60)


def commit(emulator: EmulatorProcess, session: dict[str, Any], parts: list[dict[str, Any]], data: bytes,
           headers: dict[str, str] | None = None, **extra: Any) -> requests.Response:
    return requests.post(session["session_endpoints"]["commit"], json={"parts": parts, **extra},
                         headers={**auth(emulator), "Digest": sha_digest(data), **(headers or {})}, timeout=60)


def chunked_upload(emulator: EmulatorProcess, name: str, data: bytes, folder: str = "0") -> dict[str, Any]:
    """Create a session, upload every part in order, commit; returns the new file."""
    created = create_session(emulator, name, len(data), folder)
    assert created.status_code == 201, created.text
    session = created.json()
    parts = []
    for offset in range(0, len(data), session["part_size"]):
        reply = put_part(emulator, session, data[offset:offset + session["part_size"]], offset, len(data))
        assert reply.status_code == 200, reply.text
        parts.append(reply.json()["part"])
    committed = commit(emulator, session, parts, data)
    assert committed.status_code == 201, committed.text
    return committed.json()["entries"][0]


def create_version_session(emulator: EmulatorProcess, file_id: str, size: int,
                           **body: Any) -> requests.Response:
    return requests.post(f"{emulator.upload_url}/files/{file_id}/upload_sessions",
                         json={"file_size": size, **body}, headers=auth(emulator), timeout=30)


def plan_parts(data: bytes, part_size: int) -> list[dict[str, Any]]:
    """A plan request's parts for `data`: offset, size and hex SHA-512 of each part."""
    return [{"offset": offset, "size": len(data[offset:offset + part_size]),
             "sha512": hashlib.sha512(data[offset:offset + part_size]).hexdigest()}
            for offset in range(0, len(data), part_size)]


def plan(emulator: EmulatorProcess, session: dict[str, Any], parts: Any,
         token: str | None = None) -> requests.Response:
    """POST the session's plan endpoint (`parts` as given: malformed on purpose in some tests)."""
    return requests.post(session["session_endpoints"]["plan"], json={"parts": parts},
                         headers=auth(emulator, token), timeout=60)
