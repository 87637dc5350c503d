"""Committing an upload session: `POST /api/2.0/files/upload_sessions/{id}/commit`.

The body lists the file's parts: parts uploaded to this session, and parts the
emulator already holds (plan hits, see plan.py), each by `part_id`, `offset` and
`size`, optionally with `sha1`, and with `sha512` on every entry or on none.
Checks, in order (each leaves the session as it was):

  1. body: `parts` a list of objects with part_id, offset, size     400 bad_request
  2. `sha512` on some entries but not all                            400 bad_request
  3. an entry that names no part of this session and no chunk of a
     version of this session's file (a hit of another file included),
     or whose offset/size/sha1/sha512 differ from what is stored      400 parts_mismatch
  4. the entries do not cover the file contiguously, once each        400 parts_mismatch
  5. whole-file SHA-1 of the assembled bytes differs from `Digest`    400 digest_mismatch
  6. If-Match / If-None-Match                                         412 precondition_failed
  7. the first --commit-202 commits of each session                   202 + Retry-After
  8. a new version whose content and name are the file's own         202, no Retry-After,
     no new version (boxsdk: "commit responds with 202 because the file did not change";
     its retry strategy retries a 202 only when it carries Retry-After); the session is
     finished, and a repeated commit answers 201 with the unchanged file
  9. otherwise                                                        201, the new file/version

Reused parts are hard-linked (or copied) beside the session's parts before the
version is stored and renamed into place in its transaction, so the committed
version's directory holds every byte, whichever way each part arrived.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from syncd.emulator.content import file_conflict, files_response, load_session, optional_time, parse_digest
from syncd.emulator.context import Context
from syncd.emulator.errors import BoxError, bad_request
from syncd.emulator.names import validate_name
from syncd.emulator.plan import fits_session
from syncd.emulator.server import CHUNK, Request, Response
from syncd.emulator.store import ROOT_ID, Chunk, Item, NameInUse, NewContent, Part, Session, Store, User


@dataclass(frozen=True)
class Piece:
    """One commit entry, resolved: a part uploaded to the session, or a reused chunk (a hit)."""

    offset: int
    size: int
    part_id: str
    sha1: str
    sha512: str | None = None
    part: Part | None = None
    chunk: Chunk | None = None

    def read(self, store: Store, session_id: str) -> Iterator[bytes | memoryview]:
        """The piece's bytes, streamed from disk."""
        if self.chunk is not None:
            yield from store.read_range(self.chunk.version_id, self.chunk.offset, self.chunk.size)
            return
        with open(store.part_path(session_id, self.offset), "rb") as source:
            while data := source.read(CHUNK):
                yield data


def commit_session(ctx: Context, request: Request, user: User, params: dict[str, str]) -> Response:
    """POST /api/2.0/files/upload_sessions/{id}/commit"""
    session = load_session(ctx, user, params["session_id"], allow_finished=True)
    digests = parse_digest(request.header("Digest"), "The digest header (whole-file SHA-1) is required")
    if "sha" not in digests:
        raise bad_request("The commit digest must be sha=<base64 SHA-1>", "digest")
    body = request.json()
    if not isinstance(body, dict) or not isinstance(body.get("parts"), list):
        raise bad_request("parts is required", "parts")
    attributes = body.get("attributes") or {}
    if not isinstance(attributes, dict):
        raise bad_request("attributes must be an object", "attributes")
    created = optional_time(attributes.get("content_created_at"), "attributes.content_created_at")
    modified = optional_time(attributes.get("content_modified_at"), "attributes.content_modified_at")
    with ctx.session_lock(session.id):
        session = load_session(ctx, user, session.id, allow_finished=True)
        if session.state == "committed":
            # A retried commit whose first reply was lost (or was a 202): answer with the file.
            item = ctx.store.get_item(session.result_file_id or -1, user.id)
            if item is None:
                raise BoxError(404, "not_found", "Upload session was committed")
            return files_response(ctx, request, item)
        pieces = resolve_parts(ctx, session, body["parts"])
        sha1 = whole_file_sha1(ctx.store, session, pieces)
        expected = digests["sha"]
        if bytes.fromhex(sha1) != expected:
            raise BoxError(400, "digest_mismatch",
                           f"File digest was incorrect. Actual: {base64.b64encode(bytes.fromhex(sha1)).decode()} "
                           f"Expected: {base64.b64encode(expected).decode()}")
        _check_commit_preconditions(ctx, request, session, user)
        earlier = ctx.store.count_commit(session.id)
        settings = ctx.faults.settings
        if earlier < settings.commit_202:
            return Response(202, b"", {"Retry-After": str(int(settings.commit_retry_after))})
        name = attributes.get("name") if isinstance(attributes.get("name"), str) else session.file_name
        if name is not None:
            validate_name(name)
        unchanged = _unchanged_file(ctx, session, user, sha1, name)
        if unchanged is not None:
            ctx.store.finish_unchanged_session(session.id, unchanged.id)
            # No Retry-After: boxsdk retries a 202 that has one ("not processed yet")
            # and reads one without it as "the file did not change".
            return Response(202)
        parts_dir = ctx.store.session_dir(session.id)
        parts_dir.mkdir(parents=True, exist_ok=True)  # a 0-byte session has no part files
        staged = tuple(ctx.store.stage_range(piece.chunk.version_id, piece.offset, piece.size, session.id)
                       for piece in pieces if piece.chunk is not None)
        known = tuple((piece.offset, piece.size, piece.sha1, piece.sha512) for piece in pieces
                      if piece.sha512 is not None)
        content = NewContent(parts_dir, session.file_size, sha1, session_id=session.id, staged=staged,
                             chunks=known)
        try:
            item = ctx.store.store_file(user.id, session.folder_id, session.file_id, name, content,
                                        ctx.clock.now(), created, modified, settings.max_file_size,
                                        settings.storage_quota, if_match=None)
        except NameInUse as clash:
            raise file_conflict(clash.existing, ctx.compat.file_conflicts) from None
    return files_response(ctx, request, item)


def resolve_parts(ctx: Context, session: Session, listed: list[Any]) -> list[Piece]:
    """Checks 1-4 of the module docstring; the pieces in offset order."""
    for entry in listed:
        if not isinstance(entry, dict) or not isinstance(entry.get("part_id"), str):
            raise bad_request("Each part needs part_id, offset and size", "parts")
    with_sha512 = sum(entry.get("sha512") is not None for entry in listed)
    if 0 < with_sha512 < len(listed):
        raise bad_request(f"Include sha512 on every part or on none of them ({with_sha512} of "
                          f"{len(listed)} parts carry it)", "parts")
    uploaded = {part.part_id.upper(): part for part in ctx.store.parts(session.id)}
    pieces = [_resolve(ctx, session, entry, uploaded) for entry in listed]
    if with_sha512:
        pieces = [_with_sha512(ctx.store, session, entry, piece) for entry, piece in zip(listed, pieces)]
    pieces.sort(key=lambda piece: piece.offset)
    position = 0
    for piece in pieces:
        if piece.offset != position:
            break
        position += piece.size
    if position != session.file_size or len(pieces) != len({piece.offset for piece in pieces}):
        raise BoxError(400, "parts_mismatch",
                       f"The parts do not cover the file: {position} of {session.file_size} bytes are contiguous")
    return pieces


def _mismatch(entry: dict[str, Any]) -> BoxError:
    return BoxError(400, "parts_mismatch",
                    f"No matching part found on server for {json.dumps(entry, separators=(',', ':'))}")


def _resolve(ctx: Context, session: Session, entry: dict[str, Any], uploaded: dict[str, Part]) -> Piece:
    """An uploaded part of this session, or a chunk of a version of this session's file."""
    part_id = entry["part_id"].upper()
    part = uploaded.get(part_id)
    if part is not None:
        piece = Piece(part.offset, part.size, part.part_id, part.sha1, part.sha512, part=part)
    else:
        chunk = ctx.store.chunk_by_id(part_id)
        if chunk is None:
            raise _mismatch(entry)
        version = ctx.store.get_version(chunk.version_id)
        if session.file_id is None or version is None or version.file_id != session.file_id:
            raise BoxError(400, "parts_mismatch",
                           f"Part {entry['part_id']} belongs to another file; a commit may reuse only "
                           "parts of the file this session uploads a version of")
        if not fits_session(session, chunk.offset, chunk.size):
            raise _mismatch(entry)
        piece = Piece(chunk.offset, chunk.size, chunk.part_id, chunk.sha1, chunk.sha512, chunk=chunk)
    sha1 = entry.get("sha1")
    if entry.get("offset") != piece.offset or entry.get("size") != piece.size or \
            (sha1 is not None and str(sha1).lower() != piece.sha1):
        raise _mismatch(entry)
    return piece


def _with_sha512(store: Store, session: Session, entry: dict[str, Any], piece: Piece) -> Piece:
    """Check the entry's sha512 (hashing an uploaded part the first time it is asked for)."""
    if piece.sha512 is None:
        digest = hashlib.sha512()
        for data in piece.read(store, session.id):
            digest.update(data)
        piece = dataclasses.replace(piece, sha512=digest.hexdigest())
        store.set_part_sha512(session.id, piece.offset, piece.sha512)
    if str(entry["sha512"]).lower() != piece.sha512:
        raise _mismatch(entry)
    return piece


def whole_file_sha1(store: Store, session: Session, pieces: list[Piece]) -> str:
    """SHA-1 of the pieces in offset order, read from disk; cached across commit retries."""
    key = ",".join(piece.part_id for piece in pieces)
    if session.assembled_key == key and session.assembled_sha1:
        return session.assembled_sha1
    sha1 = hashlib.sha1()
    for piece in pieces:
        for data in piece.read(store, session.id):
            sha1.update(data)
    digest = sha1.hexdigest()
    store.set_assembled(session.id, key, digest)
    return digest


def _unchanged_file(ctx: Context, session: Session, user: User, sha1: str, name: str | None) -> Item | None:
    """The file, when this new-version commit would change neither its content nor its name."""
    if session.file_id is None:
        return None
    item = ctx.store.get_item(session.file_id, user.id)
    if item is None or item.sha1 != sha1 or item.size != session.file_size:
        return None
    return item if name is None or name == item.name else None


def _check_commit_preconditions(ctx: Context, request: Request, session: Session, user: User) -> None:
    if_match = request.header("If-Match")
    if_none_match = request.header("If-None-Match")
    if if_match is None and if_none_match is None:
        return
    if session.file_id is not None:
        target = ctx.store.get_item(session.file_id, user.id)
    else:
        target = ctx.store.find_by_name(user.id, session.folder_id or ROOT_ID, session.file_name or "")
    etag = None if target is None else str(target.etag)
    failed = BoxError(412, "precondition_failed",
                      "The resource has been modified. Please retrieve the resource again and retry")
    if if_match is not None:
        wanted = if_match.strip().strip('"')
        if etag is None or (wanted != "*" and wanted != etag):
            raise failed
    if if_none_match is not None and etag is not None:
        wanted = if_none_match.strip().strip('"')
        if wanted == "*" or wanted == etag:
            raise failed
