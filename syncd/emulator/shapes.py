"""JSON shapes of Box objects (REFERENCE.md §4): ids, etags and sequence ids as strings."""

from __future__ import annotations

from typing import Any

from syncd.emulator.clock import iso
from syncd.emulator.store import ROOT_ID, Item, Part, Session, Store, User, Version

UNLIMITED_SPACE = 999_999_999_999_999
DEFAULT_MAX_UPLOAD = 53_687_091_200  # Enterprise plan, REFERENCE.md §5


def user_mini(user: User | None, user_id: str) -> dict[str, Any]:
    if user is None:
        return {"type": "user", "id": user_id, "name": "", "login": ""}
    return {"type": "user", "id": user.id, "name": user.name, "login": user.login}


def root_mini() -> dict[str, Any]:
    return {"type": "folder", "id": "0", "sequence_id": None, "etag": None, "name": "All Files"}


def folder_mini(item: Item) -> dict[str, Any]:
    return {"type": "folder", "id": str(item.id), "sequence_id": str(item.etag), "etag": str(item.etag),
            "name": item.name}


def file_mini(item: Item) -> dict[str, Any]:
    return {"type": "file", "id": str(item.id), "sequence_id": str(item.etag), "etag": str(item.etag),
            "name": item.name, "sha1": item.sha1 or "",
            "file_version": {"type": "file_version", "id": str(item.version_id), "sha1": item.sha1 or ""}}


def mini(item: Item) -> dict[str, Any]:
    return folder_mini(item) if item.type == "folder" else file_mini(item)


class Shapes:
    """Builds full representations, which need the store for users and paths."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def _user(self, user_id: str) -> dict[str, Any]:
        return user_mini(self.store.get_user(user_id), user_id)

    def _location(self, item: Item) -> dict[str, Any]:
        chain = [root_mini()] + [folder_mini(folder) for folder in self.store.ancestors(item)]
        return {"path_collection": {"total_count": len(chain), "entries": chain}, "parent": chain[-1]}

    def _common(self, item: Item) -> dict[str, Any]:
        return {
            **mini(item),
            "description": item.description,
            "size": item.size if item.type == "file" else self.store.folder_size(item.id, item.owner_id),
            **self._location(item),
            "created_at": iso(item.created_at),
            "modified_at": iso(item.modified_at),
            "content_created_at": iso(item.content_created_at),
            "content_modified_at": iso(item.content_modified_at),
            "trashed_at": iso(item.trashed_at) if item.trashed_at else None,
            "purged_at": None,
            "created_by": self._user(item.created_by),
            "modified_by": self._user(item.modified_by),
            "owned_by": self._user(item.owner_id),
            "shared_link": None,
            "item_status": item.status,
        }

    def file(self, item: Item) -> dict[str, Any]:
        return self._common(item)

    def folder(self, item: Item | None, owner_id: str, with_items: dict[str, Any] | None = None) -> dict[str, Any]:
        """A full folder; `item` None is the root folder of `owner_id`."""
        if item is None:
            body: dict[str, Any] = {
                **root_mini(), "description": "", "size": self.store.folder_size(ROOT_ID, owner_id),
                "path_collection": {"total_count": 0, "entries": []}, "parent": None,
                "created_at": None, "modified_at": None, "content_created_at": None,
                "content_modified_at": None, "trashed_at": None, "purged_at": None,
                "created_by": {"type": "user", "id": "", "name": "", "login": ""},
                "modified_by": self._user(owner_id), "owned_by": self._user(owner_id),
                "shared_link": None, "folder_upload_email": None, "item_status": "active",
            }
        else:
            body = {**self._common(item), "folder_upload_email": None}
        if with_items is not None:
            body["item_collection"] = with_items
        return body

    def item(self, item: Item) -> dict[str, Any]:
        return self.file(item) if item.type == "file" else self.folder(item, item.owner_id)

    def item_fields(self, item: Item, fields: list[str] | None) -> dict[str, Any]:
        """The full item, or with `fields` the mini set plus those fields."""
        return select_fields(self.item(item), mini(item), fields)

    def version(self, version: Version) -> dict[str, Any]:
        return {
            "type": "file_version", "id": str(version.id), "sha1": version.sha1, "name": version.name,
            "size": version.size, "created_at": iso(version.created_at), "modified_at": iso(version.modified_at),
            "modified_by": self._user(version.modified_by), "trashed_at": None, "purged_at": None,
        }

    def user(self, user: User, space_amount: int, max_upload_size: int) -> dict[str, Any]:
        return {
            "type": "user", "id": user.id, "name": user.name, "login": user.login,
            "created_at": iso(user.created_at), "modified_at": iso(user.created_at),
            "language": "en", "timezone": "UTC", "space_amount": space_amount or UNLIMITED_SPACE,
            "space_used": self.store.space_used(user.id), "max_upload_size": max_upload_size or DEFAULT_MAX_UPLOAD,
            "status": "active", "job_title": "", "phone": "", "address": "", "avatar_url": "",
        }


def select_fields(full: dict[str, Any], base: dict[str, Any], fields: list[str] | None) -> dict[str, Any]:
    """Box's `fields` query: the mini set plus the requested fields that exist."""
    if fields is None:
        return full
    selected = dict(base)
    for name in fields:
        if name in full:
            selected[name] = full[name]
    return selected


def session_body(session: Session, upload_base: str, num_parts: int) -> dict[str, Any]:
    url = f"{upload_base}/files/upload_sessions/{session.id}"
    return {
        "id": session.id,
        "type": "upload_session",
        "session_expires_at": iso(session.expires_at),
        "part_size": session.part_size,
        "total_parts": session.total_parts,
        "num_parts_processed": num_parts,
        "session_endpoints": {
            "upload_part": url, "commit": f"{url}/commit", "abort": url, "plan": f"{url}/plan",
            "list_parts": f"{url}/parts", "status": url, "log_event": f"{url}/log",
        },
    }


def part_body(part: Part) -> dict[str, Any]:
    return {"part_id": part.part_id, "offset": part.offset, "size": part.size, "sha1": part.sha1}
