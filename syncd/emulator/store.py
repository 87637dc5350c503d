"""Persistent state of the emulator: SQLite metadata plus content files.

Layout under `--data DIR`:
  box.db            SQLite (WAL, synchronous=NORMAL): users, items, versions,
                    upload sessions and parts, tokens, JWT keys, clock offset
  blobs/<random>    content of a directly uploaded version
  parts/<session>/  one file per uploaded part, named by its byte offset; a
                    committed session's directory stays and is the version's
                    content (versions.blob names it), so commit copies nothing.
                    Parts reused from an earlier version (plan hits) are
                    hard-linked (or, when the range is not one whole file,
                    copied) in as `<offset>.hit` and renamed to `<offset>` in
                    the commit's transaction. Content files are never written
                    after they are in place, so sharing them by link is safe.
  tmp/              request bodies while they stream in (cleared on start)

Every mutation runs in one short transaction under a process-wide lock, so
check-then-act sequences (name clashes, quota) are atomic; reads use a
per-thread connection and never block on writers (WAL). Content is never
fsynced per request: durability of metadata is what a restart needs, and a
crash of the emulator's host is outside what tests simulate.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import shutil
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from syncd.emulator.errors import BoxError, not_found
from syncd.emulator.ids import unique_hex
from syncd.emulator.names import name_key

ROOT_ID = 0
DEFAULT_USER_ID = "11446498"
DEFAULT_USER_NAME = "Emulator User"
DEFAULT_USER_LOGIN = "emulator@example.com"
DEFAULT_ENTERPRISE_ID = "1234567"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS users(
  id TEXT PRIMARY KEY, name TEXT NOT NULL, login TEXT NOT NULL, enterprise_id TEXT,
  role TEXT NOT NULL, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS items(
  id INTEGER PRIMARY KEY AUTOINCREMENT, type TEXT NOT NULL, owner_id TEXT NOT NULL,
  parent_id INTEGER NOT NULL, name TEXT NOT NULL, name_key TEXT NOT NULL,
  description TEXT NOT NULL DEFAULT '', etag INTEGER NOT NULL DEFAULT 0,
  created_at REAL NOT NULL, modified_at REAL NOT NULL,
  content_created_at REAL NOT NULL, content_modified_at REAL NOT NULL,
  created_by TEXT NOT NULL, modified_by TEXT NOT NULL, trashed_at REAL,
  status TEXT NOT NULL DEFAULT 'active', version_id INTEGER, size INTEGER NOT NULL DEFAULT 0,
  sha1 TEXT);
CREATE UNIQUE INDEX IF NOT EXISTS items_unique_name ON items(owner_id, parent_id, name_key)
  WHERE status = 'active';
CREATE INDEX IF NOT EXISTS items_parent ON items(parent_id, owner_id, status);
CREATE TABLE IF NOT EXISTS versions(
  id INTEGER PRIMARY KEY AUTOINCREMENT, file_id INTEGER NOT NULL, sha1 TEXT NOT NULL,
  size INTEGER NOT NULL, name TEXT NOT NULL, created_at REAL NOT NULL,
  modified_at REAL NOT NULL, modified_by TEXT NOT NULL, blob TEXT);
CREATE INDEX IF NOT EXISTS versions_file ON versions(file_id);
CREATE TABLE IF NOT EXISTS sessions(
  id TEXT PRIMARY KEY, owner_id TEXT NOT NULL, folder_id INTEGER, file_id INTEGER,
  file_name TEXT, file_size INTEGER NOT NULL, part_size INTEGER NOT NULL,
  total_parts INTEGER NOT NULL, created_at REAL NOT NULL, expires_at REAL NOT NULL,
  state TEXT NOT NULL DEFAULT 'open', commits INTEGER NOT NULL DEFAULT 0,
  result_file_id INTEGER, assembled_key TEXT, assembled_sha1 TEXT);
CREATE TABLE IF NOT EXISTS parts(
  session_id TEXT NOT NULL, offset INTEGER NOT NULL, part_id TEXT NOT NULL,
  size INTEGER NOT NULL, sha1 TEXT NOT NULL, sha512 TEXT, PRIMARY KEY(session_id, offset));
CREATE TABLE IF NOT EXISTS chunks(
  part_id TEXT PRIMARY KEY, version_id INTEGER NOT NULL, offset INTEGER NOT NULL,
  size INTEGER NOT NULL, sha1 TEXT NOT NULL, sha512 TEXT NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS chunks_range ON chunks(version_id, offset, size);
CREATE TABLE IF NOT EXISTS tokens(
  hash TEXT PRIMARY KEY, kind TEXT NOT NULL, user_id TEXT NOT NULL, client_id TEXT,
  expires_at REAL, used INTEGER NOT NULL DEFAULT 0, redirect_uri TEXT);
CREATE TABLE IF NOT EXISTS jtis(jti TEXT PRIMARY KEY, expires_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS jwt_keys(kid TEXT PRIMARY KEY, pem TEXT NOT NULL);
"""

READ_CHUNK = 1 << 20
_FIRST_ITEM_ID = 1_000_000_000
_FIRST_VERSION_ID = 2_000_000_000


@dataclass(frozen=True)
class User:
    id: str
    name: str
    login: str
    enterprise_id: str | None
    role: str  # "admin", "user" or "service_account"
    created_at: float


@dataclass(frozen=True)
class Item:
    """A file or a (non-root) folder row."""

    id: int
    type: str
    owner_id: str
    parent_id: int
    name: str
    description: str
    etag: int
    created_at: float
    modified_at: float
    content_created_at: float
    content_modified_at: float
    created_by: str
    modified_by: str
    trashed_at: float | None
    status: str
    version_id: int | None
    size: int
    sha1: str | None


@dataclass(frozen=True)
class Version:
    id: int
    file_id: int
    sha1: str
    size: int
    name: str
    created_at: float
    modified_at: float
    modified_by: str
    blob: str | None = None  # path of the content, relative to the data directory


@dataclass(frozen=True)
class Session:
    id: str
    owner_id: str
    folder_id: int | None
    file_id: int | None
    file_name: str | None
    file_size: int
    part_size: int
    total_parts: int
    created_at: float
    expires_at: float
    state: str  # open | committed | aborted | expired (parts purged)
    commits: int
    result_file_id: int | None
    assembled_key: str | None
    assembled_sha1: str | None


@dataclass(frozen=True)
class Part:
    """A part uploaded to a session; `sha512` is known once asked for (or sent as a digest)."""

    session_id: str
    offset: int
    part_id: str
    size: int
    sha1: str
    sha512: str | None = None


@dataclass(frozen=True)
class Chunk:
    """The hashes of one byte range of a committed version, kept once computed.

    Its `part_id` is what the plan endpoint hands out as a hit and what a commit
    names to reuse the range. Ids are 16 hex digits, so they never collide with
    the 8-digit ids of uploaded parts.
    """

    part_id: str
    version_id: int
    offset: int
    size: int
    sha1: str
    sha512: str


@dataclass(frozen=True)
class Staged:
    """A reused range linked or copied into a session directory, renamed into place at commit."""

    path: Path
    final: Path


@dataclass(frozen=True)
class TokenRecord:
    kind: str  # access | developer | refresh | code
    user_id: str
    client_id: str | None
    expires_at: float | None
    used: bool
    redirect_uri: str | None


@dataclass(frozen=True)
class NewContent:
    """Received content: a temp file (moved into blobs/) or, for a session, its part directory."""

    path: Path
    size: int
    sha1: str
    session_id: str | None = None  # set: commit this session; its part directory is the content
    staged: tuple[Staged, ...] = ()  # reused ranges to rename into the part directory
    chunks: tuple[tuple[int, int, str, str], ...] = ()  # (offset, size, sha1, sha512) known for it


def new_chunk_id() -> str:
    """A part id for a chunk: 16 upper-case hex digits, unique across the store."""
    return unique_hex(16).upper()


def token_hash(token: str) -> str:
    """Tokens are stored hashed so the database never holds a usable secret."""
    return hashlib.sha256(token.encode()).hexdigest()


class Store:
    """All persistent state; thread-safe."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.blobs = data_dir / "blobs"
        self.parts_dir = data_dir / "parts"
        self.tmp = data_dir / "tmp"
        for directory in (self.blobs, self.parts_dir):
            directory.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir(parents=True, exist_ok=True)
        self._path = data_dir / "box.db"
        self._local = threading.local()
        self.lock = threading.RLock()
        self._users: dict[str, User] = {}
        self._secrets: dict[str, bytes] = {}
        with self.lock:
            self._db().executescript(_SCHEMA)
            # Data directories written by older emulators lack these columns.
            for table, column in (("versions", "blob"), ("parts", "sha512")):
                columns = {row["name"] for row in self._db().execute(f"PRAGMA table_info({table})")}
                if column not in columns:
                    self._db().execute(f"ALTER TABLE {table} ADD COLUMN {column} TEXT")
        with self.write() as db:
            for table, first in (("items", _FIRST_ITEM_ID), ("versions", _FIRST_VERSION_ID)):
                if db.execute("SELECT 1 FROM sqlite_sequence WHERE name=?", (table,)).fetchone() is None:
                    db.execute("INSERT INTO sqlite_sequence(name, seq) VALUES(?, ?)", (table, first))

    # -- connections -------------------------------------------------------
    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self._path, timeout=30, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.row_factory = sqlite3.Row
            self._local.db = db
        return db

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One short write transaction, serialised with every other writer."""
        with self.lock:
            db = self._db()
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def read(self) -> sqlite3.Connection:
        return self._db()

    def temp_path(self) -> Path:
        return self.tmp / unique_hex(24)

    def blob_files(self, version_id: int) -> list[Path]:
        """The files whose concatenation is the version's content.

        A direct upload is one file; a committed upload session is its part
        directory (file names = byte offsets), read in offset order.
        """
        row = self.read().execute("SELECT blob FROM versions WHERE id=?", (version_id,)).fetchone()
        path = self.data_dir / row["blob"] if row is not None and row["blob"] else self.blobs / str(version_id)
        if path.is_dir():
            return sorted((part for part in path.iterdir() if part.name.isdigit()), key=lambda part: int(part.name))
        return [path]

    def part_path(self, session_id: str, offset: int) -> Path:
        return self.parts_dir / session_id / str(offset)

    def _segments(self, version_id: int, offset: int, size: int) -> Iterator[tuple[Path, int, int]]:
        """(file, start within it, length) covering bytes [offset, offset+size) of a version."""
        position = 0
        end = offset + size
        for path in self.blob_files(version_id):
            length = path.stat().st_size
            if position + length > offset and position < end:
                start = max(offset - position, 0)
                yield path, start, min(length, end - position) - start
            position += length
            if position >= end:
                return
        if position < end:
            raise ValueError(f"version {version_id} has {position} bytes, fewer than {end}")

    def read_range(self, version_id: int, offset: int, size: int) -> Iterator[memoryview]:
        """Bytes [offset, offset+size) of a version, streamed from disk in READ_CHUNK pieces.

        Each piece is a view of one reused buffer: use it before asking for the next.
        """
        buffer = bytearray(READ_CHUNK)
        view = memoryview(buffer)
        for path, start, length in self._segments(version_id, offset, size):
            with open(path, "rb", buffering=0) as source:
                source.seek(start)
                while length > 0:
                    count = source.readinto(view[:min(READ_CHUNK, length)])
                    if not count:
                        raise ValueError(f"{path} is shorter than the store recorded")
                    length -= count
                    yield view[:count]

    def stage_range(self, version_id: int, offset: int, size: int, session_id: str) -> Staged:
        """Put a version's bytes [offset, offset+size) beside a session's parts, for its commit.

        A range that is exactly one content file is hard-linked (no copy); any
        other range is copied. The result is named `<offset>.hit`, which
        `blob_files` ignores until the commit renames it to `<offset>`.
        """
        final = self.part_path(session_id, offset)
        final.parent.mkdir(parents=True, exist_ok=True)
        staged = final.with_name(f"{offset}.hit")
        staged.unlink(missing_ok=True)
        segments = list(self._segments(version_id, offset, size))
        if len(segments) == 1 and segments[0][1] == 0 and segments[0][2] == segments[0][0].stat().st_size:
            try:
                os.link(segments[0][0], staged)
                return Staged(staged, final)
            except OSError:
                pass  # no hard links here (another file system): copy instead
        with open(staged, "wb") as target:
            for piece in self.read_range(version_id, offset, size):
                target.write(piece)
        return Staged(staged, final)

    # -- meta --------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        row = self.read().execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else row["value"]

    def set_meta(self, key: str, value: str) -> None:
        with self.write() as db:
            db.execute("INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                       (key, value))

    def secret(self, name: str) -> bytes:
        """A random 32-byte key kept in the database (made on first use), e.g. to sign download URLs."""
        cached = self._secrets.get(name)
        if cached is not None:
            return cached
        with self.write() as db:
            db.execute("INSERT OR IGNORE INTO meta(key, value) VALUES(?, ?)", (f"secret:{name}", secrets.token_hex(32)))
            value = bytes.fromhex(db.execute("SELECT value FROM meta WHERE key=?", (f"secret:{name}",)).fetchone()[0])
        self._secrets[name] = value
        return value

    # -- users -------------------------------------------------------------
    def ensure_user(self, user: User) -> None:
        with self.write() as db:
            db.execute("INSERT OR IGNORE INTO users VALUES(?, ?, ?, ?, ?, ?)",
                       (user.id, user.name, user.login, user.enterprise_id, user.role, user.created_at))

    def create_user(self, name: str, login: str, role: str, enterprise_id: str | None, now: float) -> User:
        with self.write() as db:
            while True:
                user_id = str(20_000_000 + secrets.randbelow(70_000_000))
                if db.execute("SELECT 1 FROM users WHERE id=?", (user_id,)).fetchone() is None:
                    break
            db.execute("INSERT INTO users VALUES(?, ?, ?, ?, ?, ?)",
                       (user_id, name, login, enterprise_id, role, now))
        return User(user_id, name, login, enterprise_id, role, now)

    def get_user(self, user_id: str) -> User | None:
        # Users never change once created, so every request need not query them.
        cached = self._users.get(user_id)
        if cached is not None:
            return cached
        row = self.read().execute("SELECT * FROM users WHERE id=?", (user_id,)).fetchone()
        if row is None:
            return None
        user = User(**dict(row))
        self._users[user_id] = user
        return user

    def service_account(self, enterprise_id: str, now: float) -> User:
        """The enterprise's service account (created on first use)."""
        row = self.read().execute("SELECT * FROM users WHERE role='service_account' AND enterprise_id=?",
                                  (enterprise_id,)).fetchone()
        if row is not None:
            return User(**dict(row))
        return self.create_user("Service Account", f"AutomationUser_{enterprise_id}@boxdevedition.com",
                                "service_account", enterprise_id, now)

    def space_used(self, owner_id: str, db: sqlite3.Connection | None = None) -> int:
        db = db or self.read()
        row = db.execute(
            "SELECT COALESCE(SUM(v.size), 0) AS used FROM versions v JOIN items i ON i.id = v.file_id "
            "WHERE i.owner_id=?", (owner_id,)).fetchone()
        return int(row["used"])

    # -- items -------------------------------------------------------------
    def get_item(self, item_id: int, owner_id: str, db: sqlite3.Connection | None = None,
                 include_trashed: bool = False) -> Item | None:
        db = db or self.read()
        row = db.execute("SELECT * FROM items WHERE id=? AND owner_id=?", (item_id, owner_id)).fetchone()
        if row is None or (row["status"] != "active" and not include_trashed):
            return None
        return _item(row)

    def folder_exists(self, folder_id: int, owner_id: str, db: sqlite3.Connection | None = None) -> bool:
        if folder_id == ROOT_ID:
            return True
        item = self.get_item(folder_id, owner_id, db)
        return item is not None and item.type == "folder"

    def find_by_name(self, owner_id: str, parent_id: int, name: str,
                     db: sqlite3.Connection | None = None) -> Item | None:
        db = db or self.read()
        row = db.execute("SELECT * FROM items WHERE owner_id=? AND parent_id=? AND name_key=? AND status='active'",
                         (owner_id, parent_id, name_key(name))).fetchone()
        return None if row is None else _item(row)

    def ancestors(self, item: Item) -> list[Item]:
        """Folders from the top (below root) down to the item's parent."""
        chain: list[Item] = []
        parent_id = item.parent_id
        db = self.read()
        while parent_id != ROOT_ID:
            parent = self.get_item(parent_id, item.owner_id, db, include_trashed=True)
            if parent is None:
                break
            chain.append(parent)
            parent_id = parent.parent_id
        chain.reverse()
        return chain

    def folder_size(self, folder_id: int, owner_id: str) -> int:
        row = self.read().execute(
            "WITH RECURSIVE tree(id) AS (SELECT ? UNION ALL SELECT i.id FROM items i JOIN tree t "
            "ON i.parent_id = t.id WHERE i.owner_id=? AND i.status='active' AND i.type='folder') "
            "SELECT COALESCE(SUM(size), 0) AS total FROM items WHERE owner_id=? AND status='active' "
            "AND type='file' AND parent_id IN (SELECT id FROM tree)",
            (folder_id, owner_id, owner_id)).fetchone()
        return int(row["total"])

    def list_children(self, folder_id: int, owner_id: str, order_by: str, descending: bool,
                      offset: int, limit: int) -> tuple[int, list[Item]]:
        """Active children sorted folders-first, then by `order_by`; (total, page)."""
        direction = "DESC" if descending else "ASC"
        column = {"name": "name_key", "id": "id", "date": "modified_at", "size": "size"}[order_by]
        db = self.read()
        total = db.execute("SELECT COUNT(*) AS n FROM items WHERE parent_id=? AND owner_id=? AND status='active'",
                           (folder_id, owner_id)).fetchone()["n"]
        rows = db.execute(
            f"SELECT * FROM items WHERE parent_id=? AND owner_id=? AND status='active' "
            f"ORDER BY CASE type WHEN 'folder' THEN 0 ELSE 1 END, {column} {direction}, id {direction} "
            f"LIMIT ? OFFSET ?", (folder_id, owner_id, limit, offset)).fetchall()
        return int(total), [_item(row) for row in rows]

    def _insert_item(self, db: sqlite3.Connection, kind: str, owner_id: str, parent_id: int, name: str,
                     now: float, created: float, modified: float) -> int:
        cursor = db.execute(
            "INSERT INTO items(type, owner_id, parent_id, name, name_key, created_at, modified_at, "
            "content_created_at, content_modified_at, created_by, modified_by) "
            "VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (kind, owner_id, parent_id, name, name_key(name), now, now, created, modified, owner_id, owner_id))
        return int(cursor.lastrowid)

    def check_name_free(self, db: sqlite3.Connection, owner_id: str, parent_id: int, name: str,
                        exclude_id: int | None = None) -> None:
        existing = self.find_by_name(owner_id, parent_id, name, db)
        if existing is not None and existing.id != exclude_id:
            raise NameInUse(existing)

    def create_folder(self, owner_id: str, parent_id: int, name: str, now: float) -> Item:
        with self.write() as db:
            if not self.folder_exists(parent_id, owner_id, db):
                raise not_found("Not Found")
            self.check_name_free(db, owner_id, parent_id, name)
            item_id = self._insert_item(db, "folder", owner_id, parent_id, name, now, now, now)
            return self.get_item(item_id, owner_id, db)  # type: ignore[return-value]

    def check_capacity(self, db: sqlite3.Connection, owner_id: str, size: int, max_file_size: int,
                       quota: int) -> None:
        """403s for the size caps: per-file maximum, then the owner's storage quota."""
        if max_file_size and size > max_file_size:
            raise BoxError(403, "file_size_limit_exceeded",
                           f"File size {size} exceeds the maximum file size {max_file_size}")
        if quota and self.space_used(owner_id, db) + size > quota:
            raise BoxError(403, "storage_limit_exceeded", "Account storage limit reached")

    def store_file(self, owner_id: str, parent_id: int | None, file_id: int | None, name: str | None,
                   content: NewContent, now: float, created: float | None, modified: float | None,
                   max_file_size: int, quota: int, if_match: str | None = None) -> Item:
        """Create a new file in `parent_id`, or a new version of `file_id` (renamed if `name`).

        A temp file in `content` is moved into the blob store as the last step
        of the transaction (a crash before COMMIT leaves an unreferenced blob, never
        a version without content); on any error it is left for the caller to
        delete. For an upload session the session is marked committed in the same
        transaction and its part directory becomes the content.
        """
        with self.write() as db:
            if file_id is None:
                assert parent_id is not None and name is not None
                if not self.folder_exists(parent_id, owner_id, db):
                    raise not_found("Not Found")
                self.check_name_free(db, owner_id, parent_id, name)
                self.check_capacity(db, owner_id, content.size, max_file_size, quota)
                item_id = self._insert_item(db, "file", owner_id, parent_id, name, now,
                                            created if created is not None else now,
                                            modified if modified is not None else now)
                etag = 0
            else:
                item = self.get_item(file_id, owner_id, db)
                check_if_match(item, if_match)
                if item is None or item.type != "file":
                    raise not_found("Not Found")
                if name is not None and name_key(name) != name_key(item.name):
                    self.check_name_free(db, owner_id, item.parent_id, name, exclude_id=item.id)
                self.check_capacity(db, owner_id, content.size, max_file_size, quota)
                item_id = item.id
                name = name if name is not None else item.name
                etag = item.etag + 1
                db.execute("UPDATE items SET name=?, name_key=?, content_modified_at=?, modified_at=?, "
                           "modified_by=? WHERE id=?",
                           (name, name_key(name), modified if modified is not None else now, now, owner_id,
                            item_id))
            if content.session_id is not None:
                blob = str(content.path.relative_to(self.data_dir))
            else:
                blob = f"blobs/{unique_hex(32)}"
            cursor = db.execute(
                "INSERT INTO versions(file_id, sha1, size, name, created_at, modified_at, modified_by, blob) "
                "VALUES(?, ?, ?, ?, ?, ?, ?, ?)",
                (item_id, content.sha1, content.size, name, now, now, owner_id, blob))
            version_id = int(cursor.lastrowid)
            db.execute("UPDATE items SET version_id=?, size=?, sha1=?, etag=? WHERE id=?",
                       (version_id, content.size, content.sha1, etag, item_id))
            for offset, size, sha1, sha512 in content.chunks:
                db.execute("INSERT OR IGNORE INTO chunks VALUES(?, ?, ?, ?, ?, ?)",
                           (new_chunk_id(), version_id, offset, size, sha1, sha512))
            if content.session_id is not None:
                db.execute("UPDATE sessions SET state='committed', result_file_id=? WHERE id=?",
                           (item_id, content.session_id))
                db.execute("DELETE FROM parts WHERE session_id=?", (content.session_id,))
                for staged in content.staged:
                    os.replace(staged.path, staged.final)
                for leftover in content.path.glob("*.hit"):  # staged by an earlier, failed attempt
                    leftover.unlink(missing_ok=True)
            else:
                os.replace(content.path, self.data_dir / blob)
            return self.get_item(item_id, owner_id, db)  # type: ignore[return-value]

    def update_item(self, item: Item, changes: dict[str, object], now: float, if_match: str | None) -> Item:
        """Apply PUT /files/{id} changes: name, description, parent, content times."""
        with self.write() as db:
            current = self.get_item(item.id, item.owner_id, db)
            check_if_match(current, if_match)
            if current is None:
                raise not_found("Not Found")
            name = changes.get("name", current.name)
            parent_id = changes.get("parent_id", current.parent_id)
            assert isinstance(name, str) and isinstance(parent_id, int)
            if parent_id != current.parent_id and not self.folder_exists(parent_id, current.owner_id, db):
                raise not_found("Not Found")
            if parent_id != current.parent_id or name_key(name) != name_key(current.name):
                self.check_name_free(db, current.owner_id, parent_id, name, exclude_id=current.id)
            db.execute(
                "UPDATE items SET name=?, name_key=?, parent_id=?, description=?, content_created_at=?, "
                "content_modified_at=?, modified_at=?, etag=etag+1 WHERE id=?",
                (name, name_key(name), parent_id, changes.get("description", current.description),
                 changes.get("content_created_at", current.content_created_at),
                 changes.get("content_modified_at", current.content_modified_at), now, current.id))
            return self.get_item(current.id, current.owner_id, db)  # type: ignore[return-value]

    def trash_item(self, item: Item, now: float, if_match: str | None) -> None:
        with self.write() as db:
            current = self.get_item(item.id, item.owner_id, db)
            check_if_match(current, if_match)
            if current is None:
                raise not_found("Not Found")
            db.execute("UPDATE items SET status='trashed', trashed_at=?, etag=etag+1 WHERE id=?",
                       (now, current.id))

    def trash_folder(self, folder: Item, now: float, if_match: str | None, recursive: bool) -> None:
        """Move a folder and everything below it to the trash (DELETE /folders/{id}).

        Without `recursive` a folder holding any active item is refused with Box's
        400 folder_not_empty. Descendants are trashed with it, so they answer 404 and
        leave listings, and their names are free again, as on Box.
        """
        with self.write() as db:
            current = self.get_item(folder.id, folder.owner_id, db)
            check_if_match(current, if_match)
            if current is None or current.type != "folder":
                raise not_found("Not Found")
            if not recursive and db.execute(
                    "SELECT 1 FROM items WHERE parent_id=? AND owner_id=? AND status='active' LIMIT 1",
                    (current.id, current.owner_id)).fetchone() is not None:
                raise BoxError(400, "folder_not_empty", "Cannot delete - folder not empty")
            db.execute(
                "WITH RECURSIVE tree(id) AS (SELECT ? UNION ALL SELECT i.id FROM items i JOIN tree t "
                "ON i.parent_id = t.id WHERE i.owner_id=? AND i.status='active') "
                "UPDATE items SET status='trashed', trashed_at=?, etag=etag+1 WHERE id IN (SELECT id FROM tree)",
                (current.id, current.owner_id, now))

    def versions(self, file_id: int) -> list[Version]:
        rows = self.read().execute("SELECT * FROM versions WHERE file_id=? ORDER BY id DESC", (file_id,)).fetchall()
        return [Version(**dict(row)) for row in rows]

    def file_of_version(self, version_id: int) -> Item | None:
        """The (active) file a version belongs to, whoever owns it."""
        row = self.read().execute("SELECT i.* FROM items i JOIN versions v ON v.file_id = i.id "
                                  "WHERE v.id=? AND i.status='active'", (version_id,)).fetchone()
        return None if row is None else _item(row)

    def get_version(self, version_id: int) -> Version | None:
        row = self.read().execute("SELECT * FROM versions WHERE id=?", (version_id,)).fetchone()
        return None if row is None else Version(**dict(row))

    # -- sessions ----------------------------------------------------------
    def create_session(self, session: Session) -> None:
        with self.write() as db:
            db.execute("INSERT INTO sessions VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (session.id, session.owner_id, session.folder_id, session.file_id, session.file_name,
                        session.file_size, session.part_size, session.total_parts, session.created_at,
                        session.expires_at, session.state, session.commits, session.result_file_id,
                        session.assembled_key, session.assembled_sha1))

    def get_session(self, session_id: str, db: sqlite3.Connection | None = None) -> Session | None:
        row = (db or self.read()).execute("SELECT * FROM sessions WHERE id=?", (session_id,)).fetchone()
        return None if row is None else Session(**dict(row))

    def parts(self, session_id: str, db: sqlite3.Connection | None = None) -> list[Part]:
        rows = (db or self.read()).execute("SELECT * FROM parts WHERE session_id=? ORDER BY offset",
                                           (session_id,)).fetchall()
        return [Part(**dict(row)) for row in rows]

    def overlapping_part(self, session_id: str, first: int, last: int,
                         db: sqlite3.Connection | None = None) -> Part | None:
        row = (db or self.read()).execute(
            "SELECT * FROM parts WHERE session_id=? AND offset <= ? AND offset + size - 1 >= ? "
            "ORDER BY offset LIMIT 1", (session_id, last, first)).fetchone()
        return None if row is None else Part(**dict(row))

    def add_part(self, part: Part, temp: Path) -> Part | None:
        """Store the part; returns the stored part it overlaps instead, if any (nothing stored)."""
        with self.write() as db:
            session = self.get_session(part.session_id, db)
            if session is None or session.state != "open":
                raise BoxError(404, "not_found", "Upload session not found")
            clash = self.overlapping_part(part.session_id, part.offset, part.offset + part.size - 1, db)
            if clash is not None:
                return clash
            path = self.part_path(part.session_id, part.offset)
            path.parent.mkdir(parents=True, exist_ok=True)
            os.replace(temp, path)
            db.execute("INSERT INTO parts(session_id, offset, part_id, size, sha1, sha512) VALUES(?, ?, ?, ?, ?, ?)",
                       (part.session_id, part.offset, part.part_id, part.size, part.sha1, part.sha512))
        return None

    def set_part_sha512(self, session_id: str, offset: int, sha512: str) -> None:
        with self.write() as db:
            db.execute("UPDATE parts SET sha512=? WHERE session_id=? AND offset=?", (sha512, session_id, offset))

    # -- chunks (hashes of committed versions' ranges) ---------------------
    def find_chunk(self, version_id: int, offset: int, size: int) -> Chunk | None:
        row = self.read().execute("SELECT * FROM chunks WHERE version_id=? AND offset=? AND size=?",
                                  (version_id, offset, size)).fetchone()
        return None if row is None else Chunk(**dict(row))

    def chunk_by_id(self, part_id: str) -> Chunk | None:
        row = self.read().execute("SELECT * FROM chunks WHERE part_id=?", (part_id,)).fetchone()
        return None if row is None else Chunk(**dict(row))

    def save_chunk(self, version_id: int, offset: int, size: int, sha1: str, sha512: str) -> Chunk:
        """Keep a range's hashes; if another thread kept them first, theirs (and its id) win."""
        with self.write() as db:
            db.execute("INSERT OR IGNORE INTO chunks VALUES(?, ?, ?, ?, ?, ?)",
                       (new_chunk_id(), version_id, offset, size, sha1, sha512))
        chunk = self.find_chunk(version_id, offset, size)
        assert chunk is not None
        return chunk

    def count_commit(self, session_id: str) -> int:
        """Record one more commit attempt; returns how many came before it."""
        with self.write() as db:
            row = db.execute("SELECT commits FROM sessions WHERE id=?", (session_id,)).fetchone()
            db.execute("UPDATE sessions SET commits=commits+1 WHERE id=?", (session_id,))
            return int(row["commits"])

    def set_assembled(self, session_id: str, key: str, sha1: str) -> None:
        with self.write() as db:
            db.execute("UPDATE sessions SET assembled_key=?, assembled_sha1=? WHERE id=?", (key, sha1, session_id))

    def session_dir(self, session_id: str) -> Path:
        """Where the session's part files live (and stay, once committed)."""
        return self.parts_dir / session_id

    def purge_expired_sessions(self, now: float) -> int:
        """Free the disk of open sessions past expiry (they keep answering 410); returns how many."""
        rows = self.read().execute("SELECT id FROM sessions WHERE state='open' AND expires_at <= ?",
                                   (now,)).fetchall()
        for row in rows:
            with self.write() as db:
                db.execute("UPDATE sessions SET state='expired' WHERE id=?", (row["id"],))
                db.execute("DELETE FROM parts WHERE session_id=?", (row["id"],))
            shutil.rmtree(self.session_dir(row["id"]), ignore_errors=True)
        return len(rows)

    def finish_unchanged_session(self, session_id: str, file_id: int) -> None:
        """Close a new-version session whose content was the file's own: committed, no new version."""
        with self.write() as db:
            db.execute("UPDATE sessions SET state='committed', result_file_id=? WHERE id=?", (file_id, session_id))
            db.execute("DELETE FROM parts WHERE session_id=?", (session_id,))
        shutil.rmtree(self.session_dir(session_id), ignore_errors=True)

    def abort_session(self, session_id: str) -> None:
        """Mark the session aborted and delete its parts."""
        with self.write() as db:
            db.execute("UPDATE sessions SET state='aborted' WHERE id=? AND state='open'", (session_id,))
            db.execute("DELETE FROM parts WHERE session_id=?", (session_id,))
        shutil.rmtree(self.session_dir(session_id), ignore_errors=True)

    # -- tokens ------------------------------------------------------------
    def save_token(self, token: str, record: TokenRecord) -> None:
        with self.write() as db:
            db.execute("INSERT OR REPLACE INTO tokens VALUES(?, ?, ?, ?, ?, ?, ?)",
                       (token_hash(token), record.kind, record.user_id, record.client_id, record.expires_at,
                        int(record.used), record.redirect_uri))

    def get_token(self, token: str) -> TokenRecord | None:
        row = self.read().execute("SELECT * FROM tokens WHERE hash=?", (token_hash(token),)).fetchone()
        if row is None:
            return None
        return TokenRecord(row["kind"], row["user_id"], row["client_id"], row["expires_at"], bool(row["used"]),
                           row["redirect_uri"])

    def use_token_once(self, token: str, kind: str, now: float) -> TokenRecord | None:
        """Atomically consume a single-use token (refresh token, auth code); None if not usable."""
        with self.write() as db:
            row = db.execute("SELECT * FROM tokens WHERE hash=? AND kind=?", (token_hash(token), kind)).fetchone()
            if row is None or row["used"] or (row["expires_at"] is not None and row["expires_at"] <= now):
                return None
            db.execute("UPDATE tokens SET used=1 WHERE hash=?", (token_hash(token),))
            return TokenRecord(row["kind"], row["user_id"], row["client_id"], row["expires_at"], True,
                               row["redirect_uri"])

    def forget_tokens(self, kind: str) -> None:
        with self.write() as db:
            db.execute("DELETE FROM tokens WHERE kind=?", (kind,))

    def expire_access_tokens(self, now: float) -> int:
        with self.write() as db:
            return db.execute("UPDATE tokens SET expires_at=? WHERE kind IN ('access', 'developer')",
                              (now - 1,)).rowcount

    def use_jti(self, jti: str, expires_at: float, now: float) -> bool:
        """Record a JWT id; False if it was seen before (and has not yet expired)."""
        with self.write() as db:
            db.execute("DELETE FROM jtis WHERE expires_at < ?", (now - 300,))
            if db.execute("SELECT 1 FROM jtis WHERE jti=?", (jti,)).fetchone() is not None:
                return False
            db.execute("INSERT INTO jtis VALUES(?, ?)", (jti, expires_at))
            return True

    def save_jwt_key(self, kid: str, pem: str) -> None:
        with self.write() as db:
            db.execute("INSERT OR REPLACE INTO jwt_keys VALUES(?, ?)", (kid, pem))

    def jwt_key(self, kid: str) -> str | None:
        row = self.read().execute("SELECT pem FROM jwt_keys WHERE kid=?", (kid,)).fetchone()
        return None if row is None else row["pem"]


def _item(row: sqlite3.Row) -> Item:
    values = dict(row)
    values.pop("name_key", None)
    return Item(**values)


@dataclass
class NameInUse(Exception):
    """A name clash; the route turns it into 409 with the right `conflicts` shape."""

    existing: Item


def check_if_match(item: Item | None, if_match: str | None) -> None:
    """If-Match per REFERENCE.md §3.2: exists+match ok, exists+mismatch 412, missing+any 404/412."""
    if if_match is None:
        return
    wanted = if_match.strip().strip('"')
    if item is None:
        # A missing item cannot match a concrete etag: Box answers 412 when the
        # etag would have matched, 404 otherwise; with no item we cannot tell, so 404.
        raise not_found("Not Found")
    if wanted != "*" and wanted != str(item.etag):
        raise BoxError(412, "precondition_failed", "The resource has been modified. Please retrieve the resource again and retry")
