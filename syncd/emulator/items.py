"""Folder, file and user endpoints of the regular API (`/2.0`)."""

from __future__ import annotations

import base64
from typing import Any

from syncd.emulator.content import file_conflict, optional_time, parse_folder_id, parse_item_id
from syncd.emulator.context import Context
from syncd.emulator.errors import BoxError, bad_request, not_found
from syncd.emulator.names import validate_name
from syncd.emulator.server import Request, Response
from syncd.emulator.shapes import folder_mini, mini, root_mini, select_fields
from syncd.emulator.store import ROOT_ID, Item, NameInUse, User

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_OFFSET = 2**53  # beyond any folder; keeps values inside SQLite's integer range


def _folder_id(raw: str) -> int:
    """A malformed folder id gets 405, as the live API answers (REFERENCE.md §2)."""
    if not raw.isdigit() or len(raw) > 18:
        raise BoxError(405, "method_not_allowed", "Method Not Allowed")
    return int(raw)


def _load_folder(ctx: Context, user: User, raw: str) -> Item | None:
    """The folder (None for the root) or 404."""
    folder_id = _folder_id(raw)
    if folder_id == ROOT_ID:
        return None
    item = ctx.store.get_item(folder_id, user.id)
    if item is None or item.type != "folder":
        raise not_found("Not Found")
    return item


def _load_file(ctx: Context, user: User, raw: str) -> Item:
    item = ctx.store.get_item(parse_item_id(raw), user.id)
    if item is None or item.type != "file":
        raise not_found("Not Found")
    return item


def _paging_int(request: Request, name: str, default: int) -> int:
    raw = request.arg(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad_request(f"Invalid value for {name}", name) from None
    if not 0 <= value <= MAX_OFFSET:
        raise bad_request(f"Invalid value for {name}", name)
    return value


def _sort(request: Request) -> tuple[str, bool]:
    sort = request.arg("sort") or "name"
    direction = (request.arg("direction") or "ASC").upper()
    if sort not in ("id", "name", "date", "size"):
        raise bad_request("Invalid value for sort", "sort")
    if direction not in ("ASC", "DESC"):
        raise bad_request("Invalid value for direction", "direction")
    return sort, direction == "DESC"


def _collection(ctx: Context, request: Request, user: User, folder_id: int) -> dict[str, Any]:
    """The items of a folder, in offset or marker paging."""
    fields = request.fields()
    sort, descending = _sort(request)
    limit = min(_paging_int(request, "limit", DEFAULT_LIMIT), MAX_LIMIT) or DEFAULT_LIMIT
    marker_mode = (request.arg("usemarker") or "").lower() == "true"
    if marker_mode:
        marker = request.arg("marker")
        offset = _decode_marker(marker) if marker else 0
    else:
        offset = _paging_int(request, "offset", 0)
    total, page = ctx.store.list_children(folder_id, user.id, sort, descending, offset, limit)
    # Every entry carries item_status: clients skip entries without it (REFERENCE.md §8).
    entries = [select_fields(ctx.shapes.item(item), {**mini(item), "item_status": item.status}, fields)
               if fields else {**mini(item), "item_status": item.status}
               for item in page]
    order = [{"by": "type", "direction": "ASC"}, {"by": sort, "direction": "DESC" if descending else "ASC"}]
    if marker_mode:
        next_offset = offset + len(page)
        body: dict[str, Any] = {"entries": entries, "limit": limit}
        if next_offset < total and page:
            # Absent on the last page: rclone loops forever on "" (REFERENCE.md §3.7).
            body["next_marker"] = _encode_marker(next_offset)
        return body
    return {"total_count": total, "entries": entries, "offset": offset, "limit": limit, "order": order}


def _encode_marker(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o:{offset}".encode()).decode().rstrip("=")


def _decode_marker(marker: str) -> int:
    try:
        text = base64.urlsafe_b64decode(marker + "=" * (-len(marker) % 4)).decode()
        offset = int(text[2:]) if text.startswith("o:") else -1
        if not 0 <= offset <= MAX_OFFSET:
            raise ValueError
        return offset
    except ValueError:
        raise bad_request("Invalid value for marker", "marker") from None


def create_folder(ctx: Context, request: Request, user: User, params: dict[str, str]) -> Response:
    """POST /2.0/folders: 409 `conflicts` is an array here."""
    body = request.json()
    if not isinstance(body, dict):
        raise bad_request("Body must be a JSON object", "body")
    if "name" not in body:
        raise bad_request("name is required", "name")
    name = validate_name(body.get("name"))
    parent = body.get("parent")
    if not isinstance(parent, dict) or "id" not in parent:
        raise bad_request("parent.id is required", "parent")
    parent_id = parse_folder_id(parent.get("id"))
    try:
        item = ctx.store.create_folder(user.id, parent_id, name, ctx.clock.now())
    except NameInUse as clash:
        raise BoxError(409, "item_name_in_use", "Item with the same name already exists",
                       {"conflicts": [mini(clash.existing)]}) from None
    full = ctx.shapes.folder(item, user.id)
    return Response.json(201, select_fields(full, folder_mini(item), request.fields()))


def get_folder(ctx: Context, request: Request, user: User, params: dict[str, str]) -> Response:
    """GET /2.0/folders/{id}, with the first page of items and If-None-Match."""
    folder = _load_folder(ctx, user, params["id"])
    if folder is not None:
        if_none_match = request.header("If-None-Match")
        if if_none_match is not None and if_none_match.strip().strip('"') == str(folder.etag):
            return Response(304)
    items = _collection(ctx, request, user, ROOT_ID if folder is None else folder.id)
    full = ctx.shapes.folder(folder, user.id, with_items=items)
    base = root_mini() if folder is None else folder_mini(folder)
    return Response.json(200, select_fields(full, base, request.fields()))


def folder_items(ctx: Context, request: Request, user: User, params: dict[str, str]) -> Response:
    """GET /2.0/folders/{id}/items"""
    folder = _load_folder(ctx, user, params["id"])
    return Response.json(200, _collection(ctx, request, user, ROOT_ID if folder is None else folder.id))


def delete_folder(ctx: Context, request: Request, user: User, params: dict[str, str]) -> Response:
    """DELETE /2.0/folders/{id}[?recursive=true]: moves the folder and its content to the trash (204).

    A non-empty folder needs recursive=true, else 400 folder_not_empty (box-openapi#221).
    """
    if _folder_id(params["id"]) == ROOT_ID:
        # Undocumented; Box never lets the root go, and 403 is its answer for "not allowed here".
        raise BoxError(403, "access_denied_insufficient_permissions", "Access denied - insufficient permission")
    folder = _load_folder(ctx, user, params["id"])
    assert folder is not None  # only the root loads as None
    recursive = (request.arg("recursive") or "").lower() == "true"
    ctx.store.trash_folder(folder, ctx.clock.now(), request.header("If-Match"), recursive)
    return Response(204)


def get_file(ctx: Context, request: Request, user: User, params: dict[str, str]) -> Response:
    """GET /2.0/files/{id}"""
    item = _load_file(ctx, user, params["id"])
    if_none_match = request.header("If-None-Match")
    if if_none_match is not None and if_none_match.strip().strip('"') == str(item.etag):
        return Response(304)
    return Response.json(200, ctx.shapes.item_fields(item, request.fields()))


def update_file(ctx: Context, request: Request, user: User, params: dict[str, str]) -> Response:
    """PUT /2.0/files/{id}: name, description, parent.id, content_created_at/content_modified_at."""
    item = _load_file(ctx, user, params["id"])
    body = request.json()
    if not isinstance(body, dict):
        raise bad_request("Body must be a JSON object", "body")
    changes: dict[str, object] = {}
    if "name" in body:
        changes["name"] = validate_name(body["name"])
    if "description" in body:
        if not isinstance(body["description"], str):
            raise bad_request("Invalid value for description", "description")
        changes["description"] = body["description"]
    if "parent" in body:
        parent = body["parent"]
        if not isinstance(parent, dict) or "id" not in parent:
            raise bad_request("parent.id is required", "parent")
        changes["parent_id"] = parse_folder_id(parent["id"])
    for name in ("content_created_at", "content_modified_at"):
        if name in body:
            if body[name] is None:  # these times are never null on a file (REFERENCE.md §8)
                raise bad_request(f"Invalid value for {name}", name)
            changes[name] = optional_time(body[name], name)
    try:
        updated = ctx.store.update_item(item, changes, ctx.clock.now(), request.header("If-Match"))
    except NameInUse as clash:
        raise file_conflict(clash.existing, ctx.compat.file_conflicts) from None
    return Response.json(200, ctx.shapes.item_fields(updated, request.fields()))


def delete_file(ctx: Context, request: Request, user: User, params: dict[str, str]) -> Response:
    """DELETE /2.0/files/{id}: moves the file to the trash (204)."""
    item = _load_file(ctx, user, params["id"])
    ctx.store.trash_item(item, ctx.clock.now(), request.header("If-Match"))
    return Response(204)


def file_versions(ctx: Context, request: Request, user: User, params: dict[str, str]) -> Response:
    """GET /2.0/files/{id}/versions: past versions only (the current one is the file itself)."""
    item = _load_file(ctx, user, params["id"])
    past = [version for version in ctx.store.versions(item.id) if version.id != item.version_id]
    offset = _paging_int(request, "offset", 0)
    limit = min(_paging_int(request, "limit", 1000), MAX_LIMIT) or 1000
    page = past[offset:offset + limit]
    return Response.json(200, {"total_count": len(past), "entries": [ctx.shapes.version(v) for v in page],
                               "offset": offset, "limit": limit})


def users_me(ctx: Context, request: Request, user: User, params: dict[str, str]) -> Response:
    """GET /2.0/users/me"""
    settings = ctx.faults.settings
    full = ctx.shapes.user(user, settings.storage_quota, settings.max_file_size)
    fields = request.fields()
    base = {"type": "user", "id": user.id, "name": user.name, "login": user.login}
    return Response.json(200, select_fields(full, base, fields))
