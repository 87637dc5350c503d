"""The after-upload actions the journal holds are carried out by one thread, kept until done:
at start-up, when poked, at a backstop scan, and again at their retry time when they could
not be done (with the reason in the journal meanwhile). Real files, a real journal."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest

from syncd.config import Config, load_config
from syncd.journal import HistoryEvent, Journal, PlannedPostAction, PostActionKind
from syncd.pipeline.post_actions import PostActionRunner
from syncd.pipeline.writers import LeaseMonitor
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(60)


def config_for(tmp_path: Path, after_upload: str = "delete") -> Config:
    archive = "\n    archive_dir: ./archive\n    archive_template: \"{name}\"" if after_upload == "move" else ""
    path = tmp_path / "syncd.yaml"
    path.write_text(f"""\
box:
  api_url: http://127.0.0.1:9/2.0
  upload_url: http://127.0.0.1:9/api/2.0
  auth: {{type: developer_token, token: unused}}
journal: ./var/journal.db
retry: {{initial_backoff: 100ms, max_backoff: 200ms}}
watches:
  - path: ./inbox
    folder_id: "0"
    after_upload: {after_upload}{archive}
""")
    (tmp_path / "inbox").mkdir(exist_ok=True)
    return load_config(path)


def uploaded(journal: Journal, root: Path, relpath: str, data: bytes, planned: PlannedPostAction) -> int:
    path = root / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    st = path.stat()
    journal.observe("inbox", relpath, st.st_size, st.st_mtime_ns, st.st_ino, now=time.time())
    record = journal.claim_next(time.time() + 1)
    assert record is not None and record.relpath == relpath
    journal.claimed(record).mark_uploaded("F", "V", "1", hashlib.sha1(data).hexdigest(), time.time(),
                                          post_action=planned)
    return record.id


@pytest.fixture
def setup(tmp_path: Path):
    config = config_for(tmp_path)
    journal = Journal.open(config.journal)
    leases = LeaseMonitor()
    runner = PostActionRunner(config, journal, leases=leases)
    yield config, journal, runner
    runner.stop()
    leases.stop()
    journal.close()


def test_actions_left_by_a_crash_are_done_at_start(setup, tmp_path: Path) -> None:
    config, journal, runner = setup
    inbox = tmp_path / "inbox"
    for i in range(3):
        uploaded(journal, inbox, f"d/f{i}.txt", b"data %d" % i, PlannedPostAction(PostActionKind.DELETE))
    uploaded(journal, inbox, "gone.txt", b"gone", PlannedPostAction(PostActionKind.DELETE))
    (inbox / "gone.txt").unlink()  # someone (or a run that crashed right after) removed it
    uploaded(journal, inbox, "changed.txt", b"one", PlannedPostAction(PostActionKind.DELETE))
    (inbox / "changed.txt").write_bytes(b"other content")
    runner.start()
    wait_until(lambda: journal.post_actions_pending()[0] == 0)
    assert sorted(p.name for p in inbox.rglob("*") if p.is_file()) == ["changed.txt"]  # the changed one stays
    events = {e.relpath: e.event for e in journal.history(limit=100) if e.event.value.startswith("source_")}
    assert events == {"d/f0.txt": HistoryEvent.SOURCE_DELETED, "d/f1.txt": HistoryEvent.SOURCE_DELETED,
                      "d/f2.txt": HistoryEvent.SOURCE_DELETED, "gone.txt": HistoryEvent.SOURCE_DELETED,
                      "changed.txt": HistoryEvent.SOURCE_KEPT}


def test_an_action_that_cannot_be_done_now_waits_with_its_reason_and_then_is_done(setup, tmp_path: Path) -> None:
    config, journal, runner = setup
    inbox = tmp_path / "inbox"
    runner.start()
    with (inbox / "busy.txt").open("wb") as writer:
        writer.write(b"written")
        writer.flush()
        uploaded(journal, inbox, "busy.txt", b"written", PlannedPostAction(PostActionKind.DELETE))
        runner.poke()
        wait_until(lambda: journal.post_actions_pending()[1] and journal.post_actions_pending()[1][0].attempts >= 2)
        [waiting] = journal.post_actions_pending()[1]
        assert waiting.last_error_code == "writer" and "open for writing" in (waiting.last_error or "")
        assert (inbox / "busy.txt").exists()
    # The writer closed: the next retry (100-200 ms backoff here) finishes it, nothing else needed.
    wait_until(lambda: journal.post_actions_pending()[0] == 0)
    assert not (inbox / "busy.txt").exists()


def test_a_backstop_scan_takes_a_watchs_actions_whatever_their_retry_time(tmp_path: Path) -> None:
    config = config_for(tmp_path)
    with Journal.open(config.journal) as journal:
        runner = PostActionRunner(config, journal)
        file_id = uploaded(journal, tmp_path / "inbox", "a.txt", b"a", PlannedPostAction(PostActionKind.DELETE))
        [action] = journal.due_post_actions(None)
        journal.post_action_failed(action, "was read-only", "EROFS", next_attempt_at=time.time() + 3600)
        assert runner.run_pass() == 0  # not due
        assert runner.run_pass(everything_of={"other-watch"}) == 0
        assert runner.run_pass(everything_of={"inbox"}) == 1
        assert journal.post_actions_pending()[0] == 0 and journal.get(file_id) is not None
        assert not (tmp_path / "inbox/a.txt").exists()


def test_moves_into_the_archive_never_overwrite(tmp_path: Path) -> None:
    config = config_for(tmp_path, "move")
    archive = tmp_path / "archive"
    with Journal.open(config.journal) as journal:
        runner = PostActionRunner(config, journal)
        for relpath, data in (("a/report.pdf", b"A"), ("b/report.pdf", b"B")):
            uploaded(journal, tmp_path / "inbox", relpath, data,
                     PlannedPostAction(PostActionKind.MOVE, archive / "report.pdf"))
        assert runner.run_pass(everything_of={None}) == 2
        assert sorted((p.name, p.read_bytes()) for p in archive.iterdir()) == [
            ("report (1).pdf", b"B"), ("report.pdf", b"A")]
        details = [e.detail for e in journal.history(limit=10) if e.event is HistoryEvent.SOURCE_ARCHIVED]
        assert sorted(details) == [f"source archived as {archive / 'report (1).pdf'}",
                                   f"source archived as {archive / 'report.pdf'}"]
