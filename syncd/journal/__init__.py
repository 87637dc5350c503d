"""The journal: syncd's durable, crash-safe record of every file (SQLite, WAL).

It knows SQLite only (no Box, no pipeline, no config). Entry point:

    journal = Journal.open(path, role="daemon")   # or "reader" / "operator"

See `syncd.journal.store` for durability and threading, `schema` for the tables,
`records` for what comes out.
"""

from syncd.journal.errors import InvalidTransition, JournalError, JournalLocked, StaleClaim, UnknownFile
from syncd.journal.records import (
    FileRecord,
    FileState,
    HistoryEntry,
    HistoryEvent,
    InFlight,
    KnownFile,
    Observation,
    ObservationKind,
    PartRecord,
    SessionRecord,
)
from syncd.journal.schema import SCHEMA_VERSION
from syncd.journal.rows import ALLOWED_TRANSITIONS
from syncd.journal.sqlite_file import Role
from syncd.journal.store import Journal

__all__ = [
    "ALLOWED_TRANSITIONS",
    "SCHEMA_VERSION",
    "FileRecord",
    "FileState",
    "HistoryEntry",
    "HistoryEvent",
    "InFlight",
    "InvalidTransition",
    "Journal",
    "JournalError",
    "JournalLocked",
    "KnownFile",
    "Observation",
    "ObservationKind",
    "PartRecord",
    "Role",
    "SessionRecord",
    "StaleClaim",
    "UnknownFile",
]
