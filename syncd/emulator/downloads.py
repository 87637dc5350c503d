"""Downloads as Box serves them: the API answers with a redirect, a download URL serves the bytes.

`GET /2.0/files/{id}/content[?version=ID]` answers `302 Found` with `Location` on a
short-lived download URL, as the live API redirects to `dl.boxcloud.com`. The
emulator serves that URL itself, on the same port, at a dl.boxcloud.com-style
path: `{origin}/d/1/{token}/download`, where origin follows the request's
scheme and Host (or --public-url), like every other absolute URL.

The token is `{version_id}.{expires}.{signature}`: an HMAC-SHA256 under a key
kept in the data directory, so the URL needs no Authorization header (the URL
is the credential, as on Box), survives a restart and costs no memory. It
expires DOWNLOAD_URL_LIFETIME seconds after it was made, on the emulator clock
(POST /_emulator/clock moves it); an expired URL answers 403, a forged or
mangled one 404, as does one whose file was deleted since.

The download URL answers GET and HEAD with `Content-Length`, `ETag` (the
version's SHA-1, quoted), `Accept-Ranges: bytes` and `Content-Disposition`;
a single `Range: bytes=` range answers 206 with `Content-Range`, a range that
starts past the end answers 416 with `Content-Range: bytes */SIZE`. A Range
the emulator does not understand (several ranges, bad syntax) is ignored (200
with everything, as RFC 9110 allows), as is one whose `If-Range` does not
match the ETag.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from urllib.parse import quote

from syncd.emulator.content import parse_item_id
from syncd.emulator.context import Context
from syncd.emulator.errors import BoxError, generic, not_found
from syncd.emulator.server import Request, Response
from syncd.emulator.store import User

DOWNLOAD_URL_LIFETIME = 15 * 60
DOWNLOAD_PATH_RE = re.compile(r"^/d/1/(?P<token>[^/]+)/download$")
_TOKEN_RE = re.compile(r"^(?P<version>\d{1,18})\.(?P<expires>\d{1,12})\.(?P<signature>[0-9a-f]{64})$")
_RANGE_RE = re.compile(r"^\s*bytes\s*=\s*(?P<first>\d*)\s*-\s*(?P<last>\d*)\s*$", re.IGNORECASE)


def download_file(ctx: Context, request: Request, user: User, params: dict[str, str]) -> Response:
    """GET /2.0/files/{id}/content[?version=ID]: 302 to a short-lived download URL."""
    item = ctx.store.get_item(parse_item_id(params["id"]), user.id)
    if item is None or item.type != "file":
        raise not_found("Not Found")
    version_id = item.version_id
    raw_version = request.arg("version")
    if raw_version:
        if not raw_version.isdigit() or len(raw_version) > 18:
            raise not_found("Not Found")
        version = ctx.store.get_version(int(raw_version))
        if version is None or version.file_id != item.id:
            raise not_found("Not Found")
        version_id = version.id
    assert version_id is not None
    expires = int(ctx.clock.now()) + DOWNLOAD_URL_LIFETIME
    payload = f"{version_id}.{expires}"
    return Response(302, headers={"Location": f"{request.origin}/d/1/{payload}.{_sign(ctx, payload)}/download"})


def serve_download(ctx: Context, request: Request, token: str) -> Response:
    """GET|HEAD /d/1/{token}/download: the version's bytes, whole or one range."""
    if request.method not in ("GET", "HEAD"):
        raise generic(405, "Method Not Allowed")
    match = _TOKEN_RE.match(token)
    if match is None or not hmac.compare_digest(match["signature"],
                                                _sign(ctx, f"{match['version']}.{match['expires']}")):
        raise not_found("Not Found")
    if int(match["expires"]) <= ctx.clock.now():
        raise BoxError(403, "forbidden", "This download URL has expired: GET /2.0/files/{id}/content for a new one")
    version = ctx.store.get_version(int(match["version"]))
    item = ctx.store.file_of_version(version.id) if version is not None else None
    if version is None or item is None:
        raise not_found("Not Found")
    files = ctx.store.blob_files(version.id)
    etag = f'"{version.sha1}"'
    headers = {"Content-Type": "application/octet-stream", "ETag": etag, "Accept-Ranges": "bytes",
               "Content-Disposition": f"attachment; filename*=UTF-8''{quote(item.name, safe='')}"}
    wanted = request.header("Range")
    if_range = request.header("If-Range")
    if if_range is not None and if_range.strip() != etag:
        wanted = None
    span = byte_range(wanted, version.size)
    if span is None:
        return Response(200, headers=headers, files=files, file_size=version.size)
    first, length = span
    headers["Content-Range"] = f"bytes {first}-{first + length - 1}/{version.size}"
    return Response(206, headers=headers, files=files, file_size=length, file_offset=first)


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first byte, length) of a single `bytes=` range; None to send everything; 416 if unsatisfiable."""
    match = _RANGE_RE.match(header) if header is not None else None
    if match is None or not (match["first"] or match["last"]):
        return None
    if match["first"]:
        first = int(match["first"])
        last = int(match["last"]) if match["last"] else max(size - 1, first)
        if last < first:
            return None  # syntactically invalid: ignored
    else:  # a suffix: the last N bytes
        first, last = max(size - int(match["last"]), 0), size - 1
        if int(match["last"]) == 0:
            first = size  # "the last 0 bytes" is never satisfiable
    if first >= size:
        raise BoxError(416, "requested_range_not_satisfiable", f"Range {header.strip()} is outside the file "
                       f"({size} bytes)", None, {"Content-Range": f"bytes */{size}"})
    return first, min(last, size - 1) - first + 1


def _sign(ctx: Context, payload: str) -> str:
    return hmac.new(ctx.store.secret("download_url_key"), payload.encode(), hashlib.sha256).hexdigest()
