"""open_source: one open beneath the root, no symlink followed, a typed refusal for the rest.

Every test runs with both resolvers (openat2 and the component walk), on real
files, links, FIFOs and sockets.
"""

from __future__ import annotations

import errno
import hashlib
import os
import socket
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from requests_toolbelt.multipart.encoder import MultipartEncoder

from syncd.box import SourceChanged
from syncd.pipeline.identity import ChangeKind, FileIdentity, FileStat
from syncd.pipeline.scanner import ProblemKind, RelativePathError
from syncd.pipeline.source import (
    OpenedSource,
    OpenRefused,
    Resolver,
    SourceChangedError,
    open_beneath,
    open_source,
)

SECRET = b"TOP SECRET token store\n"


@pytest.fixture(params=[Resolver.OPENAT2, Resolver.WALK], ids=["openat2", "walk"])
def resolver(request: pytest.FixtureRequest) -> Resolver:
    return request.param


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """root/ (the watch) beside outside/ (holding a secret the watch must never read)."""
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret").write_bytes(SECRET)
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "doc.txt").write_bytes(b"ordinary content")
    return root


def opened(result: OpenedSource | OpenRefused) -> OpenedSource:
    assert isinstance(result, OpenedSource), f"refused: {result}"
    return result


def refused(result: OpenedSource | OpenRefused) -> OpenRefused:
    if isinstance(result, OpenedSource):
        content = result.pread(0, 100)
        result.close()
        pytest.fail(f"opened, read {content!r}")
    return result


def test_regular_file_opens_and_every_read_comes_from_the_descriptor(tree: Path, resolver: Resolver) -> None:
    with opened(open_source(tree, "sub/doc.txt", resolver=resolver)) as source:
        assert source.identity == FileIdentity.from_stat(os.stat(tree / "sub" / "doc.txt"))
        assert source.sha1() == hashlib.sha1(b"ordinary content").hexdigest()
        assert source.pread(9, 7) == b"content" and source.pread(9, 100) == b"content"
        assert source.read_exact(0, 8) == b"ordinary"
        assert source.stream(9).read() == b"content"
        assert source.check_unchanged() is None
    assert source.closed
    with pytest.raises(ValueError, match="closed"):
        source.pread(0, 1)


def test_symlinked_last_component_is_refused(tree: Path, resolver: Resolver) -> None:
    os.symlink(tree.parent / "outside" / "secret", tree / "sub" / "link.txt")
    problem = refused(open_source(tree, "sub/link.txt", resolver=resolver))
    assert problem.kind is ProblemKind.SYMLINK_SKIPPED and problem.final
    assert "symbolic link" in problem.detail


def test_symlink_to_a_file_inside_the_root_is_refused_too(tree: Path, resolver: Resolver) -> None:
    os.symlink("doc.txt", tree / "sub" / "alias.txt")
    assert refused(open_source(tree, "sub/alias.txt", resolver=resolver)).kind is ProblemKind.SYMLINK_SKIPPED


def test_symlinked_parent_directory_is_refused(tree: Path, resolver: Resolver) -> None:
    os.symlink(tree.parent / "outside", tree / "linked-dir")
    problem = refused(open_source(tree, "linked-dir/secret", resolver=resolver))
    assert problem.kind is ProblemKind.SYMLINK_SKIPPED


def test_dangling_link_and_link_loop_are_refused(tree: Path, resolver: Resolver) -> None:
    os.symlink(tree / "nowhere", tree / "dangling")
    os.symlink("loop-b", tree / "loop-a")
    os.symlink("loop-a", tree / "loop-b")
    assert refused(open_source(tree, "dangling", resolver=resolver)).kind is ProblemKind.SYMLINK_SKIPPED
    assert refused(open_source(tree, "loop-a", resolver=resolver)).kind is ProblemKind.SYMLINK_SKIPPED
    assert refused(open_source(tree, "loop-a/x", resolver=resolver)).kind is ProblemKind.SYMLINK_SKIPPED


@pytest.mark.parametrize("relpath", ["../outside/secret", "sub/../../outside/secret", "/etc/passwd", "a\x00b", ""])
def test_paths_that_leave_the_root_never_reach_the_kernel(tree: Path, resolver: Resolver, relpath: str) -> None:
    with pytest.raises(RelativePathError):
        open_source(tree, relpath, resolver=resolver)


def test_openat2_itself_refuses_dotdot_and_absolute_escapes(tree: Path) -> None:
    """The kernel layer, without the relpath check in front of it."""
    from syncd.pipeline.source import OPEN_FLAGS, _openat2

    root_fd = os.open(tree, os.O_PATH | os.O_DIRECTORY)
    try:
        for path in (b"../outside/secret", os.fsencode(tree.parent / "outside" / "secret")):
            with pytest.raises(OSError) as info:
                _openat2(root_fd, path, OPEN_FLAGS)
            assert info.value.errno == errno.EXDEV
    finally:
        os.close(root_fd)


def test_fifo_without_a_writer_is_refused_without_blocking(tree: Path, resolver: Resolver) -> None:
    os.mkfifo(tree / "pipe")
    outcome: list[OpenedSource | OpenRefused] = []
    # In a thread: if the open blocked waiting for a writer, the join below would give up and fail.
    thread = threading.Thread(target=lambda: outcome.append(open_source(tree, "pipe", resolver=resolver)),
                              daemon=True)
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive(), "opening a FIFO without a writer blocked"
    problem = refused(outcome[0])
    assert problem.kind is ProblemKind.NOT_REGULAR_FILE and problem.detail == "is a FIFO (named pipe)"


def test_unix_socket_and_directory_are_refused_with_their_type(tree: Path, resolver: Resolver) -> None:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(tree / "sock"))
    try:
        problem = refused(open_source(tree, "sock", resolver=resolver))
        assert problem.kind is ProblemKind.NOT_REGULAR_FILE and problem.detail == "is a UNIX socket"
    finally:
        server.close()
    problem = refused(open_source(tree, "sub", resolver=resolver))
    assert (problem.kind, problem.detail) == (ProblemKind.NOT_REGULAR_FILE, "is a directory")


def test_missing_file_and_file_in_place_of_a_folder_are_vanished(tree: Path, resolver: Resolver) -> None:
    assert refused(open_source(tree, "sub/missing", resolver=resolver)).kind is ProblemKind.VANISHED
    assert refused(open_source(tree, "sub/doc.txt/x", resolver=resolver)).kind is ProblemKind.VANISHED
    assert refused(open_source(tree / "gone", "x", resolver=resolver)).kind is ProblemKind.VANISHED


def test_name_that_is_not_utf8_opens_by_its_bytes(tree: Path, resolver: Resolver) -> None:
    raw = os.fsencode(tree) + b"/caf\xe9.txt"
    with open(raw, "wb") as handle:
        handle.write(b"latin-1 named")
    relpath = os.fsdecode(b"caf\xe9.txt")
    with opened(open_source(tree, relpath, resolver=resolver)) as source:
        assert source.pread(0, 100) == b"latin-1 named"
        assert "caf\\xe9.txt" in repr(source)


def test_relative_path_of_300_bytes_across_directories_opens(tree: Path, resolver: Resolver) -> None:
    parts = ["d" * 100, "e" * 100, "f" * 94 + ".txt"]
    relpath = "/".join(parts)
    assert len(relpath.encode()) == 300
    (tree / parts[0] / parts[1]).mkdir(parents=True)
    (tree / relpath).write_bytes(b"deep")
    with opened(open_source(tree, relpath, resolver=resolver)) as source:
        assert source.pread(0, 10) == b"deep"


# ------------------------------------------------------------------ identity


def test_expected_identity_is_checked(tree: Path, resolver: Resolver) -> None:
    path = tree / "sub" / "doc.txt"
    seen = FileIdentity.from_stat(os.stat(path))
    with opened(open_source(tree, "sub/doc.txt", expect=seen, resolver=resolver)):
        pass
    with opened(open_source(tree, "sub/doc.txt", expect=seen.stat, resolver=resolver)):  # what the journal has
        pass

    os.chmod(path, 0o640)  # ctime moves, nothing else
    problem = refused(open_source(tree, "sub/doc.txt", expect=seen, resolver=resolver))
    assert problem.kind is ProblemKind.CHANGED and problem.change is not None
    assert problem.change.kind is ChangeKind.CTIME and problem.found == FileIdentity.from_stat(os.stat(path))
    assert not problem.final

    os.utime(path, ns=(seen.mtime_ns, seen.mtime_ns + 1))
    assert refused(open_source(tree, "sub/doc.txt", expect=seen, resolver=resolver)).change.kind is ChangeKind.MTIME

    with open(path, "ab") as handle:
        handle.write(b"!")
    os.utime(path, ns=(seen.mtime_ns, seen.mtime_ns))  # mtime put back, as cp -p / touch -d would
    assert refused(open_source(tree, "sub/doc.txt", expect=seen, resolver=resolver)).change.kind is ChangeKind.SIZE
    assert refused(open_source(tree, "sub/doc.txt", expect=seen.stat, resolver=resolver)).change.kind is ChangeKind.SIZE


def test_replaced_inode_is_detected_even_with_the_same_size_and_mtime(tree: Path, resolver: Resolver) -> None:
    path = tree / "sub" / "doc.txt"
    seen = FileIdentity.from_stat(os.stat(path))
    replacement = tree / "sub" / "new.txt"
    replacement.write_bytes(b"ORDINARY CONTENT")  # same length
    os.utime(replacement, ns=(seen.mtime_ns, seen.mtime_ns))
    os.rename(replacement, path)
    problem = refused(open_source(tree, "sub/doc.txt", expect=seen, resolver=resolver))
    assert problem.change is not None and problem.change.kind is ChangeKind.REPLACED
    other_device = FileIdentity(seen.device + 1, seen.inode, seen.size, seen.mtime_ns, seen.ctime_ns)
    assert FileIdentity.from_stat(os.stat(path)).change_from(other_device).kind is ChangeKind.REPLACED
    assert problem.found is not None and problem.found.change_from(FileStat(16, seen.mtime_ns, seen.inode)).kind \
        is ChangeKind.REPLACED


def test_changes_after_open_are_seen_by_check_unchanged(tree: Path, resolver: Resolver) -> None:
    path = tree / "sub" / "doc.txt"
    with opened(open_source(tree, "sub/doc.txt", resolver=resolver)) as source:
        with open(path, "ab") as handle:
            handle.write(b" and more")
        change = source.check_unchanged()
        assert change is not None and change.kind is ChangeKind.SIZE
        with pytest.raises(SourceChangedError, match="grew"):
            source.sha1()  # reads the size at open, then finds more


def test_a_file_that_shrinks_while_read_never_yields_a_short_result(tree: Path, resolver: Resolver) -> None:
    path = tree / "sub" / "doc.txt"
    with opened(open_source(tree, "sub/doc.txt", resolver=resolver)) as source:
        os.truncate(path, 4)
        with pytest.raises(SourceChangedError, match="shrank"):
            source.sha1()
        with pytest.raises(SourceChangedError, match="shrank"):
            source.read_exact(0, 16)
        with pytest.raises(SourceChangedError, match="shrank"):
            source.stream().read()


def test_rename_or_delete_of_the_path_does_not_change_what_is_read(tree: Path, resolver: Resolver) -> None:
    path = tree / "sub" / "doc.txt"
    with opened(open_source(tree, "sub/doc.txt", resolver=resolver)) as source:
        os.unlink(path)
        path.write_bytes(b"a different file now")
        assert source.pread(0, 100) == b"ordinary content"  # the inode, not the path
        # ...but its link count (ctime) moved: the caller learns the entry is not what readiness saw.
        change = source.check_unchanged()
        assert change is not None and change.kind is ChangeKind.CTIME
    with opened(open_source(tree, "sub/doc.txt", resolver=resolver)) as source:
        os.rename(path, tree / "sub" / "renamed.txt")
        assert source.pread(0, 100) == b"a different file now"
        assert source.check_unchanged().kind is ChangeKind.CTIME


def test_parallel_part_readers_share_no_file_position(tree: Path, resolver: Resolver) -> None:
    data = os.urandom(256 * 1024)
    (tree / "big.bin").write_bytes(data)
    part = 16 * 1024
    with opened(open_source(tree, "big.bin", resolver=resolver)) as source, ThreadPoolExecutor(8) as pool:
        parts = list(pool.map(lambda offset: source.read_exact(offset, part), range(0, len(data), part)))
        assert b"".join(parts) == data
        assert source.sha1(block_size=7000) == hashlib.sha1(data).hexdigest()


def test_stream_is_a_file_like_body_for_multipart_uploads(tree: Path, resolver: Resolver) -> None:
    with opened(open_source(tree, "sub/doc.txt", resolver=resolver)) as source:
        stream = source.stream(9, 7)
        assert len(stream) == 7
        encoder = MultipartEncoder(fields=[("file", ("doc.txt", stream, "application/octet-stream"))])
        body = encoder.to_string()
        assert b"\r\n\r\ncontent\r\n" in body and encoder.len == len(body)
        stream.seek(0)
        assert stream.read(3) == b"con" and stream.tell() == 3
        stream.close()
        assert not source.closed  # closing a stream leaves the source open


class Recorder:
    """An OwnOpens that records the calls (pure bookkeeping; the real one is writers.OpenCounter)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def expect_own_open(self, relpath: str) -> object:
        self.calls.append(("open", relpath))
        return f"token of {relpath}"

    def own_open_failed(self, token: object) -> None:
        self.calls.append(("failed", token))

    def expect_own_close(self, token: object) -> None:
        self.calls.append(("close", token))


def test_own_opens_are_announced_before_the_syscalls(tree: Path, resolver: Resolver) -> None:
    recorder = Recorder()
    source = opened(open_source(tree, "sub/doc.txt", own_opens=recorder, resolver=resolver))
    assert recorder.calls == [("open", "sub/doc.txt")]
    source.close()
    source.close()  # idempotent: one close announced
    assert recorder.calls == [("open", "sub/doc.txt"), ("close", "token of sub/doc.txt")]

    recorder.calls.clear()
    refused(open_source(tree, "sub/missing", own_opens=recorder, resolver=resolver))
    assert recorder.calls == [("open", "sub/missing"), ("failed", "token of sub/missing")]
    recorder.calls.clear()
    refused(open_source(tree, "sub", own_opens=recorder, resolver=resolver))  # a directory: no file events
    assert recorder.calls == [("open", "sub"), ("failed", "token of sub")]


def test_open_beneath_reports_a_symlink_as_eloop_with_both_resolvers(tree: Path, resolver: Resolver) -> None:
    os.symlink("sub", tree / "via")
    root_fd = os.open(tree, os.O_PATH | os.O_DIRECTORY)
    try:
        with pytest.raises(OSError) as info:
            open_beneath(root_fd, "via/doc.txt", resolver=resolver)
        assert info.value.errno == errno.ELOOP
    finally:
        os.close(root_fd)


# ------------------------------------------------------------ the swap race


_SWAPPER = r"""
import os, sys
root, outside, swapped, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
public = b"public content\n"
target, real, link = (os.path.join(root, n) for n in ("victim", ".real", ".link"))
graveyard = os.path.join(os.path.dirname(root), "graveyard")
os.mkdir(graveyard)
for n in range(count):
    # rename() over the target is atomic: the path is always either the real thing or the link.
    if swapped == "file":
        os.symlink(os.path.join(outside, "secret"), link)
        os.rename(link, target)
        with open(real, "wb") as f:
            f.write(public)
        os.rename(real, target)
    else:  # rename() cannot put a link over a directory: move the directory away first
        os.symlink(outside, link)
        os.rename(target, os.path.join(graveyard, f"d{n}"))
        os.rename(link, target)
        os.mkdir(real)
        with open(os.path.join(real, "secret"), "wb") as f:
            f.write(public)
        os.rename(target, os.path.join(graveyard, f"l{n}"))
        os.rename(real, target)
"""


@pytest.mark.parametrize("swapped", ["file", "parent"])
def test_symlink_swap_race_never_yields_the_secret(tree: Path, resolver: Resolver, swapped: str) -> None:
    """Another process swaps a regular file (or its parent folder) with a symlink to a secret outside
    the root 3000 times, while this one opens and reads through open_source as fast as it can."""
    public = b"public content\n"
    if swapped == "file":
        (tree / "victim").write_bytes(public)
        relpath = "victim"
    else:
        (tree / "victim").mkdir()
        (tree / "victim" / "secret").write_bytes(public)
        relpath = "victim/secret"
    swapper = subprocess.Popen([sys.executable, "-c", _SWAPPER, str(tree), str(tree.parent / "outside"),
                                swapped, "3000"])
    outcomes = {"read": 0, "refused": 0}
    try:
        while swapper.poll() is None or not (outcomes["read"] and outcomes["refused"]):
            result = open_source(tree, relpath, resolver=resolver)
            if isinstance(result, OpenRefused):
                outcomes["refused"] += 1
                # A link on the path, a name between two renames, or (openat2) a folder moved out of the
                # root while the kernel walked through it: refused, whichever it met.
                assert result.kind in (ProblemKind.SYMLINK_SKIPPED, ProblemKind.VANISHED,
                                       ProblemKind.SYMLINK_OUTSIDE_ROOT), result
                if swapper.poll() is not None:
                    break  # the swapper ended on a link: nothing more to read
                continue
            with result:
                content = result.pread(0, 1000)
            assert SECRET not in content and content == public, content
            outcomes["read"] += 1
    finally:
        if swapper.poll() is None:
            swapper.kill()
        swapper.wait(timeout=60)
    assert swapper.returncode == 0
    assert outcomes["read"] > 0 and outcomes["refused"] > 0, outcomes


# ------------------------------------------------- kernels without openat2


def _deny_openat2(errno_value: int) -> None:
    """Install a seccomp filter in this (child) process answering openat2 with ``errno_value``."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)

    class SockFilter(ctypes.Structure):
        _fields_ = (("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte),
                    ("k", ctypes.c_uint32))

    class SockFprog(ctypes.Structure):
        _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.POINTER(SockFilter)))

    bpf_ld_w_abs, bpf_jeq_k, bpf_ret_k = 0x20, 0x15, 0x06
    seccomp_ret_errno, seccomp_ret_allow = 0x00050000, 0x7FFF0000
    program = (SockFilter * 4)(
        SockFilter(bpf_ld_w_abs, 0, 0, 0),  # seccomp_data.nr
        SockFilter(bpf_jeq_k, 0, 1, 437),  # openat2?
        SockFilter(bpf_ret_k, 0, 0, seccomp_ret_errno | errno_value),
        SockFilter(bpf_ret_k, 0, 0, seccomp_ret_allow),
    )
    fprog = SockFprog(4, program)
    pr_set_no_new_privs, pr_set_seccomp, seccomp_mode_filter = 38, 22, 2
    assert libc.prctl(pr_set_no_new_privs, 1, 0, 0, 0) == 0
    assert libc.prctl(pr_set_seccomp, seccomp_mode_filter, ctypes.byref(fprog), 0, 0) == 0


@pytest.mark.parametrize("denied_with", [errno.ENOSYS, errno.EPERM], ids=["ENOSYS", "EPERM"])
def test_without_openat2_the_walk_keeps_every_refusal(tree: Path, denied_with: int) -> None:
    """A real kernel filter (seccomp, as container runtimes install) denies openat2 in a child."""
    os.symlink(tree.parent / "outside" / "secret", tree / "link")
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(reader)
            _deny_openat2(denied_with)
            from syncd.pipeline import source as module

            results = []
            for relpath in ("sub/doc.txt", "link"):
                outcome = module.open_source(tree, relpath)
                if isinstance(outcome, OpenedSource):
                    with outcome:
                        results.append(outcome.pread(0, 100).decode())
                else:
                    results.append(outcome.kind.value)
            try:
                module.open_beneath(os.open(tree, os.O_PATH), "sub/doc.txt", resolver=Resolver.OPENAT2)
                results.append("openat2 worked")
            except OSError as exc:
                results.append(errno.errorcode[exc.errno])
            results.append(str(module.openat2_available()))
            os.write(writer, "|".join(results).encode())
        finally:
            os._exit(0)
    os.close(writer)
    try:
        answer = os.read(reader, 1000).decode()
    finally:
        os.close(reader)
        os.waitpid(pid, 0)
    name = errno.errorcode[denied_with]
    # ENOSYS: no openat2 at all, remembered; EPERM: asked again each time (it may be one file's).
    assert answer == f"ordinary content|symlink_skipped|{name}|{denied_with != errno.ENOSYS}"


def test_an_interrupted_source_stops_every_reader_at_its_next_read(tree: Path, resolver: Resolver) -> None:
    """A lease break or a write event interrupts the source: a streamed body, a part and the hash stop."""
    with opened(open_source(tree, "sub/doc.txt", resolver=resolver)) as source:
        stream = source.stream()
        assert stream.read(4) == b"ordi"
        progress: list[int] = []
        assert source.sha1(block_size=4, on_progress=progress.append) == hashlib.sha1(b"ordinary content").hexdigest()
        assert progress == [4, 4, 4, 4]
        assert source.label == "sub/doc.txt" and source.fstat().st_size == 16
        source.interrupt("a writer opened it")
        for read in (lambda: stream.read(4), lambda: source.read_exact(0, 4), source.sha1):
            with pytest.raises(SourceChangedError, match="a writer opened it") as caught:
                read()
            assert isinstance(caught.value, SourceChanged)  # what syncd.box reports as a changed source
        assert source.interrupted == "a writer opened it"
