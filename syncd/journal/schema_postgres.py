"""The journal's tables in PostgreSQL, as PostgreSQL's own ordered list of migrations.

The DDL differs too much from SQLite's to share (types, identity columns, `WITHOUT
ROWID`), so each engine has its own append-only list; the DML is shared
(`syncd.journal.sql_form`). Version 1 here is the equivalent of SQLite's latest schema
(`syncd.journal.schema`, version 7) plus the
multi-host tables `hosts` and `host_watches`: the same tables, columns (names and nullability;
tests/journal checks it), unique keys and partial indexes with the same predicates.
Never edit a migration once a release shipped it; append one.

Type mapping (docs/MULTI_HOST.md section 2.4): INTEGER -> bigint; REAL -> double
precision ('Infinity' for a row waiting for readiness, as in SQLite); AUTOINCREMENT ->
an identity column (a sequence never reuses an id either); relative paths -> bytea
always, the raw bytes of every name, so one name has one stored form, UNIQUE (watch,
relpath) is bytewise and the order is memcmp like SQLite's BINARY collation; Box path
keys compared by range -> text COLLATE "C" (bytewise whatever the database's locale).

`syncd_meta` replaces SQLite's `application_id` and `user_version`: it names the
schema syncd's and says which versions may write it.
"""

from __future__ import annotations

from syncd.journal.migrations import Migration

#: The schema every syncd table lives in (`search_path` of every session).
SCHEMA = "syncd"
#: What `syncd_meta.application` holds: a schema without it is another program's.
APPLICATION = "syncd-journal"
#: Key of the advisory lock migrations run under (b'syncd-mg' as a big-endian int64): one for all hosts.
MIGRATION_LOCK_KEY = int.from_bytes(b"syncd-mg", "big")

META_TABLE = """
    CREATE TABLE syncd_meta (
        singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
        application text NOT NULL CHECK (application = 'syncd-journal'),
        schema_version integer NOT NULL,
        compatible_from integer NOT NULL,  -- the oldest schema version whose syncd may still write
        migrated_at double precision NOT NULL,
        migrated_by text NOT NULL          -- host id and syncd version
    )
"""

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        version=1,
        description="SQLite's schema 7: files (with their claims' leases) and history, sessions and parts, "
                    "Box folders and names, after-upload actions, the heartbeat row, indexes for retention; "
                    "and the hosts sharing the journal with their watches",
        statements=(
            """
            CREATE TABLE files (
                id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                watch text NOT NULL,
                relpath bytea NOT NULL,
                size bigint NOT NULL CHECK (size >= 0),
                mtime_ns bigint NOT NULL,
                inode bigint NOT NULL,  -- st_ino as signed 64-bit (two's complement)
                sha1 text,
                state text NOT NULL CHECK (state IN
                    ('pending', 'uploading', 'uploaded', 'failed', 'quarantined', 'skipped')),
                box_file_id text,
                box_version_id text,
                box_etag text,
                attempts bigint NOT NULL DEFAULT 0,
                next_attempt_at double precision NOT NULL,
                last_error text,
                last_error_code text,
                detected_at double precision NOT NULL,
                ready_at double precision NOT NULL,
                updated_at double precision NOT NULL,
                uploaded_at double precision,
                claim_seq bigint NOT NULL DEFAULT 0,
                device bigint,
                ctime_ns bigint,
                lease_owner text,                   -- host_id holding the claim while uploading
                lease_expires_at double precision,  -- PostgreSQL's clock + lease, at the claim and each renewal
                UNIQUE (watch, relpath)
            )
            """,
            "CREATE INDEX files_lease_expiry ON files (lease_expires_at) WHERE state = 'uploading'",
            "CREATE INDEX files_pending_due ON files (next_attempt_at, size) WHERE state = 'pending'",
            "CREATE INDEX files_pending_small ON files (size, next_attempt_at) WHERE state = 'pending'",
            "CREATE INDEX files_pending_age ON files (ready_at) WHERE state = 'pending'",
            "CREATE INDEX files_state ON files (state)",
            "CREATE INDEX files_watch_state ON files (watch, state)",
            "CREATE INDEX files_failures ON files (updated_at) WHERE state IN ('failed', 'quarantined')",
            "CREATE INDEX files_uploaded_age ON files (uploaded_at) WHERE state = 'uploaded'",
            """
            CREATE TABLE history (
                id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                ts double precision NOT NULL,
                file_id bigint NOT NULL,  -- no foreign key: history outlives removed rows
                watch text NOT NULL,
                relpath bytea NOT NULL,
                event text NOT NULL,
                from_state text,
                to_state text,
                detail text,
                attempt bigint NOT NULL DEFAULT 0
            )
            """,
            "CREATE INDEX history_watch ON history (watch, id)",
            "CREATE INDEX history_path ON history (watch, relpath, id)",
            "CREATE INDEX history_event ON history (event, ts)",
            "CREATE INDEX history_watch_event ON history (watch, event, ts)",
            "CREATE INDEX history_ts ON history (ts)",
            """
            CREATE TABLE upload_sessions (
                file_id bigint PRIMARY KEY REFERENCES files (id) ON DELETE CASCADE,
                session_id text NOT NULL,
                part_size bigint NOT NULL CHECK (part_size > 0),
                total_parts bigint NOT NULL CHECK (total_parts > 0),
                file_size bigint NOT NULL CHECK (file_size >= 0),
                sha1 text,
                expires_at double precision NOT NULL,
                created_at double precision NOT NULL,
                endpoint text
            )
            """,
            """
            CREATE TABLE session_parts (
                file_id bigint NOT NULL REFERENCES upload_sessions (file_id) ON DELETE CASCADE,
                part_offset bigint NOT NULL CHECK (part_offset >= 0),
                part_id text NOT NULL,
                size bigint NOT NULL CHECK (size > 0),
                sha1 text NOT NULL,
                PRIMARY KEY (file_id, part_offset)
            )
            """,
            """
            CREATE TABLE box_folders (
                parent_id text NOT NULL,
                name_key text NOT NULL,  -- the case-folded name: Box names are unique case-insensitively
                folder_id text NOT NULL,
                resolved_at double precision NOT NULL,
                PRIMARY KEY (parent_id, name_key)
            )
            """,
            "CREATE INDEX box_folders_folder ON box_folders (folder_id)",
            """
            CREATE TABLE box_names (
                file_id bigint PRIMARY KEY REFERENCES files (id) ON DELETE CASCADE,
                watch text NOT NULL,
                path_key text COLLATE "C" NOT NULL,  -- compared by range (a folder's keys): bytewise
                base_key text NOT NULL,
                box_path text NOT NULL,
                UNIQUE (watch, path_key)
            )
            """,
            """
            CREATE TABLE post_actions (
                id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                file_id bigint NOT NULL UNIQUE REFERENCES files (id) ON DELETE CASCADE,
                action text NOT NULL CHECK (action IN ('delete', 'move')),
                sha1 text NOT NULL,
                size bigint NOT NULL,
                mtime_ns bigint NOT NULL,
                inode bigint NOT NULL,
                archive_path bytea,
                archived_as bytea,
                attempts bigint NOT NULL DEFAULT 0,
                next_attempt_at double precision NOT NULL,
                last_error text,
                last_error_code text,
                created_at double precision NOT NULL,
                updated_at double precision NOT NULL,
                owner_host text  -- the host that committed the upload does it (others once it is gone)
            )
            """,
            "CREATE INDEX post_actions_due ON post_actions (next_attempt_at)",
            """
            CREATE TABLE journal_heartbeat (
                id bigint PRIMARY KEY CHECK (id = 1),
                written_at double precision NOT NULL,
                pid bigint NOT NULL
            )
            """,
            # The hosts sharing this journal (PostgreSQL only; docs/MULTI_HOST.md section 4).
            """
            CREATE TABLE hosts (
                host_id text PRIMARY KEY,
                instance uuid NOT NULL,              -- one per process start
                hostname text NOT NULL,
                pid integer NOT NULL,
                version text NOT NULL,               -- syncd.__version__
                schema_version integer NOT NULL,
                started_at double precision NOT NULL,
                heartbeat_at double precision NOT NULL,   -- PostgreSQL's clock
                state text NOT NULL CHECK (state IN ('running', 'degraded', 'stopping', 'stopped')),
                detail text                          -- why degraded
            )
            """,
            """
            CREATE TABLE host_watches (               -- the same watch name must mean the same Box folder
                watch text NOT NULL,
                host_id text NOT NULL REFERENCES hosts ON DELETE CASCADE,
                folder_id text NOT NULL,
                path_hint text NOT NULL,             -- the local path, for status only (mounts differ)
                PRIMARY KEY (watch, host_id)
            )
            """,
        ),
    ),
)

SCHEMA_VERSION = len(MIGRATIONS)
#: The oldest schema version whose syncd may write a database migrated to SCHEMA_VERSION:
#: additive migrations keep it, one that changes what existing columns mean raises it.
COMPATIBLE_FROM = 1
