"""The Journal: syncd's durable record of every file, in one SQLite file (WAL mode).

One class made of its parts, each a module: `core` (opening, the daemon lock,
transactions; the durability and threading notes), `file_states` (the file
state machine), `post_actions` (after-upload actions still to be done),
`box_folder_ids` (the Box folder-id cache), `reports` (status and history
queries), `retention` (pruning history and forgotten files).
"""

from __future__ import annotations

from syncd.journal.box_folder_ids import BoxFolderIds
from syncd.journal.file_states import FileStates
from syncd.journal.post_actions import PostActions
from syncd.journal.reports import Reports
from syncd.journal.retention import Retention


class Journal(FileStates, PostActions, BoxFolderIds, Reports, Retention):
    """The journal of one syncd instance. Create with `Journal.open(...)`; close when done.

    Times are Unix epoch seconds. Methods that take `now` use it for every timestamp
    they write; where it is optional, the journal's clock supplies it. A worker writes
    for the file it claimed through `claimed(record)` (a `ClaimedFile`): if the row was
    claimed again or changed since, each write raises StaleClaim and records nothing.
    """
