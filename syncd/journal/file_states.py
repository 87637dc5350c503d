"""The file state machine of the journal: files observed on disk, claimed by a
worker, and their outcomes (uploaded, retry, failed, quarantined, skipped),
with saved upload sessions; operator retries; recovery after a crash.

Every method is one transaction; those written on behalf of a worker or an
operator are durable (see `syncd.journal.core`). What a worker writes for the
file it claimed (hash, session, parts, outcome) goes through the handle
`claimed(record)` returns (`syncd.journal.claimed_file`), which checks the claim.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any

from syncd.journal import leases, queries
from syncd.journal.backend import Tx, entry_error, rerun_on_conflict
from syncd.journal.claimed_file import ClaimedFile
from syncd.journal.core import JournalCore
from syncd.journal.errors import JournalError
from syncd.journal.records import (
    FileRecord,
    FileState,
    HistoryEvent,
    Observation,
    ObservationKind,
    ObservedFile,
    ObserveBatch,
    ParkedEntry,
    PartRecord,
    RefusedEntry,
    SessionRecord,
    TakenOver,
)
from syncd.journal.relpaths import stored_relpath
from syncd.journal.rows import (
    append_history,
    delete_fetched,
    delete_row,
    describe_change,
    error_detail,
    fetch_files,
    fetch_path,
    file_record,
    require_file,
    same_identity,
    saved_session,
    transition,
)
from syncd.journal.validation import check_path, check_stat, to_i64

#: Entries per transaction of `observe_many` on a journal several hosts share (see there).
SHARED_OBSERVE_CHUNK = 64


def check_observed(watch: str, entry: ObservedFile) -> None:
    """Raise ValueError unless an observed file's values are sane and its path can be stored."""
    check_stat(watch, entry.relpath, entry.size, entry.mtime_ns, entry.inode)
    for name in ("device", "ctime_ns"):
        value = getattr(entry, name)
        if value is not None and (not isinstance(value, int) or not -(1 << 63) <= value < (1 << 64)):
            raise ValueError(f"{name} of {entry.relpath!r} must be a 64-bit int or None, not {value!r}")
    stored_relpath(entry.relpath)


def _relpath_of(raw: object) -> str:
    first = raw[0] if isinstance(raw, tuple) and raw else raw
    return first if isinstance(first, str) else repr(first)


def _known(identity: dict[str, Any]) -> dict[str, Any]:
    """The identity columns the caller knows (None: leave the row's value)."""
    return {name: value for name, value in identity.items() if value is not None}


class FileStates(JournalCore):
    """Part of `Journal`: the state of each file, from observed to uploaded or parked."""

    # ------------------------------------------------------------- observing

    @rerun_on_conflict
    def observe(
        self, watch: str, relpath: str, size: int, mtime_ns: int, inode: int, now: float, *,
        device: int | None = None, ctime_ns: int | None = None,
    ) -> Observation:
        """Record a stable file seen on disk; returns what happened.

        New file: a pending row. Known file whose identity changed (size, mtime_ns,
        inode, and device and ctime_ns when both the row and the caller have them):
        pending again (the Box file id is kept, so it goes up as a new version; any
        saved upload session is dropped; an upload in progress is invalidated). A row
        waiting for readiness (its file changed after it was found ready) becomes due.
        Unchanged: nothing is written. Raises ValueError for a bad entry.
        """
        entry = ObservedFile(relpath, size, mtime_ns, inode, device, ctime_ns)
        check_observed(watch, entry)
        with self._write(durable=False) as conn:
            return self._observe(conn, watch, entry, float(now))

    def observe_many(
        self, watch: str, files: Iterable[ObservedFile | tuple[str, int, int, int]], now: float
    ) -> ObserveBatch:
        """Observe many files in one transaction, each entry on its own.

        `files` holds `ObservedFile`s (or plain (relpath, size, mtime_ns, inode) tuples).
        For a start-up scan that finds thousands of new files: one commit instead of one
        per file. Each entry is written inside its own savepoint, so an entry the journal
        cannot take (a bad value, a name SQLite refuses) is refused alone, with the
        reason, and every other entry is recorded. Returns the observations of new and
        changed files (unchanged ones are not listed) and the refused entries. Each new
        file costs roughly 50-150 us (a row, its indexes and a history line), and the
        journal is locked for the whole call, so pass batches of a few hundred. On a journal
        several hosts share, the batch is written in transactions of `SHARED_OBSERVE_CHUNK`
        entries: another host observing the same files waits for one chunk's new rows, never
        for a whole scan's.
        """
        batch = ObserveBatch()
        valid: list[tuple[int, ObservedFile]] = []
        for raw in files:
            try:
                entry = ObservedFile(*raw)
                check_observed(watch, entry)
            except (TypeError, ValueError) as exc:
                batch.refused.append(RefusedEntry(_relpath_of(raw), str(exc)))
                continue
            valid.append((len(valid), entry))
        chunk = SHARED_OBSERVE_CHUNK if self.multi_host else max(1, len(valid))
        for start in range(0, len(valid), chunk):
            written = self._observe_entries(watch, valid[start:start + chunk], float(now))
            batch.observations.extend(o for o in written if isinstance(o, Observation))
            batch.refused.extend(r for r in written if isinstance(r, RefusedEntry))
        return batch

    @rerun_on_conflict
    def _observe_entries(self, watch: str, entries: list[tuple[int, ObservedFile]], now: float
                         ) -> list[Observation | RefusedEntry]:
        """`observe_many`'s transaction: each entry in its own savepoint; where rows are locked, in
        the order of their paths' bytes (two hosts scanning one folder cannot deadlock); the
        results in the caller's order (new and changed observations, and refusals)."""
        results: list[tuple[int, Observation | RefusedEntry]] = []
        with self._write(durable=False) as conn:
            if conn.dialect.row_locks:
                entries = sorted(entries, key=lambda item: conn.dialect.relpath_key(item[1].relpath))
            for position, entry in entries:
                try:
                    with conn.savepoint():
                        observation = self._observe(conn, watch, entry, now)
                except (JournalError, ValueError) as exc:
                    if not entry_error(exc):
                        raise
                    results.append((position, RefusedEntry(entry.relpath, f"{type(exc).__name__}: {exc}")))
                    continue
                if observation.kind is not ObservationKind.UNCHANGED:
                    results.append((position, observation))
        return [result for _, result in sorted(results, key=lambda item: item[0])]

    def _recorded_device(self, device: int | None) -> int | None:
        """The device number as this journal records it: none on a journal several hosts share,
        where each host mounts the shared folder with a device number of its own (the inode, the
        file server's file id, size and times mean the same on every host)."""
        return None if self.multi_host else device

    def _observe(self, conn: Tx, watch: str, entry: ObservedFile, now: float) -> Observation:
        relpath, size, mtime_ns, inode, device, ctime_ns = entry
        device = self._recorded_device(device)
        identity = {"size": size, "mtime_ns": mtime_ns, "inode": to_i64(inode),
                    "device": None if device is None else to_i64(device), "ctime_ns": ctime_ns}
        seen = fetch_path(conn, watch, relpath)
        if seen is not None and same_identity(seen, size, mtime_ns, inode, device, ctime_ns) and not (
                seen.waiting_for_readiness or (seen.device is None and device is not None)
                or (seen.ctime_ns is None and ctime_ns is not None)):
            # Unchanged, nothing to write: no row lock either (a scan sees mostly such files, and
            # another host's workers must not wait behind them).
            return Observation(ObservationKind.UNCHANGED, seen, seen.state)
        row = fetch_path(conn, watch, relpath, lock=True)
        if row is None:
            # Another host may insert the same new file at the same moment: the unique
            # (watch, relpath) decides, and the loser reads the winner's row (committed by then).
            inserted = conn.execute(
                "INSERT INTO files (watch, relpath, size, mtime_ns, inode, device, ctime_ns, state, attempts,"
                " next_attempt_at, detected_at, ready_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', 0,"
                f" ?, ?, ?, ?) ON CONFLICT (watch, relpath) DO NOTHING RETURNING {queries.FILE_SELECT}",
                (watch, conn.dialect.relpath_in(relpath), identity["size"], identity["mtime_ns"], identity["inode"],
                 identity["device"], identity["ctime_ns"], now, now, now, now),
            ).fetchone()
            if inserted is not None:
                created = file_record(inserted)
                append_history(conn, now, created, HistoryEvent.ARRIVED, None, FileState.PENDING, f"size {size}")
                return Observation(ObservationKind.NEW, created, None)
            row = fetch_path(conn, watch, relpath, lock=True)
            if row is None:  # inserted and removed again meanwhile: what we saw is new once more
                return self._observe(conn, watch, entry, now)
        if same_identity(row, size, mtime_ns, inode, device, ctime_ns):
            if row.waiting_for_readiness:
                settled = transition(conn, row, FileState.PENDING, HistoryEvent.SETTLED,
                                     "stable again after it changed; due now", now,
                                     {"next_attempt_at": now, "ready_at": now, "last_error": None,
                                      "last_error_code": None, **_known(identity)})
                return Observation(ObservationKind.CHANGED, settled, row.state)
            if (row.device is None and device is not None) or (row.ctime_ns is None and ctime_ns is not None):
                # A row from before schema version 5: complete its identity, quietly (nothing changed).
                conn.execute("UPDATE files SET device = ?, ctime_ns = ? WHERE id = ?",
                             (identity["device"], identity["ctime_ns"], row.id))
            return Observation(ObservationKind.UNCHANGED, row, row.state)
        changes = describe_change(row, size, mtime_ns, inode, device, ctime_ns)
        if row.state is FileState.UPLOADING:
            changes += "; changed during upload, that upload is discarded"
        conn.execute("DELETE FROM upload_sessions WHERE file_id = ?", (row.id,))
        updated = transition(
            conn,
            row,
            FileState.PENDING,
            HistoryEvent.CHANGED,
            changes,
            now,
            {
                **identity,
                "sha1": None,
                "attempts": 0,
                "next_attempt_at": now,
                "ready_at": now,
                "last_error": None,
                "last_error_code": None,
                # Invalidate any claim of the row: an upload under it is of the old content.
                "claim_seq": row.claim_seq + 1,
                "lease_owner": None,
                "lease_expires_at": None,
            },
        )
        return Observation(ObservationKind.CHANGED, updated, row.state)

    @rerun_on_conflict
    def park_entries(self, watch: str, entries: Iterable[ParkedEntry], now: float
                     ) -> tuple[list[FileRecord], list[RefusedEntry]]:
        """Keep entries that are not regular files (links, FIFOs, sockets...) as quarantined rows, with the reason.

        So that `syncd status` accounts for every entry of a drop folder. An entry
        already parked with the same identity and reason costs nothing; a row in another
        state is parked, except an `uploading` row (its worker finds out itself) and an
        `uploaded` one (what Box holds stays recorded, as for a deleted file). If the
        entry later becomes a regular file, `observe` sees another identity and makes it
        pending. Each entry in its own savepoint. Returns the rows parked now and the
        entries refused.
        """
        parked: list[FileRecord] = []
        refused: list[RefusedEntry] = []
        with self._write(durable=False) as conn:
            for entry in entries:
                try:
                    check_path(watch, entry.relpath)
                    with conn.savepoint():
                        row = self._park(conn, watch, entry, float(now))
                except (JournalError, ValueError) as exc:
                    if not entry_error(exc):
                        raise
                    refused.append(RefusedEntry(entry.relpath, f"{type(exc).__name__}: {exc}"))
                    continue
                if row is not None:
                    parked.append(row)
        return parked, refused

    def _park(self, conn: Tx, watch: str, entry: ParkedEntry, now: float) -> FileRecord | None:
        ident = entry.identity
        device = self._recorded_device(ident.device)
        identity = {"size": ident.size, "mtime_ns": ident.mtime_ns, "inode": to_i64(ident.inode),
                    "device": None if device is None else to_i64(device), "ctime_ns": ident.ctime_ns}
        row = fetch_path(conn, watch, entry.relpath, lock=True)
        if row is None:
            inserted = conn.execute(
                "INSERT INTO files (watch, relpath, size, mtime_ns, inode, device, ctime_ns, state, attempts,"
                " next_attempt_at, last_error, last_error_code, detected_at, ready_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, 'quarantined', 0, ?, ?, ?, ?, ?, ?)"
                f" ON CONFLICT (watch, relpath) DO NOTHING RETURNING {queries.FILE_SELECT}",
                (watch, conn.dialect.relpath_in(entry.relpath), identity["size"], identity["mtime_ns"],
                 identity["inode"], identity["device"], identity["ctime_ns"], now, entry.reason, entry.code,
                 now, now, now),
            ).fetchone()
            if inserted is not None:
                created = file_record(inserted)
                append_history(conn, now, created, HistoryEvent.QUARANTINED, None, FileState.QUARANTINED,
                               error_detail(entry.reason, entry.code))
                return created
            row = fetch_path(conn, watch, entry.relpath, lock=True)  # another host's, committed meanwhile
            if row is None:
                return self._park(conn, watch, entry, now)
        if row.state in (FileState.UPLOADING, FileState.UPLOADED):
            return None
        if (row.state is FileState.QUARANTINED and (row.last_error, row.last_error_code) == (entry.reason, entry.code)
                and same_identity(row, ident.size, ident.mtime_ns, ident.inode, device, ident.ctime_ns)):
            return None
        conn.execute("DELETE FROM upload_sessions WHERE file_id = ?", (row.id,))
        if row.state is not FileState.PENDING:
            # Parked rows leave through pending (the state machine), in the same transaction.
            row = transition(conn, row, FileState.PENDING, HistoryEvent.CHANGED, "is no longer a regular file", now, {})
        return transition(conn, row, FileState.QUARANTINED, HistoryEvent.QUARANTINED,
                          error_detail(entry.reason, entry.code), now,
                          {**identity, "sha1": None, "last_error": entry.reason, "last_error_code": entry.code})

    @rerun_on_conflict
    def remove(self, watch: str, relpath: str, reason: str, *, now: float | None = None,
               keep: Collection[FileState] = ()) -> FileRecord | None:
        """The file was deleted locally: forget its row (cancelling any pending work).

        Uploaded rows are forgotten too, so a new file later dropped under the same
        name is uploaded again (as a new version, by the conflict policy); the
        history keeps the story. A row whose state is in `keep` is left alone (decided
        inside the transaction, so a row claimed meanwhile is not pulled from its
        worker). Returns the removed row, or None if unknown or kept.
        """
        check_path(watch, relpath)
        with self._write(durable=False) as conn:
            row = fetch_path(conn, watch, relpath, lock=True)
            if row is None or row.state in keep:
                return None
            delete_fetched(conn, row, HistoryEvent.REMOVED, reason, self._now(now))
            return row

    @rerun_on_conflict
    def remove_many(self, watch: str, relpaths: Iterable[str], reason: str, *, now: float | None = None,
                    keep: Collection[FileState] = ()) -> list[FileRecord]:
        """`remove` for many files in one transaction (a scan found them gone). Returns the removed rows."""
        paths = list(relpaths)
        for relpath in paths:
            check_path(watch, relpath)
        removed: list[FileRecord] = []
        with self._write(durable=False) as conn:
            stamp = self._now(now)
            for relpath in paths:
                row = fetch_path(conn, watch, relpath, lock=True)
                if row is not None and row.state not in keep:
                    delete_fetched(conn, row, HistoryEvent.REMOVED, reason, stamp)
                    removed.append(row)
        return removed

    @rerun_on_conflict
    def remove_below(self, watch: str, folder: str, reason: str, *, now: float | None = None,
                     keep: Collection[FileState] = ()) -> list[FileRecord]:
        """A folder was deleted locally: remove the rows of every file below it (but those in `keep`).

        One range query per stored form of the paths (`relpaths.below_ranges`), not a
        pass over the watch. Returns the removed rows.
        """
        check_path(watch, folder)
        removed: list[FileRecord] = []
        with self._write(durable=False) as conn:
            stamp = self._now(now)
            for low, high in conn.dialect.below_ranges(folder + "/"):
                for row in fetch_files(conn, "watch = ? AND relpath >= ? AND relpath < ? ORDER BY relpath",
                                       (watch, low, high), lock=True):
                    if row.state not in keep:
                        delete_fetched(conn, row, HistoryEvent.REMOVED, reason, stamp)
                        removed.append(row)
        return removed

    @rerun_on_conflict
    def forget(self, watch: str, relpath: str, *, now: float | None = None) -> bool:
        """Operator command: drop a file's row whatever its state. True if there was one."""
        check_path(watch, relpath)
        with self._write(durable=True) as conn:
            removed = delete_row(conn, watch, relpath, HistoryEvent.FORGOTTEN, "forgotten by operator", self._now(now))
            return removed is not None

    # --------------------------------------------------------------- working

    @rerun_on_conflict
    def claim_next(self, now: float, *, max_size: int | None = None) -> FileRecord | None:
        """Atomically take the next due pending file and mark it uploading (attempts + 1), with this
        host's lease on it (`lease_owner`, `lease_expires_at` = the database's clock + the lease).

        Without `max_size` (general lane): oldest next_attempt_at first, then
        smallest, so nothing starves. With `max_size` (small-files lane): the
        smallest due file up to that many bytes, so small files keep flowing while
        large ones occupy the other workers.
        """
        if max_size is not None and max_size < 0:
            raise ValueError(f"max_size must be >= 0, not {max_size}")
        sql = queries.CLAIM_CANDIDATE if max_size is None else queries.CLAIM_CANDIDATE_MAX_SIZE
        params = {"now": float(now), "max_size": max_size}
        with self._serialised():
            # Look before taking the write lock: idle workers poll often. (The candidate is
            # locked with SKIP LOCKED on PostgreSQL: another host's claim is passed over.)
            with self._read() as conn:
                if conn.execute(sql, params).fetchone() is None:
                    return None
            with self._write(durable=True) as conn:
                found = conn.execute(sql + " {skip_locked}", params).fetchone()
                if found is None:
                    return None
                row = require_file(conn, found[0])
                claimed = transition(
                    conn,
                    row,
                    FileState.UPLOADING,
                    HistoryEvent.CLAIMED,
                    None,
                    float(now),
                    {"attempts": row.attempts + 1, "claim_seq": row.claim_seq + 1},
                    attempt=row.attempts + 1,
                )
                return leases.hold(conn, claimed.id, self._lease_params())

    def next_attempt_time(self, *, max_size: int | None = None, excluding: Collection[str] = ()) -> float | None:
        """When the earliest pending file becomes due (None if nothing is pending), leaving out the
        watches in `excluding` (those Box refuses: their files wait for it, not for their time)."""
        with self._read() as conn:
            if excluding:
                found = conn.execute(
                    f"{queries.NEXT_ATTEMPT} AND watch NOT IN ({', '.join('?' * len(excluding))})", tuple(excluding)
                ).fetchone()
            elif max_size is None:
                found = conn.execute(queries.NEXT_ATTEMPT).fetchone()
            else:
                found = conn.execute(queries.NEXT_ATTEMPT_MAX_SIZE, {"max_size": max_size}).fetchone()
        return None if found is None or found[0] is None else float(found[0])

    @rerun_on_conflict
    def defer_pending(self, watch: str, until: float) -> int:
        """Make the pending files of `watch` due no earlier than `until` (Box refuses the watch's
        folder until then at least): one statement, no history line, attempts untouched. Returns
        how many were pushed back."""
        if not watch:
            raise ValueError("watch must be a non-empty string")
        with self._write(durable=False) as conn:
            return conn.execute(
                "UPDATE files SET next_attempt_at = ? WHERE watch = ? AND state = 'pending' AND next_attempt_at < ?",
                (float(until), watch, float(until)),
            ).rowcount

    def claimed(self, record: FileRecord) -> ClaimedFile:
        """The journal writes of the worker holding `record`'s claim (from `claim_next` or
        `recover_interrupted`): hash, session, parts and outcome, each checked against the
        claim (StaleClaim if the file changed or was claimed again since)."""
        return ClaimedFile(self, record)

    def load_session(self, file_id: int) -> tuple[SessionRecord, list[PartRecord]] | None:
        """The saved session of a file and its parts in offset order, or None."""
        with self._read() as conn:
            return saved_session(conn, file_id)

    @rerun_on_conflict
    def recover_interrupted(self, *, now: float | None = None) -> list[FileRecord]:
        """At daemon start: the rows a crash left `uploading`, for reconciliation with Box.

        They stay `uploading` (owned by the reconciler, with their saved sessions):
        putting them back to pending would let a worker upload again a file that
        Box may already hold. The reconciler then calls mark_uploaded (found in Box
        with the same SHA-1), resumes the saved session, or schedule_retry. Each
        gets an `interrupted` history entry. Daemon role only.
        """
        if self.role != "daemon":
            raise JournalError("only the daemon may recover interrupted uploads", path=self.path)
        if self.multi_host:
            # Only our own rows (and those claimed before leases): the host lock proves our previous
            # process dead; other hosts' rows are theirs until their leases lapse (take_over_expired).
            where, params = "state = 'uploading' AND (lease_owner = ? OR lease_owner IS NULL) ORDER BY id", (
                self.host_id,)
        else:
            where, params = "state = 'uploading' ORDER BY id", ()
        with self._write(durable=True) as conn:
            stamp = self._now(now)
            recovered = []
            for row in fetch_files(conn, where, params, lock=True):
                interrupted = transition(
                    conn, row, FileState.UPLOADING, HistoryEvent.INTERRUPTED,
                    "daemon stopped during upload; to be reconciled with Box", stamp, {"claim_seq": row.claim_seq + 1},
                )
                recovered.append(leases.hold(conn, interrupted.id, self._lease_params()))
            return recovered

    @rerun_on_conflict
    def take_over_expired(self, now: float, *, limit: int = 8) -> list[TakenOver]:
        """Take over `uploading` rows whose lease lapsed (any holder's, this host's included), oldest
        expiry first, at most `limit`: each gets a new claim (`claim_seq` bumped, so the old holder's
        writes are refused from here), this host's lease and a `taken_over` history line. Rows
        another host is taking over at the same moment are skipped. Like `recover_interrupted`'s,
        the rows stay `uploading`: the new holder reconciles them with Box before sending anything.
        """
        if limit < 1:
            raise ValueError(f"limit must be >= 1, not {limit}")
        taken: list[TakenOver] = []
        with self._write(durable=True) as conn:
            stamp = self._now(now)
            params = self._lease_params()
            for file_id, from_host, expired_s in conn.execute(leases.EXPIRED, {**params, "limit": limit}).fetchall():
                row = require_file(conn, file_id)  # locked by the SELECT above
                detail = f"lease of {from_host or 'a host'} expired {float(expired_s):.0f} s ago; to be reconciled with Box"
                moved = transition(conn, row, FileState.UPLOADING, HistoryEvent.TAKEN_OVER, detail, stamp,
                                   {"claim_seq": row.claim_seq + 1})
                taken.append(TakenOver(leases.hold(conn, moved.id, params), from_host, float(expired_s)))
        return taken

    @rerun_on_conflict
    def renew_leases(self, claims: Iterable[tuple[int, int]]) -> set[int]:
        """Renew the leases of these claims ((file_id, claim_seq) pairs) in one durable statement;
        the file ids still held by this host (renewed). A claim missing from the answer is lost
        (taken over, changed, forgotten, ended). Raises JournalUnavailable when the database
        cannot be reached."""
        pairs = list(claims)
        if not pairs:
            return set()
        params = self._lease_params()
        for i, (file_id, claim_seq) in enumerate(pairs):
            params[f"id{i}"] = int(file_id)
            params[f"seq{i}"] = int(claim_seq)
        with self._write(durable=True) as conn:
            return {int(found[0]) for found in conn.execute(leases.renewal(len(pairs)), params).fetchall()}

    @rerun_on_conflict
    def give_back_leases(self) -> int:
        """At a clean stop (its workers stopped): this host's claims lapse at once, so that another
        host takes them over now instead of after the lease. Returns how many."""
        with self._write(durable=True) as conn:
            return conn.execute(leases.GIVE_BACK, {"me": self.host_id}).rowcount

    @rerun_on_conflict
    def retry(
        self,
        watch: str | None = None,
        relpath: str | None = None,
        failed_only: bool = True,
        *,
        now: float | None = None,
    ) -> int:
        """Operator command: make parked files pending again, due now, attempts reset.

        Takes failed rows (and quarantined and skipped ones if not `failed_only`),
        all of them, those of a watch, or one file. Returns how many.
        """
        if relpath is not None and watch is None:
            raise ValueError("retry of a relpath needs its watch")
        states = ("failed",) if failed_only else ("failed", "quarantined", "skipped")
        where = f"state IN ({', '.join('?' * len(states))})"
        params: list[Any] = list(states)
        if watch is not None:
            where += " AND watch = ?"
            params.append(watch)
        with self._write(durable=True) as conn:
            if relpath is not None:
                where += " AND relpath = ?"
                params.append(conn.dialect.relpath_in(relpath))
            stamp = self._now(now)
            rows = fetch_files(conn, where + " ORDER BY id", tuple(params), lock=True)
            for row in rows:
                transition(
                    conn, row, FileState.PENDING, HistoryEvent.RETRIED, "retry requested", stamp,
                    {"attempts": 0, "next_attempt_at": stamp, "claim_seq": row.claim_seq + 1,
                     "lease_owner": None, "lease_expires_at": None},
                )
            return len(rows)
