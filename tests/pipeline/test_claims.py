"""Claim order against a real journal: uploads a crash interrupted go first, each once,
and only to a worker whose size lane takes them (the small-files worker never picks up
an interrupted multi-gigabyte upload)."""

from __future__ import annotations

from pathlib import Path

from syncd.journal import FileState, Journal
from syncd.pipeline.claims import ClaimQueue

SMALL_LANE = 50 * 1024 * 1024  # the small-files worker's max_size (box.direct_upload_max)
GiB = 1024 ** 3


def crash_while_uploading(path: Path, sizes: dict[str, int]) -> None:
    """Observe the files, claim every one, and close with no outcome: what a SIGKILL leaves."""
    with Journal.open(path) as journal:
        for inode, (relpath, size) in enumerate(sizes.items(), start=1):
            journal.observe("inbox", relpath, size, 1, inode, now=100.0)
        while journal.claim_next(now=200.0) is not None:
            pass


def test_interrupted_uploads_come_first_and_each_once(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    crash_while_uploading(path, {"a.bin": 10})
    with Journal.open(path) as journal:
        journal.observe("inbox", "new.txt", 5, 1, 99, now=300.0)
        claims = ClaimQueue(journal, clock=lambda: 400.0)
        [recovered] = claims.recover_interrupted()
        assert recovered.relpath == "a.bin" and claims.has_interrupted()

        first = claims.claim(None)
        assert first is not None and first.relpath == "a.bin" and claims.was_interrupted(first)
        assert first.state is FileState.UPLOADING  # still owned by the crash's claim, to be reconciled
        second = claims.claim(None)
        assert second is not None and second.relpath == "new.txt" and not claims.was_interrupted(second)
        assert claims.claim(None) is None
        assert not claims.has_interrupted()


def test_the_small_files_lane_leaves_an_interrupted_large_upload_to_the_general_lane(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    crash_while_uploading(path, {"huge.iso": 4 * GiB, "scan.pdf": 1000})  # huge.iso was claimed first
    with Journal.open(path) as journal:
        journal.observe("inbox", "fresh.txt", 10, 1, 99, now=300.0)
        claims = ClaimQueue(journal, clock=lambda: 400.0)
        assert [r.relpath for r in claims.recover_interrupted()] == ["huge.iso", "scan.pdf"]

        small = [claims.claim(SMALL_LANE) for _ in range(3)]
        assert [r.relpath if r else None for r in small] == ["scan.pdf", "fresh.txt", None]
        assert claims.was_interrupted(small[0]) and claims.has_interrupted()  # type: ignore[arg-type]

        large = claims.claim(None)
        assert large is not None and large.relpath == "huge.iso" and claims.was_interrupted(large)
        assert not claims.has_interrupted() and claims.claim(None) is None
