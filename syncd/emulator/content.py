"""Upload endpoints: direct uploads, preflight, upload sessions, parts and commit."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable

from syncd.emulator.clock import parse_iso
from syncd.emulator.context import Context
from syncd.emulator.errors import BoxError, bad_request, not_found
from syncd.emulator.ids import unique_hex
from syncd.emulator.multipart import End, MultipartError, MultipartParser, PartData, PartStart, parse_options_header
from syncd.emulator.names import validate_name
from syncd.emulator.server import CHUNK, Request, Response
from syncd.emulator.shapes import file_mini, folder_mini, part_body, session_body
from syncd.emulator.store import Item, NameInUse, NewContent, Part, Session, User, check_if_match

SESSION_ID_RE = re.compile(r"^[0-9A-Fa-f]{32}$")
CONTENT_RANGE_RE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+)\s*$", re.IGNORECASE)
SHA1_HEX_RE = re.compile(r"^[0-9a-fA-F]{40}$")
MAX_ATTRIBUTES = 64 * 1024
MAX_FILE_SIZE = 2**53  # far above Box's largest plan (500 GB), inside SQLite's integer range


# -- shared checks ----------------------------------------------------------
def file_conflict(existing: Item, shape: str = "object") -> BoxError:
    """409 for files: `conflicts` is one object (live behaviour, REFERENCE.md §4) or, on request, an array."""
    conflict = file_mini(existing) if existing.type == "file" else folder_mini(existing)
    return BoxError(409, "item_name_in_use", "Item with the same name already exists",
                    {"conflicts": [conflict] if shape == "array" else conflict})


def parse_item_id(raw: str) -> int:
    if not raw.isdigit() or len(raw) > 18:
        raise not_found("Not Found")
    return int(raw)


def parse_folder_id(raw: object, field: str = "parent.id") -> int:
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = str(raw)
    if not isinstance(raw, str) or not raw.isdigit() or len(raw) > 18:
        raise bad_request(f"Invalid value for {field}", field)
    return int(raw)


def optional_time(value: object, field: str) -> float | None:
    if value is None:
        return None
    try:
        return parse_iso(value)
    except ValueError:
        raise bad_request(f"Invalid value for {field}: expected ISO-8601 date-time", field) from None


def check_new_file(ctx: Context, user: User, parent_id: int, name: str, size: int | None) -> None:
    """The checks of a new-file upload that need no content: parent, name, caps."""
    store = ctx.store
    if not store.folder_exists(parent_id, user.id):
        raise not_found("Not Found")
    existing = store.find_by_name(user.id, parent_id, name)
    if existing is not None:
        raise file_conflict(existing, ctx.compat.file_conflicts)
    if size is not None:
        check_caps(ctx, user, size)


def check_caps(ctx: Context, user: User, size: int) -> None:
    """Early size/quota check (read only); store_file checks again atomically."""
    settings = ctx.faults.settings
    ctx.store.check_capacity(ctx.store.read(), user.id, size, settings.max_file_size, settings.storage_quota)


def expected_sha1(request: Request) -> str | None:
    """The optional `content-md5` header, which holds a SHA-1 in hex."""
    value = request.header("content-md5")
    if value is None:
        return None
    value = value.strip()
    if not SHA1_HEX_RE.match(value):
        raise BoxError(400, "bad_digest", "The content-md5 header is not a SHA-1 hex digest")
    return value.lower()


DIGEST_LENGTHS = {"sha": 20, "sha-256": 32, "sha-512": 64}


def parse_digest(value: str | None, required_message: str) -> dict[str, bytes]:
    """`digest: sha=<b64>[, sha-256=<b64>][, sha-512=<b64>]` -> {"sha": raw, ...}; names case-insensitive."""
    if not value:
        raise bad_request(required_message, "digest")
    digests: dict[str, bytes] = {}
    for item in value.split(","):
        algorithm, sep, encoded = item.strip().partition("=")
        algorithm = algorithm.strip().lower()
        if algorithm == "sha-1":
            algorithm = "sha"
        if not sep or algorithm not in DIGEST_LENGTHS:
            continue
        try:
            raw = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise bad_request("The digest header is not valid base64", "digest") from None
        if len(raw) != DIGEST_LENGTHS[algorithm]:
            raise bad_request("The digest header has the wrong length", "digest")
        digests[algorithm] = raw
    if not digests:
        raise bad_request("The digest header must give sha=, sha-256= or sha-512=", "digest")
    return digests


class ContentSink:
    """A temp file receiving content while it is hashed (SHA-1 always, others on request).

    Runs of zeros become holes (the file is sparse): a test can upload a multi-GiB sparse
    file without the emulator writing gigabytes to disk. What is read back is the same.
    """

    def __init__(self, path: Path, extra: tuple[str, ...] = ()) -> None:
        self.path = path
        self._file: BinaryIO = open(path, "wb")
        self._sha1 = hashlib.sha1()
        self._extra = {name: hashlib.new(name.replace("-", "")) for name in extra}
        self.size = 0

    def write(self, data: bytes) -> None:
        self._sha1.update(data)
        for digest in self._extra.values():
            digest.update(data)
        if data.count(0) == len(data):
            self._file.seek(len(data), os.SEEK_CUR)  # a hole; close() sets the length
        else:
            self._file.write(data)
        self.size += len(data)

    def close(self) -> None:
        if not self._file.closed:
            self._file.truncate(self.size)  # a trailing hole still counts
        self._file.close()

    def discard(self) -> None:
        self._file.close()
        self.path.unlink(missing_ok=True)

    def sha1(self) -> bytes:
        return self._sha1.digest()

    def digest(self, name: str) -> bytes:
        """The digest named as in a Digest header ("sha", "sha-256", "sha-512")."""
        return self.sha1() if name == "sha" else self._extra[name].digest()

    def content(self) -> NewContent:
        return NewContent(self.path, self.size, self._sha1.hexdigest())


# -- multipart uploads --------------------------------------------------------
@dataclass
class MultipartUpload:
    attributes: dict[str, Any]
    sink: ContentSink


def receive_multipart(ctx: Context, request: Request, on_attributes: Callable[[dict[str, Any]], None],
                      attributes_required: bool = True) -> MultipartUpload:
    """Stream a multipart upload: `attributes` must come first; the part after it is the file.

    Without `attributes_required` (a new version) the body may hold the file
    part alone, as the live service accepts: the first part is then the file
    and the attributes are `{}`. An `attributes` part after the file is refused
    either way (400 metadata_after_file_contents).

    `on_attributes(dict)` runs before the file is received (early 4xx). The
    caller owns the returned sink (temp file).
    """
    content_type = request.header("Content-Type") or ""
    mimetype, options = parse_options_header(content_type)
    boundary = options.get("boundary")
    if mimetype != "multipart/form-data" or not boundary:
        raise bad_request("Content-Type must be multipart/form-data with a boundary", "content-type")
    if not request.body.present:
        raise BoxError(411, "length_required", "Content-Length or chunked body required")
    try:
        parser = MultipartParser(boundary.encode("latin-1"))
    except (MultipartError, UnicodeEncodeError):
        raise bad_request("Invalid multipart boundary", "content-type") from None
    attributes_raw: bytearray | None = None
    attributes: dict[str, Any] | None = None
    role = "none"
    early_part = False
    sink: ContentSink | None = None

    def start_file(received: dict[str, Any]) -> ContentSink:
        nonlocal attributes
        attributes = received
        on_attributes(received)
        return ContentSink(ctx.store.temp_path())

    try:
        while not parser.finished:
            data = request.body.read(CHUNK)
            if not data:
                raise bad_request("Malformed multipart body: no closing boundary", "body")
            try:
                events = parser.feed(data)
            except MultipartError as exc:
                raise bad_request(f"Malformed multipart body: {exc}", "body") from None
            for event in events:
                if isinstance(event, PartStart):
                    if attributes_raw is None and event.name == "attributes":
                        if early_part or sink is not None:
                            raise BoxError(400, "metadata_after_file_contents",
                                           "Metadata after file contents: send the attributes part first")
                        attributes_raw = bytearray()
                        role = "attributes"
                    elif sink is None and (attributes_raw is not None or not attributes_required):
                        sink = start_file({} if attributes_raw is None else _parse_attributes(attributes_raw))
                        role = "file"
                    else:  # a part before a required attributes part, or after the file
                        early_part = early_part or sink is None
                        role = "ignore"
                elif isinstance(event, PartData):
                    if role == "attributes":
                        assert attributes_raw is not None
                        attributes_raw.extend(event.data)
                        if len(attributes_raw) > MAX_ATTRIBUTES:
                            raise bad_request("attributes part too large", "attributes")
                    elif role == "file":
                        assert sink is not None
                        sink.write(event.data)
                elif isinstance(event, End):
                    break
        if attributes_raw is None and attributes_required:
            raise bad_request("The attributes part is missing", "attributes")
        if sink is None:
            raise bad_request("The file part is missing", "file")
        sink.close()
        assert attributes is not None
        return MultipartUpload(attributes, sink)
    except BaseException:
        if sink is not None:
            sink.discard()
        raise


def _parse_attributes(raw: bytearray) -> dict[str, Any]:
    try:
        value = json.loads(bytes(raw))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise bad_request("The attributes part is not valid JSON", "attributes") from None
    if not isinstance(value, dict):
        raise bad_request("The attributes part must be a JSON object", "attributes")
    return value


def files_response(ctx: Context, request: Request, item: Item, status: int = 201) -> Response:
    entry = ctx.shapes.item_fields(item, request.fields())
    return Response.json(status, {"total_count": 1, "entries": [entry]})


def _finish_upload(ctx: Context, request: Request, upload: MultipartUpload) -> NewContent:
    expected = expected_sha1(request)
    content = upload.sink.content()
    if expected is not None and expected != content.sha1:
        raise BoxError(400, "bad_digest", "The specified content-md5 did not match what was received")
    return content


def upload_file(ctx: Context, request: Request, user: User, params: dict[str, str]) -> Response:
    """POST /api/2.0/files/content"""
    expected_sha1(request)  # reject a malformed header before reading the body
    target: dict[str, Any] = {}

    def check(attributes: dict[str, Any]) -> None:
        name = validate_name(attributes.get("name"), "name")
        parent = attributes.get("parent")
        if not isinstance(parent, dict) or "id" not in parent:
            raise bad_request("parent.id is required", "parent")
        parent_id = parse_folder_id(parent.get("id"))
        created = optional_time(attributes.get("content_created_at"), "content_created_at")
        modified = optional_time(attributes.get("content_modified_at"), "content_modified_at")
        size = attributes.get("size") if isinstance(attributes.get("size"), int) else None
        check_new_file(ctx, user, parent_id, name, size)
        target.update(name=name, parent_id=parent_id, created=created, modified=modified,
                      reservation=ctx.reserve_name(user.id, parent_id, name))

    try:
        upload = receive_multipart(ctx, request, check)
        try:
            content = _finish_upload(ctx, request, upload)
            settings = ctx.faults.settings
            item = ctx.store.store_file(user.id, target["parent_id"], None, target["name"], content,
                                        ctx.clock.now(), target["created"], target["modified"],
                                        settings.max_file_size, settings.storage_quota)
        except NameInUse as clash:
            raise file_conflict(clash.existing, ctx.compat.file_conflicts) from None
        finally:
            upload.sink.discard()  # no-op once moved into the blob store
    finally:
        ctx.release_name(target.get("reservation"))
    return files_response(ctx, request, item)


def upload_version(ctx: Context, request: Request, user: User, params: dict[str, str]) -> Response:
    """POST /api/2.0/files/{id}/content"""
    file_id = parse_item_id(params["id"])
    expected_sha1(request)
    if_match = request.header("If-Match")
    target: dict[str, Any] = {}

    def check(attributes: dict[str, Any]) -> None:
        item = ctx.store.get_item(file_id, user.id)
        check_if_match(item, if_match)
        if item is None or item.type != "file":
            raise not_found("Not Found")
        name = attributes.get("name")
        if name is not None:
            validate_name(name, "name")
            existing = ctx.store.find_by_name(user.id, item.parent_id, name)
            if existing is not None and existing.id != item.id:
                raise file_conflict(existing, ctx.compat.file_conflicts)
        target.update(name=name, modified=optional_time(attributes.get("content_modified_at"),
                                                       "content_modified_at"))

    upload = receive_multipart(ctx, request, check, attributes_required=False)
    try:
        content = _finish_upload(ctx, request, upload)
        settings = ctx.faults.settings
        item = ctx.store.store_file(user.id, None, file_id, target["name"], content, ctx.clock.now(), None,
                                    target["modified"], settings.max_file_size, settings.storage_quota,
                                    if_match=if_match)
    except NameInUse as clash:
        raise file_conflict(clash.existing, ctx.compat.file_conflicts) from None
    finally:
        upload.sink.discard()
    return files_response(ctx, request, item, status=ctx.compat.version_upload_status)


def preflight(ctx: Context, request: Request, user: User, params: dict[str, str]) -> Response:
    """OPTIONS /2.0/files/content and /2.0/files/{id}/content (JSON body, not CORS)."""
    body = request.json() if request.body.present else {}
    if not isinstance(body, dict):
        raise bad_request("Body must be a JSON object", "body")
    size = body.get("size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= MAX_FILE_SIZE):
        raise bad_request("Invalid value for size", "size")
    upload_base = f"{request.origin}/api/2.0"
    if "id" in params:
        file_id = parse_item_id(params["id"])
        item = ctx.store.get_item(file_id, user.id)
        if item is None or item.type != "file":
            raise not_found("Not Found")
        name = body.get("name")
        if name is not None:
            validate_name(name)
            existing = ctx.store.find_by_name(user.id, item.parent_id, name)
            if existing is not None and existing.id != item.id:
                raise file_conflict(existing, ctx.compat.file_conflicts)
        if size is not None:
            check_caps(ctx, user, size)
        url = f"{upload_base}/files/{file_id}/content"
    else:
        name = validate_name(body.get("name"))
        parent = body.get("parent")
        if not isinstance(parent, dict) or "id" not in parent:
            raise bad_request("parent.id is required", "parent")
        parent_id = parse_folder_id(parent.get("id"))
        check_new_file(ctx, user, parent_id, name, size)
        ctx.check_not_reserved(user.id, parent_id, name)
        url = f"{upload_base}/files/content"
    token = secrets.token_hex(16)
    return Response.json(200, {"upload_url": f"{url}?upload_session_id={token}", "upload_token": token})


# -- upload sessions ----------------------------------------------------------
def _session_size(body: dict[str, Any]) -> int:
    if "file_size" not in body:
        raise BoxError(400, "missing_file_size", "file_size is required")
    size = body["file_size"]
    if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= MAX_FILE_SIZE:
        raise BoxError(400, "invalid_file_size", f"file_size must be an integer from 0 to {MAX_FILE_SIZE}")
    return size


def _new_session(ctx: Context, request: Request, user: User, size: int, folder_id: int | None,
                 file_id: int | None, name: str | None) -> Response:
    if size < ctx.faults.settings.min_chunked_size:
        raise BoxError(400, "file_size_too_small",
                       f"File size {size} is below the minimum for chunked upload "
                       f"({ctx.faults.settings.min_chunked_size} bytes)")
    part_size = ctx.part_sizes.part_size(size)
    now = ctx.clock.now()
    session = Session(id=secrets.token_hex(16).upper(), owner_id=user.id, folder_id=folder_id, file_id=file_id,
                      file_name=name, file_size=size, part_size=part_size,
                      total_parts=max(1, math.ceil(size / part_size)), created_at=now,
                      expires_at=now + ctx.session_lifetime, state="open", commits=0, result_file_id=None,
                      assembled_key=None, assembled_sha1=None)
    ctx.store.create_session(session)
    return Response.json(201, session_body(session, f"{request.origin}/api/2.0", 0))


def create_session(ctx: Context, request: Request, user: User, params: dict[str, str]) -> Response:
    """POST /api/2.0/files/upload_sessions"""
    body = request.json()
    if not isinstance(body, dict):
        raise bad_request("Body must be a JSON object", "body")
    if "folder_id" not in body or body["folder_id"] in (None, ""):
        raise BoxError(400, "missing_destination", "folder_id is required")
    raw_folder = body["folder_id"]
    if isinstance(raw_folder, int) and not isinstance(raw_folder, bool):
        raw_folder = str(raw_folder)
    if not isinstance(raw_folder, str) or not raw_folder.isdigit() or len(raw_folder) > 18:
        raise BoxError(400, "invalid_folder_id", "folder_id is not a valid folder id")
    folder_id = int(raw_folder)
    size = _session_size(body)
    if "file_name" not in body or body["file_name"] in (None, ""):
        raise BoxError(400, "missing_file_name", "file_name is required")
    name = validate_name(body["file_name"], "file_name")
    if size < ctx.faults.settings.min_chunked_size:
        raise BoxError(400, "file_size_too_small",
                       f"File size {size} is below the minimum for chunked upload "
                       f"({ctx.faults.settings.min_chunked_size} bytes)")
    if not ctx.store.folder_exists(folder_id, user.id):
        raise BoxError(404, "invalid_parameter", "Folder not found",
                       {"errors": [{"reason": "invalid_parameter", "name": "folder_id",
                                    "message": "Folder not found"}]})
    check_caps(ctx, user, size)
    existing = ctx.store.find_by_name(user.id, folder_id, name)
    if existing is not None:
        raise file_conflict(existing, ctx.compat.file_conflicts)
    return _new_session(ctx, request, user, size, folder_id, None, name)


def create_version_session(ctx: Context, request: Request, user: User, params: dict[str, str]) -> Response:
    """POST /api/2.0/files/{id}/upload_sessions"""
    file_id = parse_item_id(params["id"])
    body = request.json()
    if not isinstance(body, dict):
        raise bad_request("Body must be a JSON object", "body")
    item = ctx.store.get_item(file_id, user.id)
    if item is None or item.type != "file":
        raise not_found("Not Found")
    size = _session_size(body)
    name = body.get("file_name")
    if name is not None:
        validate_name(name, "file_name")
        existing = ctx.store.find_by_name(user.id, item.parent_id, name)
        if existing is not None and existing.id != item.id:
            raise file_conflict(existing, ctx.compat.file_conflicts)
    if size >= ctx.faults.settings.min_chunked_size:
        check_caps(ctx, user, size)
    return _new_session(ctx, request, user, size, None, file_id, name)


def load_session(ctx: Context, user: User, raw_id: str, allow_finished: bool = False) -> Session:
    if not SESSION_ID_RE.match(raw_id):
        raise BoxError(400, "invalid_upload_session_id", "Invalid upload session id")
    session = ctx.store.get_session(raw_id.upper())
    if session is None or session.state == "aborted":
        raise BoxError(404, "not_found", "Upload session not found")
    if session.owner_id != user.id:
        raise BoxError(403, "forbidden", "This upload session belongs to another user")
    if session.state == "committed" and allow_finished:
        return session
    if session.state == "committed":
        raise BoxError(404, "not_found", "Upload session was committed")
    if session.state == "expired" or ctx.clock.now() >= session.expires_at:
        raise BoxError(410, "session_expired", "Upload session has expired")
    return session


def get_session(ctx: Context, request: Request, user: User, params: dict[str, str]) -> Response:
    """GET /api/2.0/files/upload_sessions/{id}"""
    session = load_session(ctx, user, params["session_id"])
    parts = len(ctx.store.parts(session.id))
    return Response.json(200, session_body(session, f"{request.origin}/api/2.0", parts))


def abort_session(ctx: Context, request: Request, user: User, params: dict[str, str]) -> Response:
    """DELETE /api/2.0/files/upload_sessions/{id}: 204, also after commit."""
    session = load_session(ctx, user, params["session_id"], allow_finished=True)
    if session.state == "open":
        with ctx.session_lock(session.id):
            ctx.store.abort_session(session.id)
    return Response(204)


def list_parts(ctx: Context, request: Request, user: User, params: dict[str, str]) -> Response:
    """GET /api/2.0/files/upload_sessions/{id}/parts: index offsets, sorted by byte offset."""
    session = load_session(ctx, user, params["session_id"])
    offset = _int_arg(request, "offset", 0)
    limit = _int_arg(request, "limit", 1000)
    if offset > 10000:
        raise bad_request("offset must be at most 10000", "offset")
    limit = min(max(limit, 1), 1000)
    parts = ctx.store.parts(session.id)
    page = parts[offset:offset + limit]
    return Response.json(200, {"entries": [part_body(part) for part in page], "total_count": len(parts),
                               "offset": offset, "limit": limit,
                               "order": [{"by": "offset", "direction": "ASC"}]})


def _int_arg(request: Request, name: str, default: int) -> int:
    raw = request.arg(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit():
        raise bad_request(f"Invalid value for {name}", name)
    return int(raw)


def upload_part(ctx: Context, request: Request, user: User, params: dict[str, str]) -> Response:
    """PUT /api/2.0/files/upload_sessions/{id}"""
    session = load_session(ctx, user, params["session_id"])
    digests = parse_digest(request.header("Digest"), "The digest header is required")
    match = CONTENT_RANGE_RE.match(request.header("Content-Range") or "")
    if not match:
        raise bad_request("The content-range header must be 'bytes <first>-<last>/<total>'", "content-range")
    first, last, total = (int(group) for group in match.groups())
    size = last - first + 1
    fits = (total == session.file_size and first <= last < total and first % session.part_size == 0
            and (size == session.part_size or (last == total - 1 and size <= session.part_size)))
    if not fits:
        raise BoxError(416, "requested_range_not_satisfiable",
                       f"Content-Range bytes {first}-{last}/{total} does not fit the session "
                       f"(file_size {session.file_size}, part_size {session.part_size})")
    if not request.body.present and request.header("Content-Length") is None:
        raise BoxError(411, "length_required", "Content-Length is required")
    if request.body.length is not None and not request.body.chunked and request.body.length != size:
        raise bad_request("Content-Length does not match the content-range", "content-length")
    clash = ctx.store.overlapping_part(session.id, first, last)
    if clash is not None:
        raise _overlap(clash, ctx.compat.part_overlap_status)
    sink = ContentSink(ctx.store.temp_path(), tuple(name for name in digests if name != "sha"))
    try:
        while sink.size <= size:
            data = request.body.read(min(CHUNK, size + 1 - sink.size))
            if not data:
                break
            sink.write(data)
        sink.close()
        if sink.size != size:
            raise bad_request(f"Body has {sink.size} bytes; content-range says {size}", "body")
        if any(sink.digest(name) != expected for name, expected in digests.items()):
            raise BoxError(412, "precondition_failed",
                           "The digest header does not match the content of the part")
        sha512 = sink.digest("sha-512").hex() if "sha-512" in digests else None
        part = Part(session.id, first, unique_hex(8).upper(), size, sink.sha1().hex(), sha512)
        clash = ctx.store.add_part(part, sink.path)
        if clash is not None:
            raise _overlap(clash, ctx.compat.part_overlap_status)
    finally:
        sink.discard()
    return Response.json(200, {"part": part_body(part)})


def _overlap(clash: Part, status: int) -> BoxError:
    return BoxError(status, "range_overlaps_existing_part", "Part overlaps a part that was already uploaded",
                    {"conflicting_part": part_body(clash)})
