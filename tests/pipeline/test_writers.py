"""Writers seen by the kernel: read leases with real child processes, and the open/close counter."""

from __future__ import annotations

import fcntl
import os
import signal
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncd.pipeline.source import OpenRefused, open_source
from syncd.pipeline.writers import (
    F_GETLEASE,
    LEASE_BREAK_SIGNAL,
    HeldLease,
    LeaseMonitor,
    OpenCounter,
    WriterDetector,
    WriterEvidence,
    WriterLook,
    WriterObservation,
    WriterState,
    filesystem_name,
    probe_writer,
)
from tests.support.holders import FileHolder

F_GETSIG = 11


@pytest.fixture
def data_file(tmp_path: Path) -> Path:
    path = tmp_path / "report.pdf"
    path.write_bytes(b"%PDF- half written")
    return path


def probe(path: Path) -> WriterObservation:
    fd = os.open(path, os.O_RDONLY)
    try:
        return probe_writer(fd)
    finally:
        os.close(fd)


# --------------------------------------------------------------------- leases


def test_a_process_holding_the_file_open_for_writing_is_seen(data_file: Path) -> None:
    assert probe(data_file).state is WriterState.NO_WRITER
    with FileHolder(data_file, "a") as writer:  # opened for writing, nothing written
        seen = probe(data_file)
        assert (seen.state, seen.evidence) == (WriterState.WRITER, WriterEvidence.LEASE)
        assert seen.writer_seen and seen.authoritative
        writer.release()
    after = probe(data_file)
    assert after.state is WriterState.NO_WRITER and after.authoritative and not after.writer_seen


def test_a_reader_is_not_a_writer(data_file: Path) -> None:
    with FileHolder(data_file, "r"):  # tail -f, a virus scanner, a backup
        assert probe(data_file).state is WriterState.NO_WRITER


def test_a_writable_mapping_outliving_its_descriptor_is_a_writer(data_file: Path) -> None:
    with FileHolder(data_file, "mmap"):
        assert probe(data_file).state is WriterState.WRITER


def test_the_probe_leaves_no_lease_behind(data_file: Path) -> None:
    fd = os.open(data_file, os.O_RDONLY)
    try:
        probe_writer(fd)
        assert fcntl.fcntl(fd, F_GETLEASE) == fcntl.F_UNLCK
    finally:
        os.close(fd)
    with FileHolder(data_file, "a", start_open=False) as writer:
        writer.open_now()
        writer.wait_opened()  # not held up: the probe released its lease at once


def test_a_held_lease_breaks_with_a_signal_whose_default_is_to_ignore_it(data_file: Path) -> None:
    monitor = LeaseMonitor()
    fd = os.open(data_file, os.O_RDONLY)
    try:
        lease = monitor.hold(fd, lambda: None)
        assert isinstance(lease, HeldLease)
        # Same open file description as the monitor's descriptor: same lease, same signal.
        assert fcntl.fcntl(fd, F_GETLEASE) == fcntl.F_RDLCK
        assert fcntl.fcntl(fd, F_GETSIG) == LEASE_BREAK_SIGNAL == signal.SIGURG
        assert signal.getsignal(signal.SIGURG) == signal.SIG_DFL  # SIGURG's default action: ignore
        with FileHolder(data_file, "a"):  # the break sends SIGURG to this process, which carries on
            pass
        assert lease.broken
    finally:
        monitor.stop()
        os.close(fd)


def test_without_ownership_or_cap_lease_the_answer_is_unknown(data_file: Path) -> None:
    """A real process that is neither the file's owner nor holds CAP_LEASE (a forked child that
    dropped root) gets EACCES: the answer is "unknown", never "no writer"."""
    os.chmod(data_file, 0o644)
    fd = os.open(data_file, os.O_RDONLY)
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: give up root (and with it every capability), then ask
        try:
            os.close(reader)
            os.setgroups([])
            os.setresgid(65534, 65534, 65534)
            os.setresuid(65534, 65534, 65534)
            answer = probe_writer(fd)
            os.write(writer, f"{answer.state}|{answer.detail}".encode())
        finally:
            os._exit(0)
    os.close(writer)
    try:
        answer = os.read(reader, 1000).decode()
    finally:
        os.close(reader)
        os.close(fd)
        os.waitpid(pid, 0)
    state, detail = answer.split("|")
    assert state == WriterState.UNKNOWN and "CAP_LEASE" in detail


def test_local_file_systems_are_not_mistaken_for_network_ones(tmp_path: Path) -> None:
    for directory in (tmp_path, Path("/dev/shm")):
        fd = os.open(directory, os.O_RDONLY)
        try:
            assert filesystem_name(fd) is None
        finally:
            os.close(fd)


# -------------------------------------------------------------- held leases


@pytest.fixture
def monitor() -> LeaseMonitor:
    monitor = LeaseMonitor(interval=0.02)
    yield monitor
    monitor.stop()


def test_a_writer_opening_during_a_held_lease_cancels_the_job_and_is_not_held_up(
        data_file: Path, monitor: LeaseMonitor) -> None:
    cancelled = threading.Event()
    with open_source(data_file.parent, data_file.name) as source:
        lease = monitor.hold(source.fileno(), cancelled.set, label="report.pdf")
        assert isinstance(lease, HeldLease) and lease.active and monitor.held_count() == 1
        with FileHolder(data_file, "a", start_open=False) as writer:
            writer.open_now()
            # The kernel holds the writer's open() until the lease is released: lease-break-time is
            # 45 s, so a writer that gets through well before that was let through by the monitor.
            finished = threading.Thread(target=writer.wait_opened, daemon=True)
            finished.start()
            finished.join(timeout=30)
            assert not finished.is_alive(), "the writer's open() stayed blocked: the lease was not released"
            assert lease.broken  # marked before it was released, so before the writer's open() returned
            assert cancelled.wait(timeout=30), "the job's cancel hook was not called"
            assert not lease.active and monitor.held_count() == 0
        lease.release()  # idempotent after a break


def test_truncation_by_another_process_breaks_the_lease(data_file: Path, monitor: LeaseMonitor) -> None:
    cancelled = threading.Event()
    with open_source(data_file.parent, data_file.name) as source:
        lease = monitor.hold(source.fileno(), cancelled.set)
        assert isinstance(lease, HeldLease)
        with FileHolder(data_file, "truncate"):
            pass
        assert cancelled.wait(timeout=30) and lease.broken


def test_a_reader_opening_during_a_held_lease_changes_nothing(data_file: Path, monitor: LeaseMonitor) -> None:
    cancelled = threading.Event()
    with open_source(data_file.parent, data_file.name) as source:
        with monitor.hold(source.fileno(), cancelled.set) as lease:
            assert isinstance(lease, HeldLease)
            with FileHolder(data_file, "r"):
                pass
            # The kernel itself says the lease is intact after the reader came and went.
            assert fcntl.fcntl(source.fileno(), F_GETLEASE) == fcntl.F_RDLCK
            assert not lease.broken and lease.active and not cancelled.is_set()
        assert not lease.active and monitor.held_count() == 0
        with FileHolder(data_file, "a"):  # released: a writer now is none of our business
            pass
        assert not cancelled.is_set()


def test_holding_a_lease_on_a_file_open_for_writing_is_refused_as_a_writer(
        data_file: Path, monitor: LeaseMonitor) -> None:
    with FileHolder(data_file, "rw"), open_source(data_file.parent, data_file.name) as source:
        refused = monitor.hold(source.fileno(), lambda: None)
        assert isinstance(refused, WriterObservation) and refused.state is WriterState.WRITER
        assert monitor.held_count() == 0


def test_stop_releases_every_lease(data_file: Path) -> None:
    monitor = LeaseMonitor()
    with open_source(data_file.parent, data_file.name) as source:
        lease = monitor.hold(source.fileno(), lambda: None)
        assert isinstance(lease, HeldLease)
        monitor.stop()
        assert not lease.active
        with FileHolder(data_file, "a"):  # opens at once: nothing holds it up
            pass
        with pytest.raises(RuntimeError, match="stopped"):
            monitor.hold(source.fileno(), lambda: None)


# ------------------------------------------------------------ open counting


def test_counter_counts_other_processes_opens_until_they_close() -> None:
    counter = OpenCounter()
    counter.opened("a.txt")
    counter.opened("a.txt")  # two descriptors
    assert counter.others_open("a.txt") == 2 and counter.observation("a.txt").writer_seen
    counter.closed("a.txt", wrote=True)
    assert counter.others_open("a.txt") == 1
    counter.closed("a.txt", wrote=False)
    seen = counter.observation("a.txt")
    assert (seen.state, seen.evidence) == (WriterState.NONE_SEEN, WriterEvidence.OPEN_EVENTS)
    assert not seen.authoritative and counter.tracked_paths() == 0


def test_counter_discounts_syncds_own_open_and_close() -> None:
    counter = OpenCounter()
    ours = counter.expect_own_open("a.txt")
    assert counter.others_open("a.txt") == 0
    counter.opened("a.txt")  # our IN_OPEN
    counter.opened("a.txt")  # a writer's
    assert counter.others_open("a.txt") == 1
    counter.expect_own_close(ours)
    counter.closed("a.txt", wrote=False)  # ours
    assert counter.others_open("a.txt") == 1
    counter.closed("a.txt", wrote=True)  # the writer's
    assert counter.others_open("a.txt") == 0 and counter.tracked_paths() == 0
    counter.expect_own_close(ours)  # twice: nothing more to take back
    assert counter.tracked_paths() == 0


def test_a_foreign_open_and_close_while_ours_is_in_flight_do_not_drift() -> None:
    counter = OpenCounter()
    ours = counter.expect_own_open("a.txt")
    counter.opened("a.txt")  # a reader's, which reached the queue before ours
    counter.closed("a.txt", wrote=False)
    counter.opened("a.txt")  # ours
    assert counter.others_open("a.txt") == 0
    counter.expect_own_close(ours)
    counter.closed("a.txt", wrote=False)
    assert counter.tracked_paths() == 0


def test_failed_own_open_is_taken_back() -> None:
    counter = OpenCounter()
    counter.own_open_failed(counter.expect_own_open("a.txt"))
    counter.opened("a.txt")  # somebody else, later
    assert counter.others_open("a.txt") == 1


def test_own_descriptor_follows_a_rename_of_the_file_syncd_holds_open() -> None:
    counter = OpenCounter()
    ours = counter.expect_own_open("a.txt")
    counter.opened("a.txt")
    counter.moved("a.txt", "b.txt")
    counter.opened("b.txt")  # a writer, under the new name
    assert counter.others_open("b.txt") == 1 and counter.others_open("a.txt") == 0
    counter.expect_own_close(ours)
    counter.closed("b.txt", wrote=False)  # our close event comes under the new name
    counter.closed("b.txt", wrote=True)
    assert counter.tracked_paths() == 0


def test_reset_keeps_syncds_own_descriptors() -> None:
    counter = OpenCounter()
    ours = counter.expect_own_open("a.txt")
    counter.opened("a.txt")
    counter.reset()  # an overflow: the writers' opens are forgotten, ours is still open
    counter.opened("a.txt")  # a writer after the overflow
    assert counter.others_open("a.txt") == 1
    counter.expect_own_close(ours)
    counter.closed("a.txt", wrote=False)
    assert counter.others_open("a.txt") == 1


def test_closes_of_opens_made_before_counting_are_ignored() -> None:
    counter = OpenCounter()
    counter.closed("old.txt", wrote=True)
    assert counter.others_open("old.txt") == 0 and counter.tracked_paths() == 0


def test_renames_carry_counts_and_leaving_the_watch_drops_them() -> None:
    counter = OpenCounter()
    counter.opened(".report.pdf.swp")
    ours = counter.expect_own_open("dir/b")
    counter.opened("dir/a/x")
    counter.opened("dir/b")  # ours
    counter.opened("dir/b")  # another process's
    counter.opened("dirt")
    counter.moved(".report.pdf.swp", "report.pdf")  # an editor's atomic save: the writer is still there
    counter.moved("dir", "moved")
    assert counter.others_open("report.pdf") == 1 and counter.others_open(".report.pdf.swp") == 0
    assert counter.others_open("moved/a/x") == 1 and counter.others_open("moved/b") == 1
    assert counter.others_open("dirt") == 1  # a sibling sharing the prefix is not moved
    counter.removed("moved")  # moved out of the watch: their closes will never come
    assert counter.others_open("moved/a/x") == 0 and counter.tracked_paths() == 2
    counter.expect_own_close(ours)  # our descriptor left with the folder: nothing to discount
    assert counter.tracked_paths() == 2


def test_reset_forgets_and_suspend_answers_unknown() -> None:
    counter = OpenCounter()
    counter.opened("a.txt")
    counter.reset()
    assert counter.others_open("a.txt") == 0
    counter.suspend("the watch is polled")
    seen = counter.observation("a.txt")
    assert seen.state is WriterState.UNKNOWN and "polled" in seen.detail
    counter.reset()
    assert counter.observation("a.txt").state is WriterState.NONE_SEEN


@st.composite
def histories(draw: st.DrawFn) -> list[str]:
    """Interleavings of other processes' opens/closes, syncd's own, and delayed event delivery."""
    return draw(st.lists(st.sampled_from(["other_open", "other_close", "other_close_write", "own_open",
                                          "own_close", "deliver", "deliver"]), max_size=60))


@settings(max_examples=300, deadline=None)
@given(histories())
def test_counter_is_exact_whenever_every_event_has_arrived(history: list[str]) -> None:
    """Model: a kernel queue of events; syncd announces its own opens/closes before making them.
    Whenever the queue is empty, the counter equals the other processes' open descriptors."""
    counter = OpenCounter()
    queue: list[tuple[str, bool]] = []  # (event, wrote)
    others = 0
    own: list[object] = []  # tokens of syncd's open descriptors

    def drain() -> None:
        while queue:
            deliver_one()

    def deliver_one() -> None:
        event, wrote = queue.pop(0)
        if event == "open":
            counter.opened("f")
        else:
            counter.closed("f", wrote=wrote)

    for step in history:
        if step == "other_open":
            others += 1
            queue.append(("open", False))
        elif step in ("other_close", "other_close_write") and others:
            others -= 1
            queue.append(("close", step == "other_close_write"))
        elif step == "own_open":
            own.append(counter.expect_own_open("f"))
            queue.append(("open", False))
        elif step == "own_close" and own:
            counter.expect_own_close(own.pop(0))
            queue.append(("close", False))
        elif step == "deliver" and queue:
            deliver_one()
        if not queue:
            assert counter.others_open("f") == others
    drain()
    assert counter.others_open("f") == others
    if others == 0 and not own:
        assert counter.tracked_paths() == 0


# ------------------------------------------------------------------ together


def test_detector_prefers_the_lease_then_the_counter_then_quiet_time(data_file: Path) -> None:
    counter = OpenCounter()
    counter.opened(data_file.name)  # e.g. a reader the events saw
    root, name = data_file.parent, data_file.name
    with_lease = WriterDetector(open_counter=counter).look(root, name)
    assert isinstance(with_lease, WriterLook) and with_lease.identity.size == data_file.stat().st_size
    assert with_lease.writer.state is WriterState.NO_WRITER  # the lease knows the opener only reads
    without_lease = WriterDetector(leases=False, open_counter=counter).look(root, name)
    assert without_lease.writer.state is WriterState.WRITER
    assert without_lease.writer.evidence is WriterEvidence.OPEN_EVENTS and "leases are off" in without_lease.writer.detail
    nothing = WriterDetector(leases=False).look(root, name)
    assert nothing.writer.state is WriterState.UNKNOWN and "quiet time only" in nothing.writer.detail
    unopened = WriterDetector(open_counter=OpenCounter()).observe(None, name)
    assert unopened.state is WriterState.NONE_SEEN and "could not open" in unopened.detail
    assert isinstance(WriterDetector().look(root, "missing"), OpenRefused)


def test_the_count_is_read_before_syncds_own_open_so_it_cannot_hide_a_writer(data_file: Path) -> None:
    """Without a watcher, syncd's own IN_OPEN never comes back: asked after the open, the count
    would subtract syncd's descriptor from the writer's and see nobody."""
    counter = OpenCounter()
    counter.opened(data_file.name)  # a writer the events saw
    look = WriterDetector(leases=False, open_counter=counter).look(data_file.parent, data_file.name)
    assert isinstance(look, WriterLook) and look.writer.writer_seen


def test_own_opens_through_open_source_are_discounted(data_file: Path) -> None:
    counter = OpenCounter()
    with open_source(data_file.parent, data_file.name, own_opens=counter):
        counter.opened(data_file.name)  # the IN_OPEN our own open caused
        assert counter.others_open(data_file.name) == 0
    counter.closed(data_file.name, wrote=False)  # and its IN_CLOSE_NOWRITE
    assert counter.tracked_paths() == 0
