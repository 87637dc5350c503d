"""WatchObserver robustness: every way events can be lost leads to a RESCAN nomination.

Provoked for real: the root deleted and recreated, watchdog's threads stopped,
the kernel's inotify queue overflowing (the watching process is SIGSTOPped
while more events than fs.inotify.max_queued_events happen), the inotify watch
limit reached and a mount on the root going away and coming back. The last
two run the watcher in a child user namespace (unshare) whose own
user.max_inotify_watches and mounts are set there: nothing global changes.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from watchdog.observers.api import EventEmitter

from syncd.pipeline.filters import PathFilter
from syncd.pipeline.watcher import Nomination, NominationKind, WatchError, WatchObserver

REPO = Path(__file__).resolve().parents[2]


class Recorder:
    def __init__(self) -> None:
        self.items: queue.Queue[Nomination] = queue.Queue()
        self.seen: list[Nomination] = []

    def __call__(self, nomination: Nomination) -> None:
        self.items.put(nomination)

    def wait_for(self, predicate: Callable[[Nomination], bool], timeout: float = 5.0) -> Nomination:
        end = time.monotonic() + timeout
        while (left := end - time.monotonic()) > 0:
            try:
                item = self.items.get(timeout=left)
            except queue.Empty:
                break
            self.seen.append(item)
            if predicate(item):
                return item
        raise AssertionError(f"no matching nomination within {timeout} s; seen: {self.seen}")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "inbox"
    path.mkdir()
    return path


Watching = tuple[WatchObserver, Recorder]


@pytest.fixture
def watching(root: Path) -> Iterator[Watching]:
    recorder = Recorder()
    observer = WatchObserver("inbox", root, recorder, check_interval=0.1)
    with observer:
        yield observer, recorder


def _touch_of(relpath: str) -> Callable[[Nomination], bool]:
    return lambda n: n.kind is NominationKind.TOUCH and n.relpath == relpath


def test_events_are_translated_into_nominations(watching: Watching, root: Path) -> None:
    observer, recorder = watching
    (root / "sub").mkdir()
    recorder.wait_for(lambda n: n == Nomination(NominationKind.SCAN_DIRECTORY, "inbox", "sub"))
    (root / "sub" / "a.txt").write_bytes(b"a")
    recorder.wait_for(lambda n: n == Nomination(NominationKind.TOUCH, "inbox", "sub/a.txt", closed=True))
    (root / "sub" / "a.txt").unlink()
    recorder.wait_for(lambda n: n == Nomination(NominationKind.GONE, "inbox", "sub/a.txt"))
    (root / "sub").rmdir()
    recorder.wait_for(lambda n: n == Nomination(NominationKind.GONE, "inbox", "sub", is_directory=True))
    (root / ".hidden").write_bytes(b"h")
    (root / "visible").write_bytes(b"v")
    recorder.wait_for(_touch_of("visible"))
    assert not any(n.relpath == ".hidden" for n in recorder.seen)
    health = observer.health()
    assert health.alive and health.mode == "inotify" and health.restarts == 0 and health.root_present


def test_non_recursive_watch_ignores_subdirectories(root: Path) -> None:
    recorder = Recorder()
    (root / "deep").mkdir()
    with WatchObserver("inbox", root, recorder, recursive=False, path_filter=PathFilter(include=["*.pdf"])):
        (root / "deep" / "x.pdf").write_bytes(b"x")
        (root / "new-dir").mkdir()
        (root / "top.txt").write_bytes(b"t")
        (root / "top.pdf").write_bytes(b"t")
        recorder.wait_for(_touch_of("top.pdf"))
    assert not any(n.relpath.startswith(("deep", "new-dir", "top.txt")) for n in recorder.seen)


def test_root_deleted_and_recreated_is_gone_then_rescanned(watching: Watching, root: Path) -> None:
    observer, recorder = watching
    shutil.rmtree(root)
    recorder.wait_for(lambda n: n.kind is NominationKind.GONE and n.relpath == "" and n.is_directory)
    assert not observer.health().root_present
    assert not observer.is_alive()
    assert observer.health().supervised  # the daemon keeps pinging systemd: a restart would not help
    root.mkdir()
    rescan = recorder.wait_for(lambda n: n.kind is NominationKind.RESCAN)
    assert "appeared again" in rescan.reason
    health = observer.health()
    assert health.alive and health.restarts == 1 and health.last_restart_at is not None
    (root / "after.txt").write_bytes(b"new root is watched")
    recorder.wait_for(_touch_of("after.txt"))


def test_root_swapped_between_checks_is_noticed_by_identity(root: Path, tmp_path: Path) -> None:
    recorder = Recorder()
    with WatchObserver("inbox", root, recorder, check_interval=0.5) as observer:
        replacement = tmp_path / "replacement"
        replacement.mkdir()
        os.rename(root, tmp_path / "old-inbox")  # moved away: no IN_DELETE_SELF, the watch follows it
        os.rename(replacement, root)
        rescan = recorder.wait_for(lambda n: n.kind is NominationKind.RESCAN)
        assert "replaced" in rescan.reason
        (root / "fresh.txt").write_bytes(b"f")
        recorder.wait_for(_touch_of("fresh.txt"))
        assert observer.health().restarts == 1


def test_dead_observer_threads_are_restarted_with_a_rescan(watching: Watching, root: Path) -> None:
    observer, recorder = watching
    emitters = [t for t in threading.enumerate() if isinstance(t, EventEmitter) and t.watch.path == str(root)]
    assert len(emitters) == 1
    emitters[0].stop()  # the emitter thread ends: no more events would ever come
    emitters[0].join(5)
    rescan = recorder.wait_for(lambda n: n.kind is NominationKind.RESCAN)
    assert rescan.reason == "observer thread died"
    assert observer.is_alive() and observer.health().restarts == 1
    (root / "later.txt").write_bytes(b"l")
    recorder.wait_for(_touch_of("later.txt"))


def test_bad_arguments_are_rejected(root: Path) -> None:
    with pytest.raises(WatchError, match="watch name"):
        WatchObserver("", root, print)
    with pytest.raises(WatchError, match="poll_interval"):
        WatchObserver("inbox", root, print, poll_interval=0)
    with pytest.raises(WatchError, match="check_interval"):
        WatchObserver("inbox", root, print, check_interval=float("nan"))
    WatchObserver("inbox", root, print, poll_interval=7 * 86400)  # a weekly poll is odd but valid
    observer = WatchObserver("inbox", root, print)
    with observer, pytest.raises(WatchError, match="already started"):
        observer.start()


def test_missing_root_is_waited_for(tmp_path: Path) -> None:
    recorder = Recorder()
    root = tmp_path / "not-yet"
    with WatchObserver("inbox", root, recorder, check_interval=0.1) as observer:
        assert not observer.is_alive() and "does not exist" in (observer.health().last_error or "")
        root.mkdir()
        recorder.wait_for(lambda n: n.kind is NominationKind.RESCAN)
        (root / "x").write_bytes(b"x")
        recorder.wait_for(_touch_of("x"))


# ----------------------------------------------------------------- child processes

_CHILD = r"""
import dataclasses, json, os, subprocess, sys, threading, time
from syncd.pipeline.watcher import WatchObserver

root = sys.argv[1]
lock = threading.Lock()

def emit(record):
    with lock:
        sys.stdout.write(json.dumps(record) + "\n")
        sys.stdout.flush()

def nominate(n):
    emit({"nomination": dataclasses.asdict(n)})

observer = WatchObserver("inbox", root, nominate, check_interval=0.1, poll_interval=0.2)
observer.start()
emit({"started": dataclasses.asdict(observer.health())})
for line in sys.stdin:  # the parent steers: "health", or a shell command to run in this namespace
    line = line.strip()
    if line == "health":
        emit({"health": dataclasses.asdict(observer.health())})
    elif line:
        subprocess.run(line, shell=True, check=True)
        emit({"done": line})
observer.stop()
"""


class Child:
    """The watcher in a separate process, reporting JSON lines."""

    def __init__(self, argv: list[str]) -> None:
        self.proc = subprocess.Popen(argv, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, bufsize=1)
        self.lines: queue.Queue[dict] = queue.Queue()
        self.seen: list[dict] = []
        self._matched: set[int] = set()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(json.loads(line))

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def wait_for(self, predicate: Callable[[dict], bool], timeout: float = 10.0) -> dict:
        """The first record not matched before that satisfies ``predicate``, waiting for more if needed.

        Records keep their arrival order, but nominations and command replies race each other,
        so a wait never throws away what it read past: a later wait still finds it.
        """
        end = time.monotonic() + timeout
        index = 0
        while True:
            while index < len(self.seen):
                if index not in self._matched and predicate(self.seen[index]):
                    self._matched.add(index)
                    return self.seen[index]
                index += 1
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError(f"child did not report in {timeout} s; seen: {self.seen}")
            try:
                self.seen.append(self.lines.get(timeout=left))
            except queue.Empty:
                continue

    def nomination(self, kind: str, relpath: str | None = None, timeout: float = 10.0) -> dict:
        def matches(r: dict) -> bool:
            n = r.get("nomination")
            return n is not None and n["kind"] == kind and (relpath is None or n["relpath"] == relpath)
        return self.wait_for(matches, timeout)["nomination"]

    def run(self, command: str) -> None:
        self.send(command)
        self.wait_for(lambda r: r.get("done") == command)

    def health(self) -> dict:
        self.send("health")
        return self.wait_for(lambda r: "health" in r)["health"]

    def close(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


Spawn = Callable[[list[str]], Child]


@pytest.fixture
def spawn() -> Iterator[Spawn]:
    children: list[Child] = []

    def start(prefix: list[str]) -> Child:
        child = Child(prefix)
        children.append(child)
        return child

    yield start
    for child in children:
        child.close()


def _in_user_namespace(*extra: str) -> list[str]:
    return ["unshare", "--user", "--map-root-user", *extra, "--"]


def _wait_until_stopped(pid: int, timeout: float = 30.0) -> None:
    """Return once every thread of `pid` is stopped (state T in /proc): a SIGSTOP reaches a thread
    busy on the other core only when it next enters the kernel."""
    deadline = time.monotonic() + timeout
    while True:
        states = [(task / "stat").read_text().rsplit(")", 1)[1].split()[0]
                  for task in Path(f"/proc/{pid}/task").iterdir()]
        if all(state in ("T", "t") for state in states):
            return
        assert time.monotonic() < deadline, f"process {pid} did not stop: thread states {states}"
        time.sleep(0.01)


def test_kernel_queue_overflow_is_followed_by_a_rescan(spawn: Spawn, root: Path) -> None:
    max_queued = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    child = spawn([sys.executable, "-c", _CHILD, str(root)])
    child.wait_for(lambda r: "started" in r)
    (root / "warmup").write_bytes(b"w")
    child.nomination("touch", "warmup")
    os.kill(child.proc.pid, signal.SIGSTOP)  # nobody reads the inotify queue now...
    _wait_until_stopped(child.proc.pid)  # ...once every thread is stopped (delivery takes a moment)
    try:
        fds = [os.open(root / name, os.O_WRONLY | os.O_CREAT, 0o644) for name in ("a", "b")]
        for i in range(max_queued + 2000):  # alternate files so the kernel cannot coalesce events
            os.write(fds[i % 2], b"x")
        for fd in fds:
            os.close(fd)
    finally:
        os.kill(child.proc.pid, signal.SIGCONT)
    rescan = child.nomination("rescan")
    assert rescan["reason"] == "inotify event queue overflowed"
    health = child.health()
    assert health["overflows"] >= 1 and health["alive"]
    (root / "after-overflow").write_bytes(b"still watching")
    child.nomination("touch", "after-overflow")


def test_inotify_limit_reached_falls_back_to_polling_with_a_rescan(spawn: Spawn, root: Path) -> None:
    for i in range(8):
        (root / f"dir{i}").mkdir()
    limit = "echo 4 > /proc/sys/user/max_inotify_watches"  # only in the child's user namespace
    child = spawn(_in_user_namespace() + ["sh", "-c", f'{limit} && exec "$0" -c "$1" "$2"',
                                           sys.executable, _CHILD, str(root)])
    started = child.wait_for(lambda r: "started" in r)["started"]
    assert started["inotify_limit_reached"]
    child.wait_for(lambda r: (r.get("nomination") or {}).get("reason", "").startswith("inotify limit reached;"))
    reasons = [r["nomination"]["reason"] for r in child.seen if "nomination" in r]
    assert reasons.count("inotify watch limit reached") == 1  # once, not once per unwatchable directory
    health = child.health()
    assert health["mode"] == "polling" and health["alive"] and "max_user_watches" in health["last_error"]
    (root / "dir7" / "deep.txt").write_bytes(b"seen by polling")
    child.nomination("touch", "dir7/deep.txt")


@pytest.mark.parametrize(
    ("limit", "reason", "sysctl"),
    [
        ("max_inotify_watches", "inotify watch limit reached", "fs.inotify.max_user_watches"),
        ("max_inotify_instances", "inotify instance limit reached", "fs.inotify.max_user_instances"),
    ],
)
def test_inotify_exhausted_for_the_root_itself_starts_polling_at_once(
    spawn: Spawn, root: Path, limit: str, reason: str, sysctl: str
) -> None:
    exhaust = f"echo 0 > /proc/sys/user/{limit}"
    child = spawn(_in_user_namespace() + ["sh", "-c", f'{exhaust} && exec "$0" -c "$1" "$2"',
                                           sys.executable, _CHILD, str(root)])
    started = child.wait_for(lambda r: "started" in r)["started"]
    assert started["mode"] == "polling" and started["alive"] and started["inotify_limit_reached"]
    assert sysctl in started["last_error"]
    assert child.nomination("rescan")["reason"] == reason
    (root / "polled.txt").write_bytes(b"p")
    child.nomination("touch", "polled.txt")


def test_mount_gone_and_back_restarts_the_observer(spawn: Spawn, root: Path) -> None:
    # A private mount namespace: the tmpfs on the root exists only for the child.
    mount_then_watch = 'mount -t tmpfs syncd-test "$2" && exec "$0" -c "$1" "$2"'
    child = spawn(_in_user_namespace("--mount") + ["sh", "-c", mount_then_watch, sys.executable, _CHILD, str(root)])
    child.wait_for(lambda r: "started" in r)
    child.run(f"echo on-tmpfs > {root}/m1.txt")
    child.nomination("touch", "m1.txt")
    child.run(f"umount -l {root}")  # the mount disappears; the directory below it shows again
    assert "mount" in child.nomination("rescan")["reason"]
    child.run(f"mount -t tmpfs syncd-test {root}")
    assert "mount" in child.nomination("rescan")["reason"]
    child.run(f"echo back > {root}/m2.txt")
    child.nomination("touch", "m2.txt")
    assert child.health()["restarts"] == 2
