"""The journal: syncd's durable, crash-safe record of every file (SQLite, WAL; or PostgreSQL).

It knows its database only (no Box, no pipeline; of the config, the `journal:` value). How
the daemon uses it:

    journal = Journal.open(config.journal, role="daemon")  # a path: SQLite (JournalLocked if another
                                                           # daemon runs); a PostgresJournalConfig:
                                                           # PostgreSQL (docs/MULTI_HOST.md)
    for row in journal.recover_interrupted():          # left `uploading` by a crash (on PostgreSQL:
        ...                                            # this host's): reconcile with Box, then an outcome
    journal.take_over_expired(now)                     # others' lapsed leases (TakenOver): the same
    journal.renew_leases([(row.id, row.claim_seq)])    # the lease keeper: ids still held
    journal.give_back_leases()                         # clean stop: our claims lapse at once
    for known in journal.known_files(watch): ...       # start-up scan: compare disk with this
    journal.observe(watch, relpath, size, mtime_ns, inode, now, device=, ctime_ns=)   # a stable file
    journal.observe_many(watch, [ObservedFile(...), ...], now)   # each entry on its own: .refused
    journal.park_entries(watch, [ParkedEntry(...)], now)   # links, FIFOs...: quarantined with the reason
    journal.remove(watch, relpath, "deleted locally", keep=...)   # also remove_many, remove_below
    with journal.compare_with_disk(watch) as scan: ...   # a backstop scan against the rows, streamed

Relative paths are `str` everywhere (bytes that are not UTF-8 as surrogate escapes);
the journal stores them losslessly (`relpaths`: TEXT, or a BLOB of the raw bytes; bytea
on PostgreSQL).

    row = journal.claim_next(now, max_size=None)       # a worker owns `row` from here
    claim = journal.claimed(row)                       # its writes, each checked against the claim
    claim.take_box_path(base_key, path_key, box_path)   # own a Box name in the watch (or the clash)
    claim.record_sha1(sha1)
    claim.save_session(SessionRecord(...))             # chunked only: the session and each part
    claim.add_part(PartRecord(...))                    # Box acknowledged; claim.drop_session()
    claim.mark_uploaded(box_file_id, version_id, etag, sha1, now, post_action=PlannedPostAction(...))
    # or claim.schedule_retry / back_to_readiness / release / mark_failed / mark_quarantined / mark_skipped
    # (a stale claim whose upload committed anyway: claim.remember_commit(box_file_id, ...))

    for action in journal.due_post_actions(now):       # delete/move the source, journaled until done:
        journal.post_action_done(action, detail)       # or post_action_failed / post_action_given_up

    journal.prune_history(before)                      # retention, in batches
    journal.prune_uploaded(before, source_gone)        # rows of uploaded files whose source is gone
    JournalProbe.for_journal(journal).writable(now)    # health: a durable write (own connection / the pool)

    registration = HostRegistration.start(journal, version=..., watches=[WatchClaim(...)])  # PostgreSQL:
    registration.heartbeat(); registration.stop()      # syncd.journal.hosts, one process per host id
    journal.hosts(); journal.in_flight()               # who runs, who holds which upload, leases left

    journal.save_box_folder_id(parent_id, name_key, folder_id)   # Box sub-folder ids, so a restart
    journal.box_folder_id(parent_id, name_key)                   # need not ask Box for them again;
    journal.forget_box_folder(folder_id)                         # dropped (with all below) once gone

If the file changed (or was claimed again) since `row` was claimed, every write of
`claim` raises StaleClaim and records nothing: the upload is of old content.
`syncd status/history` open it with role="reader" (read-only, no lock) and
`syncd retry/forget` with role="operator" (writes beside a running daemon).

Modules: `backend` (the seam: `Backend`, `Tx`, `Dialect`, error kinds) with
`sqlite_backend` and `postgres_backend`, `sql_form` (the SQL written once, translated
per engine), `journal` (the Journal, made of `core`: opening, transactions, the
durability and threading notes; `file_states`: the file state machine;
`box_folder_ids`: the Box folder-id cache; `reports`: status and history
queries; `post_actions`: after-upload actions; `retention`: pruning),
`claimed_file` (a worker's writes under its claim, fenced), `leases` (the claims' lease SQL),
`hosts` (the hosts registry of a PostgreSQL journal; imported on its own), `probe` (health checks on
connections of their own), `schema` and
`schema_postgres` (tables, indexes, migrations of each engine), `records` (what comes out), `lock`
(single-writer lock).
"""

from syncd.journal.box_names import NAME_COLLISION, BoxPathClash, OwnedBoxPath
from syncd.journal.claimed_file import ClaimedFile
from syncd.journal.disk_comparison import DiskComparison
from syncd.journal.errors import (
    HostLockRefused,
    HostReplaced,
    InvalidTransition,
    JournalError,
    JournalLocked,
    JournalOutcomeUnknown,
    JournalSchemaTooNew,
    JournalUnavailable,
    StaleClaim,
    UnknownFile,
    WatchMismatch,
)
from syncd.journal.journal import Journal
from syncd.journal.probe import JournalProbe
from syncd.journal.records import (
    WAITING_FOR_READINESS,
    FileRecord,
    FileState,
    HistoryEntry,
    HistoryEvent,
    HostRecord,
    InFlight,
    KnownFile,
    Observation,
    ObservationKind,
    ObservedFile,
    ObserveBatch,
    ParkedEntry,
    PartRecord,
    RefusedEntry,
    PlannedPostAction,
    PostAction,
    PostActionKind,
    SessionRecord,
    TakenOver,
    WatchClaim,
)
from syncd.journal.schema import SCHEMA_VERSION
from syncd.journal.rows import ALLOWED_TRANSITIONS
from syncd.journal.backend import Role

__all__ = [
    "ALLOWED_TRANSITIONS",
    "NAME_COLLISION",
    "SCHEMA_VERSION",
    "WAITING_FOR_READINESS",
    "BoxPathClash",
    "ClaimedFile",
    "DiskComparison",
    "FileRecord",
    "FileState",
    "HistoryEntry",
    "HistoryEvent",
    "HostLockRefused",
    "HostRecord",
    "HostReplaced",
    "InFlight",
    "InvalidTransition",
    "Journal",
    "JournalError",
    "JournalLocked",
    "JournalOutcomeUnknown",
    "JournalSchemaTooNew",
    "JournalProbe",
    "JournalUnavailable",
    "KnownFile",
    "Observation",
    "ObservationKind",
    "ObserveBatch",
    "ObservedFile",
    "OwnedBoxPath",
    "ParkedEntry",
    "PartRecord",
    "RefusedEntry",
    "PlannedPostAction",
    "PostAction",
    "PostActionKind",
    "Role",
    "SessionRecord",
    "StaleClaim",
    "TakenOver",
    "UnknownFile",
    "WatchClaim",
    "WatchMismatch",
]
