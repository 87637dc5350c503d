"""Box's "Plan upload session": which parts of a new version the emulator already holds (issue 13).

`POST {upload}/2.0/files/upload_sessions/{id}/plan` with
`{"parts": [{"offset", "size", "sha512"}, ...]}` answers
`{"upload_session_id", "hits": [{"offset", "size", "sha512", "part_id"}], "misses": [{"offset", "size", "sha512"}]}`
(the shapes of boxsdk 10.18's UploadSessionPlanRequest / UploadSessionPlanResponse).

A part is a hit when the session is for a new version and the file's current
version holds the same bytes at the same offset: same size and SHA-512. Only
parts the session could take are candidates (offset a multiple of part_size,
size part_size or the file's last part); any other part, and every part of a
new-file session, is a miss. The SHA-1 and SHA-512 of a version's range are
computed from disk the first time a plan asks for it (whatever way the version
was uploaded, whatever part size it had) and kept in the `chunks` table; the
chunk's id is the hit's `part_id`, which a commit may then list.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from syncd.emulator.content import load_session
from syncd.emulator.context import Context
from syncd.emulator.errors import bad_request
from syncd.emulator.server import Request, Response
from syncd.emulator.store import Chunk, Session, Store, User, Version

SHA512_HEX_RE = re.compile(r"^[0-9a-fA-F]{128}$")
# A plan lists every part of the file: 10,000 parts of ~110 bytes of JSON each fit.
MAX_PLAN_BODY = 4 << 20


@dataclass(frozen=True)
class PlannedPart:
    """One entry of a plan request."""

    offset: int
    size: int
    sha512: str  # lower-case hex

    def body(self) -> dict[str, Any]:
        return {"offset": self.offset, "size": self.size, "sha512": self.sha512}


def plan_session(ctx: Context, request: Request, user: User, params: dict[str, str]) -> Response:
    """POST /api/2.0/files/upload_sessions/{id}/plan"""
    session = load_session(ctx, user, params["session_id"])
    planned = parse_plan(request.json(MAX_PLAN_BODY), session)
    version = current_version(ctx, session, user)
    hits: list[dict[str, Any]] = []
    misses: list[dict[str, Any]] = []
    for part in planned:
        chunk = matching_chunk(ctx.store, session, version, part) if version is not None else None
        if chunk is None:
            misses.append(part.body())
        else:
            hits.append({**part.body(), "part_id": chunk.part_id})
    return Response.json(200, {"upload_session_id": session.id, "hits": hits, "misses": misses})


def parse_plan(body: Any, session: Session) -> list[PlannedPart]:
    """The request's parts; 400 for a malformed body or a part outside the file."""
    if not isinstance(body, dict) or not isinstance(body.get("parts"), list) or not body["parts"]:
        raise bad_request("parts must be a non-empty list of {offset, size, sha512}", "parts")
    planned: list[PlannedPart] = []
    for index, entry in enumerate(body["parts"]):
        field = f"parts[{index}]"
        if not isinstance(entry, dict):
            raise bad_request(f"{field} must be an object with offset, size and sha512", field)
        offset, size, sha512 = entry.get("offset"), entry.get("size"), entry.get("sha512")
        if not _is_int(offset) or offset < 0:
            raise bad_request(f"{field}.offset must be a non-negative integer", f"{field}.offset")
        if not _is_int(size) or size <= 0:
            raise bad_request(f"{field}.size must be a positive integer", f"{field}.size")
        if not isinstance(sha512, str) or not SHA512_HEX_RE.match(sha512):
            raise bad_request(f"{field}.sha512 must be 128 hex characters", f"{field}.sha512")
        if offset + size > session.file_size:
            raise bad_request(f"{field} (bytes {offset}-{offset + size - 1}) lies outside the file "
                              f"(file_size {session.file_size})", field)
        planned.append(PlannedPart(offset, size, sha512.lower()))
    return planned


def current_version(ctx: Context, session: Session, user: User) -> Version | None:
    """The version a new-version session replaces (None for a new file, or a file gone meanwhile)."""
    if session.file_id is None:
        return None
    item = ctx.store.get_item(session.file_id, user.id)
    if item is None or item.type != "file" or item.version_id is None:
        return None
    return ctx.store.get_version(item.version_id)


def fits_session(session: Session, offset: int, size: int) -> bool:
    """Could this range be uploaded as a part of the session (the grid upload_part enforces)?"""
    return offset % session.part_size == 0 and offset + size <= session.file_size and (
        size == session.part_size or (offset + size == session.file_size and size <= session.part_size))


def matching_chunk(store: Store, session: Session, version: Version, part: PlannedPart) -> Chunk | None:
    """The version's chunk holding exactly this part's bytes, or None (a miss)."""
    if not fits_session(session, part.offset, part.size) or part.offset + part.size > version.size:
        return None
    chunk = version_chunk(store, version, part.offset, part.size)
    return chunk if chunk.sha512 == part.sha512 else None


def version_chunk(store: Store, version: Version, offset: int, size: int) -> Chunk:
    """The hashes of a version's range: kept ones, else hashed from disk now (and kept)."""
    chunk = store.find_chunk(version.id, offset, size)
    if chunk is not None:
        return chunk
    sha1 = hashlib.sha1()
    sha512 = hashlib.sha512()
    for piece in store.read_range(version.id, offset, size):
        sha1.update(piece)
        sha512.update(piece)
    return store.save_chunk(version.id, offset, size, sha1.hexdigest(), sha512.hexdigest())


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
