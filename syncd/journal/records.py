"""Records that come out of (and go into) the journal. Plain values only.

Times are Unix epoch seconds (float) everywhere; sizes and offsets are bytes.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, Protocol

#: `next_attempt_at` of a pending row whose file went back to readiness (it changed after it was
#: found ready): no worker claims it until readiness finds it stable again and `observe` makes it due.
WAITING_FOR_READINESS = math.inf


class FileState(enum.StrEnum):
    """Where a file is in its life. Stored as these exact strings."""

    PENDING = "pending"  # waiting for a worker (maybe until next_attempt_at)
    UPLOADING = "uploading"  # claimed by a worker; remote steps may be under way
    UPLOADED = "uploaded"  # in Box, SHA-1 verified
    FAILED = "failed"  # retries exhausted or permanent error; `syncd retry` revives it
    QUARANTINED = "quarantined"  # Box can never take it as is (bad name, too large)
    SKIPPED = "skipped"  # conflict policy `skip`: Box already had an item by that name


class ObservationKind(enum.StrEnum):
    """What `Journal.observe` did with a file seen on disk."""

    NEW = "new"  # first time seen: a pending row was created
    CHANGED = "changed"  # its identity differs from the row (or it was waiting for readiness): pending, due
    UNCHANGED = "unchanged"  # same as the row: nothing to do


class HistoryEvent(enum.StrEnum):
    """Why a history entry was written (finer than the states it moves between)."""

    ARRIVED = "arrived"
    CHANGED = "changed"
    SETTLED = "settled"  # found stable again after it went back to readiness, identity unchanged
    CLAIMED = "claimed"
    UPLOADED = "uploaded"
    RETRY_SCHEDULED = "retry_scheduled"
    FAILED = "failed"
    QUARANTINED = "quarantined"
    SKIPPED = "skipped"
    INTERRUPTED = "interrupted"
    RETRIED = "retried"
    REMOVED = "removed"
    FORGOTTEN = "forgotten"
    # Issue 11: a claim given back without costing an attempt (Box refused the credentials or the
    # watch's folder), a commit of a superseded attempt remembered, and the after-upload action.
    DEFERRED = "deferred"
    COMMIT_REMEMBERED = "commit_remembered"
    SOURCE_DELETED = "source_deleted"
    SOURCE_ARCHIVED = "source_archived"
    SOURCE_KEPT = "source_kept"  # the after-upload action was given up: the source stays where it is
    # Issue 16: an `uploading` row whose lease lapsed, taken over by this host (reconciled with Box next).
    TAKEN_OVER = "taken_over"


@dataclass(frozen=True, slots=True)
class FileRecord:
    """One row of the `files` table: the journal's view of one file in one watch."""

    id: int
    watch: str
    relpath: str
    size: int
    mtime_ns: int
    inode: int
    sha1: str | None
    state: FileState
    box_file_id: str | None
    box_version_id: str | None
    box_etag: str | None
    attempts: int
    next_attempt_at: float
    last_error: str | None
    last_error_code: str | None
    detected_at: float
    ready_at: float
    updated_at: float
    uploaded_at: float | None
    claim_seq: int
    """Bumped by every claim and by a change seen during upload; a worker passes the
    value it claimed with to the outcome methods so a stale upload cannot be recorded."""
    device: int | None = None  # st_dev; None in rows written before schema version 5
    ctime_ns: int | None = None  # st_ctime_ns; None in rows written before schema version 5
    lease_owner: str | None = None
    """The host id holding (or, once the upload ended, last holding) the claim; None in rows
    written before leases (SQLite schema 7), and after an operator's retry."""
    lease_expires_at: float | None = None
    """When the claim's lease lapses, by the database's clock (PostgreSQL's; SQLite: the journal's)."""

    @property
    def waiting_for_readiness(self) -> bool:
        """True for a pending row whose file went back to readiness (not claimable until it settles)."""
        return self.state is FileState.PENDING and self.next_attempt_at == WAITING_FOR_READINESS


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A Box chunked-upload session saved so that an interrupted upload can resume."""

    session_id: str
    part_size: int
    total_parts: int
    file_size: int
    expires_at: float
    sha1: str | None = None  # SHA-1 of the whole file, when known before the commit
    created_at: float | None = None  # filled in by the journal when saving
    endpoint: str | None = None  # the session URL Box returned (parts, commit, status hang off it)


@dataclass(frozen=True, slots=True)
class PartRecord:
    """One part Box acknowledged for a session (fields as Box returns them)."""

    part_id: str
    offset: int
    size: int
    sha1: str


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One append-only history line: a state change of one file."""

    id: int
    ts: float
    file_id: int
    watch: str
    relpath: str
    event: HistoryEvent
    from_state: FileState | None  # None: the row was created
    to_state: FileState | None  # None: the row was removed
    detail: str | None
    attempt: int


@dataclass(frozen=True, slots=True)
class Observation:
    """The result of `Journal.observe`: what happened and the row as it is now."""

    kind: ObservationKind
    file: FileRecord
    previous_state: FileState | None  # None for a new file


@dataclass(frozen=True, slots=True)
class InFlight:
    """An `uploading` row with its chunked-upload progress (zeros for direct uploads)."""

    file: FileRecord
    session_id: str | None
    total_parts: int
    parts_done: int
    bytes_done: int
    lease_owner: str | None = None  # the host holding the claim
    lease_expires_in: float | None = None  # seconds by the database's clock; negative: lapsed


@dataclass(frozen=True, slots=True)
class TakenOver:
    """An `uploading` row whose lease lapsed, now this host's (`Journal.take_over_expired`):
    to be reconciled with Box before anything is sent, like a row recovered after a crash."""

    record: FileRecord
    from_host: str | None  # the host whose lease lapsed (None: a row claimed before leases existed)
    expired_s: float  # how long ago, by the database's clock


@dataclass(frozen=True, slots=True)
class WatchClaim:
    """One watch a host ingests, registered with the host (`HostRegistration.start`): the same
    watch name must go to the same Box folder on every host."""

    name: str
    folder_id: str
    path_hint: str  # the local path, for status only (mounts differ between hosts)


@dataclass(frozen=True, slots=True)
class HostRecord:
    """A syncd host registered in a PostgreSQL journal (`Journal.hosts`), as status shows it."""

    host_id: str
    hostname: str
    pid: int
    version: str
    state: str  # running, degraded, stopping, stopped
    started_at: float
    heartbeat_at: float
    heartbeat_age_s: float  # by the database's clock
    detail: str | None
    in_flight: int  # uploads whose claim this host holds
    lost: bool  # not stopped, and no heartbeat for longer than the lease


class ObservedFile(NamedTuple):
    """A stable file handed to `Journal.observe_many`: its path and identity.

    `device` and `ctime_ns` may be None (then only size, mtime_ns and inode are compared);
    a plain 4-tuple (relpath, size, mtime_ns, inode) is accepted as well.
    """

    relpath: str
    size: int
    mtime_ns: int
    inode: int
    device: int | None = None
    ctime_ns: int | None = None

    @classmethod
    def of(cls, relpath: str, identity: FileIdentityLike) -> ObservedFile:
        """From anything with device, inode, size, mtime_ns and ctime_ns (a pipeline FileIdentity)."""
        return cls(relpath, identity.size, identity.mtime_ns, identity.inode, identity.device, identity.ctime_ns)


class FileIdentityLike(Protocol):
    """What the journal reads of a file's identity (`syncd.pipeline.identity.FileIdentity` has it)."""

    @property
    def device(self) -> int: ...
    @property
    def inode(self) -> int: ...
    @property
    def size(self) -> int: ...
    @property
    def mtime_ns(self) -> int: ...
    @property
    def ctime_ns(self) -> int: ...


@dataclass(frozen=True, slots=True)
class RefusedEntry:
    """An entry `observe_many` or `park_entries` could not record, and why (the others were recorded)."""

    relpath: str
    reason: str


@dataclass(frozen=True, slots=True)
class ObserveBatch:
    """What `observe_many` did: the new and changed files, and the entries it refused.

    Iterating it (or taking its length) goes over the observations, as before entries
    could be refused one by one.
    """

    observations: list[Observation] = field(default_factory=list)
    refused: list[RefusedEntry] = field(default_factory=list)

    def __iter__(self) -> Iterator[Observation]:
        return iter(self.observations)

    def __len__(self) -> int:
        return len(self.observations)


@dataclass(frozen=True, slots=True)
class ParkedEntry:
    """An entry of a watched folder that is not a regular file (a link, a FIFO, a socket...),
    to be kept in the journal as quarantined with the reason: `Journal.park_entries`."""

    relpath: str
    identity: FileIdentityLike  # of the entry itself (lstat)
    code: str  # what kind of entry, e.g. symlink_skipped, not_regular_file
    reason: str  # for a person


class KnownFile(NamedTuple):
    """What the scanner compares with the disk at start-up (a tuple: 100,000s of them)."""

    relpath: str
    size: int
    mtime_ns: int
    inode: int
    state: FileState


class PostActionKind(enum.StrEnum):
    """What happens to a source after Box verified it (``after_upload`` other than keep)."""

    DELETE = "delete"
    MOVE = "move"


@dataclass(frozen=True, slots=True)
class PlannedPostAction:
    """The after-upload action decided at commit time, journaled with `mark_uploaded`.

    The uploaded content (`sha1`, `size`, `mtime_ns`, `inode`) is copied from the
    claim, so the action touches only that content, whatever the row becomes later.
    """

    action: PostActionKind
    archive_path: Path | None = None  # MOVE: where the archive template put the file


@dataclass(frozen=True, slots=True)
class PostAction:
    """A journaled after-upload action still to be carried out (a row of `post_actions`)."""

    id: int
    file_id: int
    watch: str
    relpath: str
    action: PostActionKind
    sha1: str
    size: int
    mtime_ns: int
    inode: int
    archive_path: Path | None
    archived_as: Path | None  # MOVE: the free archive name chosen, recorded before the copy lands there
    attempts: int
    next_attempt_at: float
    last_error: str | None
    last_error_code: str | None
    created_at: float
