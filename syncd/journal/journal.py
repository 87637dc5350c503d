"""The Journal: syncd's durable record of every file, in one SQLite file (WAL mode).

One class made of its parts, each a module: `core` (opening, the daemon lock,
transactions; the durability and threading notes), `file_states` (the file
state machine), `box_folder_ids` (the Box folder-id cache), `reports` (status
and history queries).
"""

from __future__ import annotations

from syncd.journal.box_folder_ids import BoxFolderIds
from syncd.journal.file_states import FileStates
from syncd.journal.reports import Reports


class Journal(FileStates, BoxFolderIds, Reports):
    """The journal of one syncd instance. Create with `Journal.open(...)`; close when done.

    Times are Unix epoch seconds. Methods that take `now` use it for every timestamp
    they write; where it is optional, the journal's clock supplies it. Outcome methods
    accept `claim_seq` (from the claimed FileRecord): if given and the row was claimed
    again or changed since, they raise StaleClaim and record nothing.
    """
