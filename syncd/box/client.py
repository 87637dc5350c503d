"""BoxClient: the small set of Box API calls syncd needs, over a :class:`Transport`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Mapping

from .credentials import Auth
from .errors import BoxAPIError
from .http_retry import RetryPolicy
from .ratelimit import RateLimiter, RateLimits, WindowStore
from .transport import Transport

BOX_API_URL = "https://api.box.com/2.0"
BOX_UPLOAD_URL = "https://upload.box.com/api/2.0"

# What a listing needs to reconcile uploads (rclone asks for about the same set).
ITEM_FIELDS = (
    "type,id,sequence_id,etag,sha1,name,size,file_version,created_at,modified_at,"
    "content_created_at,content_modified_at,item_status"
)


@dataclass(frozen=True)
class PreflightResult:
    """A successful preflight: where to upload (Box may name another host)."""

    upload_url: str | None
    upload_token: str | None = None

    def __repr__(self) -> str:
        return f"PreflightResult(upload_url={self.upload_url!r})"


def validate_id(kind: str, value: str) -> str:
    value = str(value)
    if not value or not value.isdigit():
        raise ValueError(f"{kind} must be a numeric Box id, got {value!r}")
    return value


def validate_name(name: str) -> str:
    if not isinstance(name, str) or not name or len(name) > 255:
        raise ValueError(f"Box item names are 1-255 characters, got {name!r}")
    if "/" in name or "\\" in name or name in (".", "..") or name.endswith(" "):
        raise ValueError(f"invalid Box item name {name!r}")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        raise ValueError(f"Box item names cannot hold control characters: {name!r}")
    return name


class BoxClient:
    """Box API calls over one pooled, authenticated, rate-limited transport.

    ``api_url`` and ``upload_url`` default to Box's; point them at the
    emulator for tests. ``concurrency`` sizes the connection pool. ``verify``
    is a CA bundle path or a bool; False is ignored for non-loopback hosts.
    ``window_store`` keeps the rate windows (default in memory; ``PostgresWindows``
    shares them between hosts).
    """

    def __init__(
        self,
        auth: Auth,
        *,
        api_url: str = BOX_API_URL,
        upload_url: str = BOX_UPLOAD_URL,
        concurrency: int = 4,
        timeout: tuple[float, float] = (10.0, 120.0),
        retry: RetryPolicy = RetryPolicy(),
        rate_limits: RateLimits = RateLimits(),
        window_store: WindowStore | None = None,
        verify: bool | str = True,
        transport: Transport | None = None,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.upload_url = upload_url.rstrip("/")
        self.transport = transport or Transport(
            auth, concurrency=concurrency, timeout=timeout, retry=retry,
            rate_limiter=RateLimiter(rate_limits, store=window_store), verify=verify,
        )
        # The configured URLs (and Box's own hosts) are the only ones the token may go to.
        self.transport.trusted.trust(self.api_url, self.upload_url)
        #: Set once Box answered an upload session's plan endpoint with 404/405 while the session
        #: was alive: this Box does not plan, and new versions send every part from then on.
        self.plan_unavailable = False

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> "BoxClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"BoxClient(api_url={self.api_url!r}, upload_url={self.upload_url!r}, auth={self.transport.auth!r})"

    # -- users -------------------------------------------------------------------------

    def get_current_user(self) -> dict[str, Any]:
        """GET /users/me."""
        return self.transport.request_json("GET", f"{self.api_url}/users/me")

    # -- files -------------------------------------------------------------------------

    def get_file(self, file_id: str, *, fields: str | None = None) -> dict[str, Any]:
        """GET /files/{id}."""
        params = {"fields": fields} if fields else None
        return self.transport.request_json("GET", f"{self.api_url}/files/{validate_id('file_id', file_id)}",
                                           params=params)

    def update_file(self, file_id: str, changes: Mapping[str, Any], *, etag: str | None = None) -> dict[str, Any]:
        """PUT /files/{id} with ``changes`` (e.g. ``{"content_modified_at": ...}`` or a new ``name``)."""
        headers = {"If-Match": etag} if etag else None
        return self.transport.request_json("PUT", f"{self.api_url}/files/{validate_id('file_id', file_id)}",
                                           json=dict(changes), headers=headers)

    def delete_file(self, file_id: str, *, etag: str | None = None) -> None:
        """DELETE /files/{id} (moves it to the trash)."""
        headers = {"If-Match": etag} if etag else None
        self.transport.request("DELETE", f"{self.api_url}/files/{validate_id('file_id', file_id)}",
                               headers=headers, ok=(204, 200))

    def preflight(self, parent_id: str, name: str, size: int) -> PreflightResult:
        """OPTIONS /files/content: would uploading ``name`` of ``size`` bytes to ``parent_id`` work?

        Raises BoxAPIError on conflicts (409 with ``conflicts``), size and quota limits.
        """
        body = {"name": validate_name(name), "size": int(size), "parent": {"id": validate_id("parent_id", parent_id)}}
        answer = self.transport.request_json("OPTIONS", f"{self.api_url}/files/content", json=body) or {}
        return PreflightResult(answer.get("upload_url"), answer.get("upload_token"))

    # -- folders -----------------------------------------------------------------------

    def get_folder(self, folder_id: str, *, fields: str | None = None) -> dict[str, Any]:
        """GET /folders/{id} (``fields="id"`` spares Box listing the first 100 items)."""
        params = {"fields": fields} if fields else None
        return self.transport.request_json("GET", f"{self.api_url}/folders/{validate_id('folder_id', folder_id)}",
                                           params=params)

    def iter_folder_items(self, folder_id: str, *, fields: str = ITEM_FIELDS, limit: int = 1000
                          ) -> Iterator[dict[str, Any]]:
        """Every item in a folder, following ``next_marker`` until it is absent, null or empty.

        A server that answers with offset paging instead (``total_count``, no
        ``next_marker``) is followed by offset.
        """
        url = f"{self.api_url}/folders/{validate_id('folder_id', folder_id)}/items"
        limit = min(max(limit, 1), 1000)
        marker: str | None = None
        seen_markers: set[str] = set()
        offset = 0
        while True:
            params: dict[str, Any] = {"usemarker": "true", "limit": limit, "fields": fields}
            if marker:
                params["marker"] = marker
            elif offset:
                params = {"offset": offset, "limit": limit, "fields": fields}
            page = self.transport.request_json("GET", url, params=params) or {}
            entries = page.get("entries") or []
            yield from entries
            offset += len(entries)
            if "next_marker" not in page and isinstance(page.get("total_count"), int):
                if not entries or offset >= page["total_count"]:
                    return
                continue  # offset paging
            marker = page.get("next_marker")
            if not marker:
                return
            if marker in seen_markers:  # a server bug must not make us loop forever
                raise BoxAPIError(200, "marker_loop", f"folder listing repeated marker {marker!r}",
                                  method="GET", url=url)
            seen_markers.add(marker)

    def get_folder_items(self, folder_id: str, *, fields: str = ITEM_FIELDS) -> list[dict[str, Any]]:
        """All items of a folder (all pages)."""
        return list(self.iter_folder_items(folder_id, fields=fields))

    def find_item(self, folder_id: str, name: str, *, item_type: str | None = None) -> dict[str, Any] | None:
        """The active item called ``name`` (case-insensitive, as Box compares) in a folder, or None."""
        wanted = name.casefold()
        for item in self.iter_folder_items(folder_id):
            if item.get("item_status", "active") != "active":
                continue
            if item_type is not None and item.get("type") != item_type:
                continue
            if str(item.get("name", "")).casefold() == wanted:
                return item
        return None

    def find_file(self, folder_id: str, name: str) -> dict[str, Any] | None:
        """The file called ``name`` in a folder (with id, sha1, etag, size), or None."""
        return self.find_item(folder_id, name, item_type="file")

    def create_folder(self, parent_id: str, name: str) -> dict[str, Any]:
        """POST /folders. A 409 is raised as BoxAPIError (see FolderTree for find-or-create)."""
        body = {"name": validate_name(name), "parent": {"id": validate_id("parent_id", parent_id)}}
        # Replaying a create is harmless: the repeat meets 409 and callers resolve it.
        return self.transport.request_json("POST", f"{self.api_url}/folders", json=body, replay_safe=True)
