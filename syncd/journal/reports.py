"""What the journal reports: rows, counts by state, the oldest pending file,
recent failures, uploads in flight, history, and the
stream of known files a start-up scan compares with the disk. Every figure
comes from an indexed query (`syncd.journal.queries`).
"""

from __future__ import annotations

from collections.abc import Iterator

from syncd.journal import queries
from syncd.journal.core import JournalCore
from syncd.journal.disk_comparison import DiskComparison
from syncd.journal.records import FileRecord, FileState, HistoryEntry, HostRecord, InFlight, KnownFile
from syncd.journal.relpaths import loaded_relpath
from syncd.journal.rows import fetch_file, fetch_path, file_record, history_entry
from syncd.journal.validation import check_limit, from_i64

_STATE_BY_NAME = {state.value: state for state in FileState}


class Reports(JournalCore):
    """Part of `Journal`: the read side (status, history, scans)."""

    def get(self, file_id: int) -> FileRecord | None:
        """The row with this id, or None."""
        with self._read() as conn:
            return fetch_file(conn, "id = ?", (file_id,))

    def find(self, watch: str, relpath: str) -> FileRecord | None:
        """The row of one file, or None."""
        with self._read() as conn:
            return fetch_path(conn, watch, relpath)

    def counts_by_state(self, watch: str | None = None) -> dict[FileState, int]:
        """How many files are in each state (every state present, zeros included)."""
        with self._read() as conn:
            if watch is None:
                rows = conn.execute(queries.COUNTS_BY_STATE).fetchall()
            else:
                rows = conn.execute(queries.COUNTS_BY_STATE_IN_WATCH, {"watch": watch}).fetchall()
        counts = dict.fromkeys(FileState, 0)
        counts.update({FileState(state): n for state, n in rows})
        return counts

    def oldest_pending(self, watch: str | None = None) -> FileRecord | None:
        """The pending file that has waited longest since it was ready (None if none)."""
        with self._read() as conn:
            if watch is None:
                found = conn.execute(queries.OLDEST_PENDING).fetchone()
            else:
                found = conn.execute(queries.OLDEST_PENDING_IN_WATCH, {"watch": watch}).fetchone()
        return None if found is None else file_record(found)

    def recent_failures(self, limit: int = 20) -> list[FileRecord]:
        """Failed and quarantined files, most recent first."""
        check_limit(limit)
        with self._read() as conn:
            return [file_record(r) for r in conn.execute(queries.RECENT_FAILURES, {"limit": limit})]

    def last_uploaded(self, watch: str | None = None) -> HistoryEntry | None:
        """The latest upload, from the history (it outlives rows of deleted sources)."""
        with self._read() as conn:
            if watch is None:
                found = conn.execute(queries.LAST_UPLOADED).fetchone()
            else:
                found = conn.execute(queries.LAST_UPLOADED_IN_WATCH, {"watch": watch}).fetchone()
        return None if found is None else history_entry(found)

    def last_arrival(self, watch: str) -> float | None:
        """When a new or changed file was last observed in `watch` (None if never)."""
        with self._read() as conn:
            times = [r[0] for r in conn.execute(queries.LAST_ARRIVAL, {"watch": watch}) if r[0] is not None]
        return max(times) if times else None

    def in_flight(self) -> list[InFlight]:
        """Uploading files with their chunked-upload progress, their holder and its lease's time left."""
        n = len(queries.FILE_COLUMNS)
        with self._read() as conn:
            rows = conn.execute(queries.IN_FLIGHT, {"db_now": self._now(None)}).fetchall()
        records = [(file_record(r[:n]), r) for r in rows]
        return [
            InFlight(
                file=record,
                session_id=r[n],
                total_parts=r[n + 1] or 0,
                parts_done=r[n + 2],
                bytes_done=r[n + 3],
                lease_owner=record.lease_owner,
                lease_expires_in=None if r[n + 4] is None else float(r[n + 4]),
            )
            for record, r in records
        ]

    def hosts(self) -> list[HostRecord]:
        """The hosts registered in a PostgreSQL journal (`syncd.journal.hosts`), by host id; `lost`
        when not stopped and silent for longer than the lease. [] on SQLite (one host, no registry)."""
        if not self.multi_host:
            return []
        with self._read() as conn:
            rows = conn.execute(queries.HOSTS, {"db_now": self._now(None)}).fetchall()
        return [
            HostRecord(host_id=host_id, hostname=hostname, pid=int(pid), version=version, state=state,
                       started_at=float(started_at), heartbeat_at=float(heartbeat_at), heartbeat_age_s=float(age),
                       detail=detail, in_flight=int(in_flight),
                       lost=state != "stopped" and float(age) > self.lease)
            for host_id, hostname, pid, version, state, started_at, heartbeat_at, age, detail, in_flight in rows
        ]

    def history(
        self, watch: str | None = None, relpath: str | None = None, limit: int = 100
    ) -> list[HistoryEntry]:
        """History entries, newest first: all, of one watch, or of one file."""
        check_limit(limit)
        if relpath is not None and watch is None:
            raise ValueError("history of a relpath needs its watch")
        with self._read() as conn:
            if watch is None:
                rows = conn.execute(queries.HISTORY_ALL, {"limit": limit})
            elif relpath is None:
                rows = conn.execute(queries.HISTORY_IN_WATCH, {"watch": watch, "limit": limit})
            else:
                rows = conn.execute(queries.HISTORY_OF_PATH,
                                    {"watch": watch, "relpath": conn.dialect.relpath_in(relpath), "limit": limit})
            return [history_entry(r) for r in rows]

    def compare_with_disk(self, watch: str) -> DiskComparison:
        """A comparison of one scan of `watch` with its rows, on its own connection, in bounded
        memory (see `syncd.journal.disk_comparison`); close it when done."""
        self._check_open()
        return DiskComparison(self._backend.scan_session(), watch)

    def known_files(self, watch: str) -> Iterator[KnownFile]:
        """Every file of `watch` as (relpath, size, mtime_ns, inode, state), one query.

        Streams from a separate read connection (a consistent snapshot), so a scan
        of 100,000 files neither holds the journal's lock nor builds a big list.
        """
        self._check_open()
        for relpath, size, mtime_ns, inode, state in self._backend.stream(queries.KNOWN_FILES, {"watch": watch},
                                                                           batch=2000):
            # A dict lookup, not FileState(state): this loop runs 100,000s of times.
            yield KnownFile(loaded_relpath(relpath), size, mtime_ns, from_i64(inode), _STATE_BY_NAME[state])
