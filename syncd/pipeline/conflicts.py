"""Conflict policies: what to do when Box already has an item with the file's name.

Shared by the daemon's ingest and by `syncd push`, so both behave the same:

- ``version``: upload a new version of the existing file (a folder in the way fails);
- ``skip``: leave Box alone, report the file as skipped;
- ``rename``: try ``name (1).ext``, ``name (2).ext``... in that order, so a retry
  after a crash meets its own earlier upload (same SHA-1) instead of making another;
- ``fail``: report the conflict.

A conflicting file holding our own bytes is never a conflict: the upload layer
treats it as our earlier attempt and returns it. Nor is a file this one uploaded
before (`ours`: a superseded attempt of the same file that committed): it gets a
new version, whatever the policy, instead of being skipped or renamed around.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from syncd.box import BoxAPIError, Conflict, ErrorClass, UploadedFile

POLICIES = ("version", "skip", "rename", "fail")
#: How many alternative names `rename` tries before giving up.
MAX_RENAMES = 100

#: upload(name, existing_file_id) -> UploadedFile; raises BoxAPIError on a name conflict.
UploadFn = Callable[[str, "str | None"], UploadedFile]


@dataclass(frozen=True, slots=True)
class ConflictOutcome:
    """The upload did not happen because of a name conflict: skipped or failed, and why."""

    skipped: bool
    reason: str
    code: str | None = "item_name_in_use"


def candidate_names(name: str, policy: str) -> Iterator[str]:
    """The names to try in order: the name itself, then (for `rename`) numbered variants."""
    yield name
    if policy != "rename":
        return
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem:
        stem, ext = name, ""
    for n in range(1, MAX_RENAMES):
        yield f"{stem} ({n}).{ext}" if ext else f"{stem} ({n})"


def upload_with_policy(upload: UploadFn, name: str, policy: str, *, existing_file_id: str | None = None,
                       on_decision: Callable[[str, str], None] | None = None,
                       ours: Callable[[str], bool] | None = None) -> UploadedFile | ConflictOutcome:
    """Upload under `name` applying `policy` to name conflicts.

    `upload(name, existing_file_id)` performs one upload (new file when the id is
    None). With `existing_file_id` (a file we uploaded before) no conflict can
    arise. `on_decision(decision, reason)` is told when a conflict changes course.
    `ours(file_id)`: whether a conflicting file is one this file uploaded before
    (then it gets a new version, whatever the policy).
    """
    if policy not in POLICIES:
        raise ValueError(f"conflict policy must be one of {', '.join(POLICIES)}, not {policy!r}")
    if existing_file_id is not None:
        return upload(name, existing_file_id)
    for attempt in candidate_names(name, policy):
        try:
            return upload(attempt, None)
        except BoxAPIError as exc:
            if exc.error_class is not ErrorClass.NAME_CONFLICT:
                raise
            conflict = _conflicting_item(exc.conflicts)
            what = _describe(conflict, attempt)
            if conflict is not None and conflict.type == "file" and ours is not None and ours(conflict.id):
                if on_decision is not None:
                    on_decision("version", f"{what}, uploaded by an earlier attempt of this file")
                return upload(attempt, conflict.id)
            if policy == "rename":
                if on_decision is not None:
                    on_decision("rename", what)
                continue
            if policy == "version" and conflict is not None and conflict.type == "file":
                if on_decision is not None:
                    on_decision("version", what)
                return upload(attempt, conflict.id)
            if policy == "skip":
                return ConflictOutcome(True, what)
            return ConflictOutcome(False, f"{what}; conflict policy is {policy!r}", exc.code)
    return ConflictOutcome(False, f"no free name after {MAX_RENAMES} attempts")


def _conflicting_item(conflicts: list[Conflict]) -> Conflict | None:
    for conflict in conflicts:
        if conflict.type == "file":
            return conflict
    return conflicts[0] if conflicts else None


def _describe(conflict: Conflict | None, name: str) -> str:
    kind = "a folder" if conflict is not None and conflict.type == "folder" else "a file"
    ident = f" (id {conflict.id})" if conflict is not None else ""
    return f"Box already has {kind} named {name!r}{ident}"
