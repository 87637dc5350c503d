"""The SQL of claims' leases (docs/MULTI_HOST.md section 5), written once for both engines.

A claim carries a lease: `lease_owner` (the host id holding it) and `lease_expires_at`
(the database's clock, `{db_now}`, plus the journal's lease). The claim, every write
through the claim (`ClaimedFile`, which also renews the lease), the lease keeper's batched
renewal and the takeover of lapsed leases set them here; `claim_seq` is the fence token
that every change of hands bumps (`syncd.journal.rows.claimed_row` checks both).
"""

from __future__ import annotations

from collections.abc import Mapping

from syncd.journal import queries
from syncd.journal.backend import Tx
from syncd.journal.records import FileRecord
from syncd.journal.rows import file_record

#: The row is this host's claim from now on, for a lease from now (claim, takeover, recovery).
HOLD = (
    "UPDATE files SET lease_owner = :me, lease_expires_at = {db_now} + :lease WHERE id = :id "
    f"RETURNING {queries.FILE_SELECT}"
)

#: The claim's lease renewed (the fence already checked claim_seq and owner under the row's lock).
RENEW_ONE = (
    "UPDATE files SET lease_expires_at = {db_now} + :lease WHERE id = :id AND state = 'uploading' "
    f"RETURNING {queries.FILE_SELECT}"
)

#: Uploading rows whose lease lapsed, oldest expiry first; another host's candidates are
#: skipped, not waited for. (id, the host whose lease lapsed, seconds since it did.)
EXPIRED = (
    "SELECT id, lease_owner, {db_now} - lease_expires_at FROM files "
    "WHERE state = 'uploading' AND lease_expires_at < {db_now} "
    "ORDER BY lease_expires_at, id LIMIT :limit {skip_locked}"
)

#: A clean stop: this host's claims lapse at once, so another host takes them over now.
GIVE_BACK = "UPDATE files SET lease_expires_at = 0 WHERE lease_owner = :me AND state = 'uploading'"


def renewal(count: int) -> str:
    """The batched renewal of `count` claims (named :id0, :seq0, ...): one statement, the ids
    still held by this host returned (a claim missing from the answer is lost)."""
    if count < 1:
        raise ValueError(f"a renewal needs at least one claim, not {count}")
    values = ", ".join(f"(:id{i}, :seq{i})" for i in range(count))
    return (
        "UPDATE files SET lease_expires_at = {db_now} + :lease "
        f"WHERE state = 'uploading' AND lease_owner = :me AND (id, claim_seq) IN (VALUES {values}) RETURNING id"
    )


def hold(conn: Tx, file_id: int, params: Mapping[str, object]) -> FileRecord:
    """Make `file_id` this host's claim with a fresh lease; the row as it is now."""
    return file_record(conn.execute(HOLD, {**params, "id": file_id}).fetchone())


def renew_one(conn: Tx, row: FileRecord, params: Mapping[str, object]) -> FileRecord:
    """Renew the lease of the (fenced, locked) `row` if it is uploading; the row as it is now."""
    found = conn.execute(RENEW_ONE, {**params, "id": row.id}).fetchone()
    return row if found is None else file_record(found)
