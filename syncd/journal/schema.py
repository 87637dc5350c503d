"""The journal's tables and indexes, as an ordered list of migrations.

Never edit a migration that has shipped: journals in the field were built by it.
Append a new one instead, and add a test that opens a journal of the old version.

Partial indexes (`WHERE state = 'pending'`) only serve queries whose WHERE clause
spells the same literal, so the hot queries in `queries.py` inline state names
instead of binding them as parameters.
"""

from __future__ import annotations

from syncd.journal.migrations import Migration

# PRAGMA application_id: marks the SQLite file as a syncd journal ("sYnc"), so an
# unrelated database configured by mistake is refused instead of being migrated.
APPLICATION_ID = 0x73596E63

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        version=1,
        description="files and their append-only history",
        statements=(
            """
            CREATE TABLE files (
                -- AUTOINCREMENT: an id is never reused, so a worker still holding the id
                -- of a removed row can never touch another file that took its place.
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                watch TEXT NOT NULL,
                relpath TEXT NOT NULL,
                size INTEGER NOT NULL CHECK (size >= 0),
                mtime_ns INTEGER NOT NULL,
                inode INTEGER NOT NULL,  -- st_ino as signed 64-bit (two's complement)
                sha1 TEXT,
                state TEXT NOT NULL CHECK (state IN
                    ('pending', 'uploading', 'uploaded', 'failed', 'quarantined', 'skipped')),
                box_file_id TEXT,
                box_version_id TEXT,
                box_etag TEXT,
                attempts INTEGER NOT NULL DEFAULT 0,
                next_attempt_at REAL NOT NULL,
                last_error TEXT,
                last_error_code TEXT,
                detected_at REAL NOT NULL,
                ready_at REAL NOT NULL,
                updated_at REAL NOT NULL,
                uploaded_at REAL,
                claim_seq INTEGER NOT NULL DEFAULT 0,
                UNIQUE (watch, relpath)
            )
            """,
            # claim_next, general lane: due pending rows in (next_attempt_at, size, id) order.
            "CREATE INDEX files_pending_due ON files (next_attempt_at, size) WHERE state = 'pending'",
            # claim_next with max_size (small-files lane): the size range first, so that
            # an idle small lane costs nothing however many large files are waiting.
            "CREATE INDEX files_pending_small ON files (size, next_attempt_at) WHERE state = 'pending'",
            "CREATE INDEX files_pending_age ON files (ready_at) WHERE state = 'pending'",
            "CREATE INDEX files_state ON files (state)",
            "CREATE INDEX files_watch_state ON files (watch, state)",
            "CREATE INDEX files_failures ON files (updated_at) WHERE state IN ('failed', 'quarantined')",
            """
            CREATE TABLE history (
                id INTEGER PRIMARY KEY,
                ts REAL NOT NULL,
                file_id INTEGER NOT NULL,  -- no foreign key: history outlives removed rows
                watch TEXT NOT NULL,
                relpath TEXT NOT NULL,
                event TEXT NOT NULL,
                from_state TEXT,
                to_state TEXT,
                detail TEXT,
                attempt INTEGER NOT NULL DEFAULT 0
            )
            """,
            "CREATE INDEX history_watch ON history (watch, id)",
            "CREATE INDEX history_path ON history (watch, relpath, id)",
            "CREATE INDEX history_event ON history (event, ts)",
            "CREATE INDEX history_watch_event ON history (watch, event, ts)",
        ),
    ),
    Migration(
        version=2,
        description="chunked upload sessions and their acknowledged parts, for resume",
        statements=(
            """
            CREATE TABLE upload_sessions (
                file_id INTEGER PRIMARY KEY REFERENCES files (id) ON DELETE CASCADE,
                session_id TEXT NOT NULL,
                part_size INTEGER NOT NULL CHECK (part_size > 0),
                total_parts INTEGER NOT NULL CHECK (total_parts > 0),
                file_size INTEGER NOT NULL CHECK (file_size >= 0),
                sha1 TEXT,
                expires_at REAL NOT NULL,
                created_at REAL NOT NULL
            )
            """,
            """
            CREATE TABLE session_parts (
                file_id INTEGER NOT NULL REFERENCES upload_sessions (file_id) ON DELETE CASCADE,
                part_offset INTEGER NOT NULL CHECK (part_offset >= 0),
                part_id TEXT NOT NULL,
                size INTEGER NOT NULL CHECK (size > 0),
                sha1 TEXT NOT NULL,
                PRIMARY KEY (file_id, part_offset)
            ) WITHOUT ROWID
            """,
        ),
    ),
    Migration(
        version=3,
        description="the upload session's URL, which Box may place on another host than the upload base",
        statements=("ALTER TABLE upload_sessions ADD COLUMN endpoint TEXT",),
    ),
    Migration(
        version=4,
        description="Box sub-folder ids resolved by name, so a restart does not ask Box for them again",
        statements=(
            """
            CREATE TABLE box_folders (
                parent_id TEXT NOT NULL,
                -- Box names are unique case-insensitively within a parent: the key is the
                -- case-folded name, so "Scans" and "scans" resolve to the same folder.
                name_key TEXT NOT NULL,
                folder_id TEXT NOT NULL,
                resolved_at REAL NOT NULL,
                PRIMARY KEY (parent_id, name_key)
            ) WITHOUT ROWID
            """,
            # Forgetting a folder deleted on Box finds its own entry by id (its children
            # by parent_id, which the primary key serves).
            "CREATE INDEX box_folders_folder ON box_folders (folder_id)",
        ),
    ),
    Migration(
        version=5,
        description="names that are not UTF-8 (raw bytes), device and ctime in a file's identity, "
                    "and the Box path each file owns",
        statements=(
            # relpath (files and history) is TEXT when the name is valid UTF-8 and a BLOB of the
            # raw bytes otherwise (syncd.journal.relpaths): the column's TEXT affinity keeps BLOBs
            # as they are, so no rebuild is needed and older rows (always UTF-8) stay as they were.
            # device and ctime_ns complete a file's identity (syncd.pipeline.identity); NULL in
            # rows written before them, which are then compared on size, mtime and inode only.
            "ALTER TABLE files ADD COLUMN device INTEGER",
            "ALTER TABLE files ADD COLUMN ctime_ns INTEGER",
            """
            CREATE TABLE box_names (
                -- The Box path a file takes in its watch's folder, so that two local paths that
                -- are one name in Box (case, Unicode normalisation, sanitising) never become
                -- versions of each other. Freed with the row that owns it.
                file_id INTEGER PRIMARY KEY REFERENCES files (id) ON DELETE CASCADE,
                watch TEXT NOT NULL,
                path_key TEXT NOT NULL,  -- syncd.pipeline.names.box_path_key of the path taken
                base_key TEXT NOT NULL,  -- the key of the path wanted (differs once renamed)
                box_path TEXT NOT NULL,  -- the Box path taken, names joined with '/'
                UNIQUE (watch, path_key)
            )
            """,
        ),
    ),
)

# Issue 11's migration (number 6, after issue 10's 5): the steps after a commit and the journal's
# own upkeep. Self-contained: it only adds tables and indexes, so it applies on top of any earlier
# migration, and it takes the next number whatever precedes it.
MIGRATIONS += (
    Migration(
        version=len(MIGRATIONS) + 1,
        description="after-upload actions as journaled steps, a heartbeat row, indexes for retention",
        statements=(
            """
            CREATE TABLE post_actions (
                -- AUTOINCREMENT: a new upload of the file replaces its action with a new id, so
                -- the applier of the old one can never record an outcome for the new one.
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                file_id INTEGER NOT NULL UNIQUE REFERENCES files (id) ON DELETE CASCADE,
                action TEXT NOT NULL CHECK (action IN ('delete', 'move')),
                -- What Box holds (verified at commit) and the file it came from: the source is
                -- touched only while the bytes on disk are these (invariant 4).
                sha1 TEXT NOT NULL,
                size INTEGER NOT NULL,
                mtime_ns INTEGER NOT NULL,
                inode INTEGER NOT NULL,
                -- move: the archive path the template gave at upload time (file-system bytes),
                -- and the free name chosen next to it, recorded before the copy is put there.
                archive_path BLOB,
                archived_as BLOB,
                attempts INTEGER NOT NULL DEFAULT 0,
                next_attempt_at REAL NOT NULL,
                last_error TEXT,
                last_error_code TEXT,
                created_at REAL NOT NULL,
                updated_at REAL NOT NULL
            )
            """,
            "CREATE INDEX post_actions_due ON post_actions (next_attempt_at)",
            """
            CREATE TABLE journal_heartbeat (
                -- One row: the health probe rewrites it (a durable write) to prove the journal writable.
                id INTEGER PRIMARY KEY CHECK (id = 1),
                written_at REAL NOT NULL,
                pid INTEGER NOT NULL
            )
            """,
            # Retention: uploaded rows by age (those whose source is gone are forgotten) and
            # history by age, each walked in batches without scanning the table.
            "CREATE INDEX files_uploaded_age ON files (uploaded_at) WHERE state = 'uploaded'",
            "CREATE INDEX history_ts ON history (ts)",
        ),
    ),
)

# Issue 16's migration: claims carry a lease (docs/MULTI_HOST.md section 5). On SQLite the owner
# is always the one host and the clock the journal's, but the claim and fencing SQL is shared.
MIGRATIONS += (
    Migration(
        version=len(MIGRATIONS) + 1,
        description="claims carry a lease: the host holding each and when it lapses; after-upload "
                    "actions belong to the host that committed the upload",
        statements=(
            "ALTER TABLE files ADD COLUMN lease_owner TEXT",
            "ALTER TABLE files ADD COLUMN lease_expires_at REAL",
            "ALTER TABLE post_actions ADD COLUMN owner_host TEXT",
            # Takeover: the lapsed leases, oldest first, among the uploading rows only.
            "CREATE INDEX files_lease_expiry ON files (lease_expires_at) WHERE state = 'uploading'",
        ),
    ),
)

SCHEMA_VERSION = len(MIGRATIONS)
