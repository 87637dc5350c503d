"""Compare a local drop folder with what Box holds, through Box's API (never the journal).

The chaos run ends with this check: every local file must be in Box exactly once
with the same SHA-1. Box is read with plain `requests` against the /2.0 API
(folders walked from a folder id with paging, each file fetched for its sha1,
its past versions listed), so a journal that lies cannot hide a loss.

Defects reported:

* **lost**: a local file with no Box file at its relative path;
* **duplicated**: a relative path Box holds more than once - a renamed copy such
  as ``name (1).ext`` next to ``name.ext``, or more versions than the local
  file's changes justify (one version, plus one per known rewrite);
* **corrupted**: Box's current SHA-1 differs from the local file's;
* **extra**: a Box file with no local file (and not a renamed copy of one);
* **still_pending**: files the daemon has not finished (`syncd status --json`
  counts of ``pending`` + ``uploading``).
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import requests

from syncd.testing.daemon_process import status_json

PAGE_LIMIT = 1000
TRANSIENT_ATTEMPTS = 5
TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})
#: Box's (and the daemon's `conflict: rename`) way of naming a second item: "name (1).ext".
_RENAMED_COPY = re.compile(r"^(?P<stem>.+) \((?P<n>\d+)\)(?P<ext>\.[^./ ]*)?$")


class VerifierError(RuntimeError):
    """Box could not be read (an HTTP error); carries the request, never the token."""


@dataclass(frozen=True)
class BoxFile:
    """One file Box holds under the walked folder."""

    relpath: str
    file_id: str
    sha1: str
    past_versions: int  # versions before the current one (Box lists only those)


@dataclass
class VerifyReport:
    """What differs between the local tree and Box; every list holds relative paths."""

    local_files: int = 0
    box_files: int = 0
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    corrupted: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    still_pending: int = 0

    def counts(self) -> dict[str, int]:
        """The defect counts (all must be zero for a clean run)."""
        return {"lost": len(self.lost), "duplicated": len(self.duplicated), "corrupted": len(self.corrupted),
                "still_pending": self.still_pending, "extra": len(self.extra)}

    def clean(self) -> bool:
        return not any(self.counts().values())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class BoxReader:
    """Reads folders, files and versions from a Box API base URL with a bearer token."""

    def __init__(self, api_url: str, token: str, *, timeout: float = 60.0) -> None:
        self.api_url = api_url.rstrip("/")
        self._token = token
        self._timeout = timeout
        self._http = requests.Session()

    def __repr__(self) -> str:  # the token stays out of reprs
        return f"BoxReader(api_url={self.api_url!r})"

    def close(self) -> None:
        self._http.close()

    def _get(self, path: str, **params: Any) -> dict[str, Any]:
        url = f"{self.api_url}{path}"
        for attempt in range(TRANSIENT_ATTEMPTS):
            try:
                response = self._http.get(url, params=params, timeout=self._timeout,
                                          headers={"Authorization": f"Bearer {self._token}"})
            except requests.RequestException as exc:
                if attempt + 1 < TRANSIENT_ATTEMPTS:
                    continue
                raise VerifierError(f"GET {url} failed: {type(exc).__name__}: {exc}") from None
            # A 429 or 5xx says nothing about what Box holds: ask again rather than report a defect.
            if response.status_code not in TRANSIENT_STATUSES or attempt + 1 == TRANSIENT_ATTEMPTS:
                break
            time.sleep(0.2 * (attempt + 1))
        if response.status_code != 200:
            raise VerifierError(f"GET {url} -> {response.status_code}: {response.text[:300]}")
        return response.json()

    def folder_entries(self, folder_id: str) -> list[dict[str, Any]]:
        """Every entry of a folder, following offset paging to the end."""
        entries: list[dict[str, Any]] = []
        offset = 0
        while True:
            page = self._get(f"/folders/{folder_id}/items", offset=offset, limit=PAGE_LIMIT)
            batch = page.get("entries", [])
            entries.extend(batch)
            offset += len(batch)
            if not batch or offset >= int(page.get("total_count", 0)):
                return entries

    def file_sha1(self, file_id: str) -> str:
        return str(self._get(f"/files/{file_id}", fields="sha1,name")["sha1"])

    def past_versions(self, file_id: str) -> int:
        return len(self._get(f"/files/{file_id}/versions").get("entries", []))

    def version_sha1s(self, file_id: str) -> list[str]:
        """SHA-1 of each past version of a file, newest first (Box lists past versions only)."""
        return [str(v.get("sha1", "")) for v in self._get(f"/files/{file_id}/versions").get("entries", [])]

    def walk(self, folder_id: str = "0", prefix: str = "") -> list[BoxFile]:
        """Every file under `folder_id` (recursively), with its sha1 and number of past versions."""
        found: list[BoxFile] = []
        for entry in self.folder_entries(folder_id):
            relpath = f"{prefix}{entry['name']}"
            if entry["type"] == "folder":
                found.extend(self.walk(entry["id"], f"{relpath}/"))
            elif entry["type"] == "file":
                found.append(BoxFile(relpath, entry["id"], self.file_sha1(entry["id"]),
                                     self.past_versions(entry["id"])))
        return found


def sha1_of(path: Path) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def local_tree(root: Path, *, ignore_suffixes: tuple[str, ...] = (".tmp", ".part")) -> dict[str, str]:
    """Relative path -> SHA-1 of every regular file under `root` (temporary names skipped)."""
    found: dict[str, str] = {}
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            path = Path(dirpath) / name
            if name.endswith(ignore_suffixes) or path.is_symlink() or not path.is_file():
                continue
            found[path.relative_to(root).as_posix()] = sha1_of(path)
    return found


def renamed_original(relpath: str) -> str | None:
    """`a/name (1).ext` -> `a/name.ext`; None when the name is not a numbered copy."""
    folder, _, name = relpath.rpartition("/")
    match = _RENAMED_COPY.match(name)
    if match is None:
        return None
    original = match["stem"] + (match["ext"] or "")
    return f"{folder}/{original}" if folder else original


def pending_from_status(status: Mapping[str, Any]) -> int:
    """Files not finished according to a `syncd status --json` report: pending + uploading."""
    counts = status.get("counts", {})
    return int(counts.get("pending", 0)) + int(counts.get("uploading", 0))


def compare(local: Mapping[str, str], box: list[BoxFile], *,
            extra_versions: Mapping[str, int] | None = None, still_pending: int = 0) -> VerifyReport:
    """Classify the differences between `local` (relpath -> sha1) and `box`.

    `extra_versions[relpath]` is how many versions beyond the first the local
    file's changes justify (one per rewrite after it was first uploaded).
    """
    justified = extra_versions or {}
    report = VerifyReport(local_files=len(local), box_files=len(box), still_pending=still_pending)
    held = {item.relpath: item for item in box}
    for relpath in sorted(local):
        item = held.get(relpath)
        if item is None:
            report.lost.append(relpath)
            continue
        if item.sha1 != local[relpath]:
            report.corrupted.append(relpath)
        if item.past_versions > justified.get(relpath, 0):
            report.duplicated.append(relpath)
    for relpath in sorted(set(held) - set(local)):
        original = renamed_original(relpath)
        if original is not None and original in local:
            report.duplicated.append(relpath)
        else:
            report.extra.append(relpath)
    return report


def verify(local_root: Path, reader: BoxReader, *, folder_id: str = "0",
           extra_versions: Mapping[str, int] | None = None, config: Path | None = None) -> VerifyReport:
    """Walk Box from `folder_id`, hash `local_root`, and compare (still_pending from `config`'s status)."""
    pending = pending_from_status(status_json(config)) if config is not None else 0
    return compare(local_tree(local_root), reader.walk(folder_id), extra_versions=extra_versions,
                   still_pending=pending)
