"""The start of an attempt: the claimed file opened as readiness saw it, its Box path, its lease.

What `pipeline.ingest` asks before it sends a byte (issue 10, invariants 3, 6, 7):

1. :func:`open_claimed`: open the file once, beneath its watch root without
   following any link, non-blocking, and check it is the regular file with the
   identity the journal recorded when readiness found it stable
   (:func:`~syncd.pipeline.source.open_source`). A refusal says what to do:
   gone (the row is removed), changed (back through readiness, no attempt
   spent), not a file any more (a link, FIFO, socket, device or directory
   swapped in: parked with the reason, no worker waits on it), or try again
   later (busy, permission denied, I/O error).
2. :func:`claim_box_path`: the Box path the file takes. The watch's
   ``invalid_names`` policy maps every component (names that are not UTF-8
   included, :func:`~syncd.pipeline.names.box_path`), and the file must own
   that path's key in its watch (the journal's Box-name registry), so that two
   local paths that are one name in Box never become versions of each other.
   On a clash, ``name_collisions`` decides: ``quarantine`` parks the file with
   "collides with PATH in Box"; ``rename`` gives it ``NAME (collision N).EXT``,
   the first free N (a clash on a *folder* cannot be renamed away: parked).
3. :class:`UploadGuard`: while the upload runs, a read lease on the open file
   (:class:`~syncd.pipeline.writers.LeaseMonitor`) and a watch on write events
   (:meth:`~syncd.pipeline.intake.Intake.guard_upload`). A writer that opens
   the file breaks the lease; either way the guard's ``changed`` event is set
   and the source's reads are interrupted, so a chunked upload stops at its
   next part and a read of the body fails at once. A writer already holding the
   file when the guard starts sends it back to readiness.

Nothing here writes an outcome: each step returns a :class:`Refusal` with the
:class:`Next` step, and ingest records it.
"""

from __future__ import annotations

import os
import threading
from contextlib import ExitStack
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

from syncd.config import WatchConfig
from syncd.journal import NAME_COLLISION, ClaimedFile, FileRecord
from syncd.pipeline.claim_holds import AnyEvent
from syncd.pipeline.identity import FileIdentity, FileStat
from syncd.pipeline.names import NameRefused, box_path, box_path_key, collision_name, display_path
from syncd.pipeline.scanner import FINAL_PROBLEMS, ProblemKind
from syncd.pipeline.source import OpenedSource, OpenRefused, OwnOpens, open_source
from syncd.pipeline.writers import HeldLease, LeaseMonitor, WriterObservation

if TYPE_CHECKING:
    from syncd.pipeline.intake import Intake

#: Renamed names tried per file under ``name_collisions: rename`` before it is parked.
MAX_COLLISION_RENAMES = 100


class Next(StrEnum):
    """What becomes of a claimed file that cannot be uploaded now."""

    GONE = "gone"  # nothing there any more: the row is removed
    BACK_TO_READINESS = "back_to_readiness"  # it changed after it was found ready: wait for it again
    PARK = "park"  # it cannot go to Box as it is: quarantined with the reason
    RETRY = "retry"  # may clear up: retried with the file's backoff


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why an attempt stops before sending anything, and what to do next."""

    next: Next
    reason: str
    code: str


def expected_identity(record: FileRecord) -> FileIdentity | FileStat:
    """What the claimed file must still be: the full identity (without the device on a journal
    several hosts share), or (rows from before schema version 5, without ctime) size, mtime and inode."""
    if record.ctime_ns is None:
        return FileStat(record.size, record.mtime_ns, record.inode)
    return FileIdentity(record.device, record.inode, record.size, record.mtime_ns, record.ctime_ns)


def open_claimed(record: FileRecord, watch: WatchConfig, own_opens: OwnOpens | None) -> OpenedSource | Refusal:
    """Open the claimed file beneath its watch root as readiness saw it, or say why not."""
    opened = open_source(watch.path, record.relpath, expect=expected_identity(record), own_opens=own_opens)
    if isinstance(opened, OpenedSource):
        return opened
    return _refusal(opened, watch.path)


def _refusal(refused: OpenRefused, root: Path) -> Refusal:
    if refused.kind is ProblemKind.VANISHED:
        if not os.path.isdir(root):
            # The root itself (unmounted, deleted): its files may come back as they were.
            return Refusal(Next.RETRY, f"the watched folder {root} is not there", "watch_root_missing")
        return Refusal(Next.GONE, refused.detail, str(refused.kind))
    if refused.kind is ProblemKind.CHANGED:
        return Refusal(Next.BACK_TO_READINESS, refused.detail, str(refused.kind))
    if refused.kind in FINAL_PROBLEMS:
        return Refusal(Next.PARK, refused.detail, str(refused.kind))
    return Refusal(Next.RETRY, str(refused), str(refused.kind))


# -------------------------------------------------------------------- its Box path


def claim_box_path(claim: ClaimedFile, watch: WatchConfig) -> tuple[str, ...] | Refusal:
    """The Box path (sub-folders, then the file name) the claimed file takes, owned in its watch.

    Without ``mirror_subfolders`` the path is the file name alone, and two
    files of one name in different local folders clash in the watch's folder.
    """
    relpath = claim.record.relpath
    local = relpath if watch.mirror_subfolders else relpath.rsplit("/", 1)[-1]
    mapped = box_path(local, watch.invalid_names)
    if isinstance(mapped, NameRefused):
        return Refusal(Next.PARK, mapped.reason, "item_name_invalid")
    wanted = tuple(name.name for name in mapped)
    base_key = box_path_key(mapped)
    owned = claim.owned_box_path()
    if owned is not None and owned.base_key == base_key:
        return tuple(owned.box_path.split("/"))  # kept across attempts and versions
    for n in range(MAX_COLLISION_RENAMES + 1):
        names = wanted if n == 0 else (*wanted[:-1], collision_name(wanted[-1], n))
        clash = claim.take_box_path(base_key, box_path_key(names), "/".join(names))
        if clash is None:
            return names
        if clash.folder is not None:
            folder = "/".join(wanted[: clash.folder.count("/") + 1])
            return Refusal(Next.PARK, f"its Box folder {folder} collides with {display_path(clash.other_relpath)} "
                           "in Box (Box names ignore case and Unicode normalisation)", NAME_COLLISION)
        if watch.name_collisions != "rename":
            return Refusal(Next.PARK, f"collides with {display_path(clash.other_relpath)} in Box (both would be "
                           f"{clash.other_box_path}: Box names ignore case and Unicode normalisation)",
                           NAME_COLLISION)
    return Refusal(Next.PARK, f"collides with other files in Box under {MAX_COLLISION_RENAMES} renamed names too",
                   NAME_COLLISION)


# ------------------------------------------------------------------------ the guard


class UploadGuard:
    """A writer seen while the claimed file is uploaded cancels the upload at once.

    Use as a context manager around the upload (and whatever must still be the
    hashed file, such as an after-upload action): the lease and the write-event
    registration are released on exit. ``refusal`` is set when a writer already
    had the file open (back to readiness). ``cancel`` is the event to give the
    uploader: set by ``stopping`` (shutdown) or by a writer; ``changed`` tells
    which. ``evidence`` says what the guarantee rests on (for the log).
    """

    def __init__(self, source: OpenedSource, watch: str, *, leases: LeaseMonitor | None,
                 intake: Intake | None, stopping: threading.Event | None) -> None:
        self.source = source
        self.changed = threading.Event()
        self.cancel = AnyEvent(stopping)
        self.lease: HeldLease | None = None
        self.refusal: Refusal | None = None
        self.evidence = "quiet time only (no lease monitor)"
        self.change_reason: str | None = None
        self._watch = watch
        self._leases = leases
        self._intake = intake
        self._stack = ExitStack()

    def __enter__(self) -> UploadGuard:
        if self._intake is not None:
            self._stack.enter_context(self._intake.guard_upload(
                self._watch, self.source.relpath, lambda: self._writer("it was written to during the upload")))
        if self._leases is not None:
            held = self._leases.hold(self.source.fileno(), lambda: self._writer(
                "a process opened it for writing during the upload (lease broken)"), label=self.source.label)
            if isinstance(held, WriterObservation):
                self.evidence = held.detail
                if held.writer_seen:
                    self.refusal = Refusal(Next.BACK_TO_READINESS, f"changed since it was found ready: {held.detail}",
                                           "writer_seen")
            else:
                self.lease = held
                self._stack.callback(held.release)
                self.evidence = "read lease held (a writer's open breaks it)"
        return self

    def _writer(self, reason: str) -> None:
        if self.change_reason is None:
            self.change_reason = reason
        self.changed.set()
        self.cancel.set()
        self.source.interrupt(reason)

    def __exit__(self, *exc_info: object) -> None:
        self._stack.close()
