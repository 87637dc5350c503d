"""SQL of the journal's hot queries, named so tests can check their query plans.

These must stay fast on a 1,000,000-row journal; each is served by an index in
`schema.py` (tests/journal assert it with EXPLAIN QUERY PLAN). State names are
inlined (not bound) so that SQLite can match the partial indexes, and the hot ones
name their index (INDEXED BY): without ANALYZE statistics the planner prefers the
plain `files_state` index and then sorts every pending row; INDEXED BY also turns
a future schema change that makes the index unusable into an error, not a slowdown.
PostgreSQL receives them without INDEXED BY (`syncd.journal.sql_form`): its planner
chooses by statistics, and the same partial indexes exist there.
"""

from __future__ import annotations

FILE_COLUMNS = (
    "id",
    "watch",
    "relpath",
    "size",
    "mtime_ns",
    "inode",
    "sha1",
    "state",
    "box_file_id",
    "box_version_id",
    "box_etag",
    "attempts",
    "next_attempt_at",
    "last_error",
    "last_error_code",
    "detected_at",
    "ready_at",
    "updated_at",
    "uploaded_at",
    "claim_seq",
    "device",
    "ctime_ns",
    "lease_owner",
    "lease_expires_at",
)
FILE_SELECT = ", ".join(FILE_COLUMNS)

HISTORY_COLUMNS = (
    "id",
    "ts",
    "file_id",
    "watch",
    "relpath",
    "event",
    "from_state",
    "to_state",
    "detail",
    "attempt",
)
HISTORY_SELECT = ", ".join(HISTORY_COLUMNS)

# General lane: oldest-due first, and among rows due at the same instant smallest
# first, so nothing waits forever. Small-files lane (max_size): smallest due file
# first, from an index on size, so a burst of large files neither delays small ones
# nor makes the small lane's polling scan them; a small file passed over by this
# lane still reaches the front of the general lane's FIFO.
CLAIM_CANDIDATE = (
    "SELECT id FROM files INDEXED BY files_pending_due WHERE state = 'pending' AND next_attempt_at <= :now "
    "ORDER BY next_attempt_at, size, id LIMIT 1"
)
CLAIM_CANDIDATE_MAX_SIZE = (
    "SELECT id FROM files INDEXED BY files_pending_small WHERE state = 'pending' AND size <= :max_size "
    "AND next_attempt_at <= :now ORDER BY size, next_attempt_at, id LIMIT 1"
)
NEXT_ATTEMPT = "SELECT min(next_attempt_at) FROM files INDEXED BY files_pending_due WHERE state = 'pending'"
NEXT_ATTEMPT_MAX_SIZE = (
    "SELECT min(next_attempt_at) FROM files INDEXED BY files_pending_small "
    "WHERE state = 'pending' AND size <= :max_size"
)

COUNTS_BY_STATE = "SELECT state, count(*) FROM files GROUP BY state"
COUNTS_BY_STATE_IN_WATCH = "SELECT state, count(*) FROM files WHERE watch = :watch GROUP BY state"

OLDEST_PENDING = f"SELECT {FILE_SELECT} FROM files INDEXED BY files_pending_age WHERE state = 'pending' ORDER BY ready_at, id LIMIT 1"
OLDEST_PENDING_IN_WATCH = (
    f"SELECT {FILE_SELECT} FROM files INDEXED BY files_pending_age WHERE state = 'pending' AND watch = :watch "
    "ORDER BY ready_at, id LIMIT 1"
)

RECENT_FAILURES = (
    f"SELECT {FILE_SELECT} FROM files INDEXED BY files_failures WHERE state IN ('failed', 'quarantined') "
    "ORDER BY updated_at DESC LIMIT :limit"
)

LAST_UPLOADED = (
    f"SELECT {HISTORY_SELECT} FROM history WHERE event = 'uploaded' ORDER BY ts DESC, id DESC LIMIT 1"
)
LAST_UPLOADED_IN_WATCH = (
    f"SELECT {HISTORY_SELECT} FROM history WHERE watch = :watch AND event = 'uploaded' "
    "ORDER BY ts DESC LIMIT 1"
)
LAST_ARRIVAL = (
    "SELECT max(ts) FROM history WHERE watch = :watch AND event = 'arrived' "
    "UNION ALL SELECT max(ts) FROM history WHERE watch = :watch AND event = 'changed'"
)

HISTORY_ALL = f"SELECT {HISTORY_SELECT} FROM history ORDER BY id DESC LIMIT :limit"
HISTORY_IN_WATCH = f"SELECT {HISTORY_SELECT} FROM history WHERE watch = :watch ORDER BY id DESC LIMIT :limit"
HISTORY_OF_PATH = (
    f"SELECT {HISTORY_SELECT} FROM history WHERE watch = :watch AND relpath = :relpath "
    "ORDER BY id DESC LIMIT :limit"
)

IN_FLIGHT = (
    f"SELECT {', '.join('f.' + c for c in FILE_COLUMNS)}, s.session_id, s.total_parts, "
    "(SELECT count(*) FROM session_parts p WHERE p.file_id = f.id), "
    # CAST: PostgreSQL's sum(bigint) is a numeric (a Decimal in Python).
    "(SELECT CAST(coalesce(sum(p.size), 0) AS BIGINT) FROM session_parts p WHERE p.file_id = f.id), "
    # Seconds the lease has left, by the database's clock (negative: lapsed).
    "f.lease_expires_at - {db_now} "
    "FROM files f LEFT JOIN upload_sessions s ON s.file_id = f.id "
    "WHERE f.state = 'uploading' ORDER BY f.updated_at, f.id"
)

# The hosts sharing a PostgreSQL journal, with their heartbeat's age by the database's clock and
# the uploads whose claim each holds (derived, never stored).
HOSTS = (
    "SELECT h.host_id, h.hostname, h.pid, h.version, h.state, h.started_at, h.heartbeat_at, "
    "{db_now} - h.heartbeat_at, h.detail, "
    "(SELECT count(*) FROM files f WHERE f.state = 'uploading' AND f.lease_owner = h.host_id) "
    "FROM hosts h ORDER BY h.host_id"
)

KNOWN_FILES = "SELECT relpath, size, mtime_ns, inode, state FROM files WHERE watch = :watch"
