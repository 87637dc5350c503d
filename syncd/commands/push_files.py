"""`syncd push`: a one-off upload from a terminal, with the daemon's client,
resume and conflict policy but no journal.

Resume state of chunked uploads lives in a small JSON file (by default
`$XDG_STATE_HOME/syncd/push-sessions.json`, mode 0600), keyed by the file's
path, size, mtime and target folder: run the same push again after Ctrl-C or
a crash and large files continue from the parts Box already has.

Each file is opened once (`syncd.box.PathSource`): the resume key, the hash and
every byte sent come from that descriptor, whatever happens to the path meanwhile.
A new version of a large file sends only the parts Box does not hold already.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from syncd.box import BoxError, PathSource, SavedSession, UploadedFile, UploadedPart
from syncd.service.box_connection import BoxConnection
from syncd.pipeline.conflicts import ConflictOutcome, upload_with_policy
from syncd.commands.push_progress import PushProgress


def default_state_file() -> Path:
    """Where push keeps resume state: `$XDG_STATE_HOME/syncd/push-sessions.json`."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "syncd" / "push-sessions.json"


class PushSessions:
    """The resume file: saved upload sessions by file key, rewritten atomically (0600)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            return {}  # a damaged resume file only costs a fresh upload
        return data if isinstance(data, dict) else {}

    def _write(self, data: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(prefix=".push-sessions.", dir=self.path.parent)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(data, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            return self._read().get(key)

    def put(self, key: str, value: dict[str, Any] | None) -> None:
        with self._lock:
            data = self._read()
            if value is None:
                data.pop(key, None)
            else:
                data[key] = value
            self._write(data)

    def progress_for(self, key: str) -> FileSession:
        return FileSession(self, key)


class FileSession:
    """`syncd.box.UploadProgress` for one file, stored in a PushSessions file."""

    def __init__(self, sessions: PushSessions, key: str) -> None:
        self._sessions = sessions
        self._key = key
        self._parts: list[UploadedPart] = []
        self._session: SavedSession | None = None

    def load(self) -> SavedSession | None:
        raw = self._sessions.get(self._key)
        if raw is None:
            return None
        try:
            self._session = SavedSession.from_saved_json(raw)
        except (KeyError, TypeError, ValueError):
            return None
        self._parts = list(self._session.parts)
        return self._session

    def session_created(self, session: SavedSession) -> None:
        self._session, self._parts = session, []
        self._sessions.put(self._key, session.to_json())

    def part_uploaded(self, part: UploadedPart) -> None:
        if self._session is None:
            return
        self._parts.append(part)
        saved = self._session.to_json()
        saved["parts"] = [p.to_json() for p in self._parts]
        self._sessions.put(self._key, saved)

    def session_discarded(self) -> None:
        self._session, self._parts = None, []
        self._sessions.put(self._key, None)


@dataclass(frozen=True)
class PushItem:
    """One local file and where it goes: a folder path below the target folder."""

    path: Path
    folders: tuple[str, ...]

    @property
    def size(self) -> int:
        return self.path.stat().st_size


@dataclass(frozen=True)
class PushResult:
    item: PushItem
    outcome: str  # uploaded | skipped | failed
    detail: str = ""
    uploaded: UploadedFile | None = None


def expand(paths: list[Path]) -> list[PushItem]:
    """Files as given; directories walked, their sub-folders mirrored under the target."""
    items: list[PushItem] = []
    for given in paths:
        if given.is_dir():
            root = given.resolve()
            for directory, subdirs, files in os.walk(root):
                subdirs.sort()
                rel = Path(directory).relative_to(root.parent).parts
                items += [PushItem(Path(directory) / f, tuple(rel)) for f in sorted(files)]
        else:
            items.append(PushItem(given, ()))
    return items


def push(items: list[PushItem], folder_id: str, box: BoxConnection, *, conflict: str,
         sessions: PushSessions, progress: PushProgress) -> list[PushResult]:
    """Upload every item; never stops at one failure. Results in the order given."""
    results: list[PushResult] = []
    for item in items:
        progress.start_file(str(item.path), item.size)
        result = _push_one(item, folder_id, box, conflict, sessions, progress)
        progress.finish_file(result.outcome)
        if result.outcome == "failed":
            progress.stream.write(f"          {result.detail}\n")
        results.append(result)
    progress.close()
    return results


def _push_one(item: PushItem, folder_id: str, box: BoxConnection, conflict: str, sessions: PushSessions,
              progress: PushProgress) -> PushResult:
    try:
        with PathSource(item.path) as source:
            st = source.fstat()
            parent = box.folders.ensure(folder_id, item.folders) if item.folders else folder_id
            key = f"{item.path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{parent}"
            session = sessions.progress_for(key)

            def upload(name: str, existing_id: str | None) -> UploadedFile:
                return box.uploader.upload(source, parent, name, existing_file_id=existing_id,
                                           progress=session, on_bytes=progress.advance)

            outcome = upload_with_policy(upload, item.path.name, conflict)
    except BoxError as exc:
        return PushResult(item, "failed", str(exc))
    except OSError as exc:
        return PushResult(item, "failed", f"cannot read {item.path}: {exc.strerror or exc}")
    if isinstance(outcome, ConflictOutcome):
        return PushResult(item, "skipped" if outcome.skipped else "failed", outcome.reason)
    session.session_discarded()
    detail = f"file id {outcome.file_id}"
    if outcome.parts_reused:
        detail += f"; {outcome.parts_reused} parts ({outcome.bytes_reused} bytes) Box already held were not sent"
    return PushResult(item, "uploaded", detail, outcome)


def summary(results: list[PushResult]) -> Iterator[str]:
    for result in results:
        if result.outcome != "uploaded":
            yield f"{result.outcome}: {result.item.path}: {result.detail}"
