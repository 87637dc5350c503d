"""What happens to a source file after Box has it: delete it, or move it to an archive,
without ever losing a byte (invariant 4).

Everything here works on the file as one open descriptor beneath its watch root
(:func:`syncd.pipeline.source.open_source`, no symlink followed) and on its parent
directory's descriptor, and checks it before touching anything:

* it is still the file that was uploaded (size, mtime, inode), no process has it open
  for writing (a read lease, held until the end: a writer that opens it meanwhile
  breaks the lease and the action stops), and its bytes hash to what Box holds;
* a delete first renames it aside (same directory, ``.NAME.syncd-PID-STAMP``) and
  checks that the name set aside is that inode, so a file swapped in at its path in
  between is put back, never deleted; then unlinks it and fsyncs the directory;
* a move never overwrites: ``renameat2(RENAME_NOREPLACE)`` (link, then unlink, where
  the file system lacks it) onto the archive name, or ``NAME (1).ext``, ``(2)``... when
  that name is taken. Across file systems the verified bytes are copied (and hashed
  again as they are written) to ``.NAME.syncd-0-ID`` in the archive folder, which is
  fsynced, the folder fsynced, the copy renamed (no-replace) to its name, the folder
  fsynced again, and only then is the source deleted as above. The chosen name is
  reported (`record_name`) before the copy is put there, so the journal knows,
  after a crash, that the copy found there is this file's.

Failures say whether trying again can help (:class:`ActionDeferred`: a read-only
mount, a permission, a writer, a full disk) or not (:class:`ActionRefused`: the file
changed since it was uploaded, its bytes are not Box's).
"""

from __future__ import annotations

import ctypes
import enum
import errno
import hashlib
import os
import stat as stat_module
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from syncd.pipeline.filters import is_set_aside_name, set_aside_name
from syncd.pipeline.identity import FileStat
from syncd.pipeline.scanner import ProblemKind
from syncd.pipeline.source import OpenedSource, OpenRefused, open_beneath, open_source
from syncd.pipeline.writers import HeldLease, LeaseMonitor, WriterState

RENAME_NOREPLACE = 1
_COPY_BLOCK = 1 << 20
# Directories are opened readable, not O_PATH: fsync needs a real descriptor.
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_libc = ctypes.CDLL(None, use_errno=True)
# Errors that mean "this file system cannot rename without replacing": link, then unlink, instead.
_NO_RENAMEAT2 = frozenset({errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP})

#: on_progress(n): n bytes read (0: still working), so a long hash or copy counts for its job.
OnProgress = Callable[[int], None]


class AfterUpload(enum.StrEnum):
    """A watch's ``after_upload`` setting."""

    KEEP = "keep"
    DELETE = "delete"
    MOVE = "move"


class ActionRefused(Exception):
    """The source is left where it is, for good: acting on it could lose what Box does not hold."""


class ActionDeferred(Exception):
    """The action could not be carried out now; trying again later may succeed.

    ``code`` names the condition for metrics and `syncd status` (``EROFS``, ``EACCES``,
    ``writer``, ...).
    """

    def __init__(self, reason: str, code: str) -> None:
        super().__init__(reason)
        self.code = code


@dataclass(frozen=True, slots=True)
class UploadedSource:
    """The file an action is for: where it is, and the content Box holds (what it was when uploaded)."""

    root: Path
    relpath: str
    uploaded: FileStat
    sha1: str


# --------------------------------------------------------------- primitives


def rename_noreplace(src_dir: int, src_name: str, dst_dir: int, dst_name: str) -> None:
    """Rename without ever replacing an existing entry: FileExistsError when `dst_name` is taken.

    ``renameat2(RENAME_NOREPLACE)``; where the file system does not support it, a hard
    link then an unlink (the same guarantee; a crash in between leaves both names).
    """
    result = _libc.renameat2(src_dir, os.fsencode(src_name), dst_dir, os.fsencode(dst_name), RENAME_NOREPLACE)
    if result == 0:
        return
    code = ctypes.get_errno()
    if code not in _NO_RENAMEAT2:
        raise OSError(code, os.strerror(code), dst_name)
    os.link(src_name, dst_name, src_dir_fd=src_dir, dst_dir_fd=dst_dir, follow_symlinks=False)
    os.unlink(src_name, dir_fd=src_dir)


def fsync_dir(fd: int) -> None:
    """Make the entries of an open directory durable (a rename, a new name, an unlink)."""
    os.fsync(fd)


def free_names(name: str) -> Iterator[str]:
    """``name``, then ``stem (1).ext``, ``stem (2).ext``, ...: archive names in the order they are tried."""
    yield name
    pure = PurePosixPath(name)
    stem, suffix = (pure.stem, pure.suffix) if pure.stem else (name, "")
    for n in range(1, 10_000):
        yield f"{stem} ({n}){suffix}"


def _same_inode(st: os.stat_result, source: OpenedSource) -> bool:
    identity = source.identity
    return (st.st_dev, st.st_ino) == (identity.device, identity.inode)


def _stat_at(dir_fd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def sha1_of(source: OpenedSource, on_progress: OnProgress) -> str:
    """SHA-1 of the source's bytes through its descriptor, reporting progress as it reads.

    Raises ActionRefused when the file is shorter or longer than when it was opened.
    (Issue 10's ``OpenedSource.sha1(on_progress=...)`` does the same; this is its twin
    until both branches meet.)
    """
    digest = hashlib.sha1()
    for block in _blocks(source, on_progress):
        digest.update(block)
    return digest.hexdigest()


def _blocks(source: OpenedSource, on_progress: OnProgress) -> Iterator[memoryview]:
    buffer = bytearray(_COPY_BLOCK)
    view = memoryview(buffer)
    offset = 0
    while offset < source.size:
        want = min(_COPY_BLOCK, source.size - offset)
        n = source.readinto(view[:want], offset)
        if n < want:
            raise ActionRefused(f"the file shrank while it was read ({offset + n} of {source.size} bytes)")
        yield view[:n]
        offset += n
        on_progress(n)
    if source.pread(source.size, 1):
        raise ActionRefused("the file grew while it was read")


# ------------------------------------------------------------ the open file


class ActionTarget:
    """The uploaded file opened beneath its root with its parent directory, checked and leased.

    Use as a context manager (:func:`open_uploaded`); everything is released on exit.
    """

    def __init__(self, source: OpenedSource, parent_fd: int, name: str, lease: HeldLease | None,
                 lease_broken: threading.Event) -> None:
        self.source = source
        self.parent_fd = parent_fd
        self.name = name
        self._lease = lease
        self._lease_broken = lease_broken

    def check_no_writer(self) -> None:
        """ActionDeferred when a process opened the file for writing since the lease was taken."""
        # The lease's own flag is set before the writer's open() may proceed; the event only
        # once the monitor thread runs the hook, which can be after the writer is done.
        if self._lease_broken.is_set() or (self._lease is not None and self._lease.broken):
            raise ActionDeferred("a process opened the file for writing; trying again later", "writer")

    def check_unchanged(self) -> None:
        """ActionRefused when the content changed since it was opened (size, mtime, ctime)."""
        change = self.source.check_unchanged()
        if change is not None:
            raise ActionRefused(f"the file changed: {change.reason}")

    def close(self) -> None:
        if self._lease is not None:
            self._lease.release()
        self.source.close()
        os.close(self.parent_fd)

    def __enter__(self) -> ActionTarget:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def open_uploaded(uploaded: UploadedSource, leases: LeaseMonitor | None) -> ActionTarget | None:
    """Open the uploaded file and its parent directory beneath the root, take a read lease on it.

    None when nothing is at its path any more. ActionRefused when what is there is not
    the uploaded file; ActionDeferred when it cannot be opened now, or a process has it
    open for writing.
    """
    source = open_source(uploaded.root, uploaded.relpath, expect=uploaded.uploaded)
    if isinstance(source, OpenRefused):
        return _refusal(source)
    try:
        parent_fd = _open_parent(uploaded.root, uploaded.relpath)
    except OSError as exc:
        source.close()
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return None
        raise ActionDeferred(f"its folder cannot be opened: {exc.strerror or exc}", _code(exc)) from None
    name = PurePosixPath(uploaded.relpath).name
    st = _stat_at(parent_fd, name)
    if st is None or not _same_inode(st, source):
        source.close()
        os.close(parent_fd)
        raise ActionDeferred("the file was renamed or replaced while it was opened; trying again", "changed")
    broken = threading.Event()
    lease: HeldLease | None = None
    if leases is not None:
        held = leases.hold(source.fileno(), broken.set, label=uploaded.relpath)
        if isinstance(held, HeldLease):
            lease = held
        elif held.state is WriterState.WRITER:
            source.close()
            os.close(parent_fd)
            raise ActionDeferred(f"{held.detail}; trying again later", "writer")
        # UNKNOWN (no lease on this file system, or not the file's owner): the checks below remain.
    return ActionTarget(source, parent_fd, name, lease, broken)


def remove_set_aside(uploaded: UploadedSource, on_progress: OnProgress) -> int:
    """Delete what a delete interrupted by a crash left set aside (``.NAME.syncd-PID-STAMP`` next to
    where the file was): only entries that are still the uploaded file, bytes verified. Returns how many."""
    try:
        parent_fd = _open_parent(uploaded.root, uploaded.relpath)
    except OSError:
        return 0
    prefix = f".{PurePosixPath(uploaded.relpath).name}.syncd-"
    removed = 0
    try:
        for entry in os.scandir(parent_fd):
            if not (entry.name.startswith(prefix) and is_set_aside_name(entry.name)):
                continue
            st = entry.stat(follow_symlinks=False)
            if not stat_module.S_ISREG(st.st_mode) or FileStat.from_stat(st) != uploaded.uploaded:
                continue
            if _holds(parent_fd, entry.name, uploaded.sha1, on_progress):
                os.unlink(entry.name, dir_fd=parent_fd)
                removed += 1
        if removed:
            fsync_dir(parent_fd)
    finally:
        os.close(parent_fd)
    return removed


def _refusal(refused: OpenRefused) -> None:
    if refused.kind is ProblemKind.VANISHED:
        return None
    if refused.kind is ProblemKind.CHANGED:
        raise ActionRefused(f"the file changed after it was uploaded ({refused.change or refused.detail})")
    if refused.final:
        raise ActionRefused(refused.detail)
    raise ActionDeferred(f"it cannot be opened: {refused.detail}", str(refused.kind))


def _open_parent(root: Path, relpath: str) -> int:
    root_fd = os.open(root, _DIR_FLAGS)
    parent = PurePosixPath(relpath).parent
    if str(parent) == ".":
        return root_fd
    try:
        return open_beneath(root_fd, str(parent))
    finally:
        os.close(root_fd)


def _code(exc: OSError) -> str:
    return errno.errorcode.get(exc.errno or 0, "EIO")


# --------------------------------------------------------------- the actions


def verify(target: ActionTarget, sha1: str, on_progress: OnProgress) -> None:
    """The bytes on disk are Box's and nobody writes them: else ActionRefused / ActionDeferred."""
    target.check_no_writer()
    local = sha1_of(target.source, on_progress)
    target.check_unchanged()
    if local.lower() != sha1.lower():
        raise ActionRefused(f"its bytes (SHA-1 {local}) are not what Box holds ({sha1})")
    target.check_no_writer()


def delete_verified(target: ActionTarget) -> None:
    """Delete the verified file: set aside (checked to be its inode), unlink, fsync the folder."""
    aside = set_aside_name(target.name, os.getpid(), time.monotonic_ns())
    rename_noreplace(target.parent_fd, target.name, target.parent_fd, aside)
    st = _stat_at(target.parent_fd, aside)
    if st is None or not _same_inode(st, target.source):
        # Another file took its name between the checks and the rename: put it back, touch nothing.
        rename_noreplace(target.parent_fd, aside, target.parent_fd, target.name)
        raise ActionDeferred("another file took its name while it was being deleted; trying again", "changed")
    os.unlink(aside, dir_fd=target.parent_fd)
    fsync_dir(target.parent_fd)


@dataclass(frozen=True, slots=True)
class ArchivePlan:
    """Where a move puts the file, and what a crashed earlier run of the same action left."""

    path: Path  # the archive template's answer; a free name next to it when taken
    copy_stamp: int  # names the temporary copy across file systems (.NAME.syncd-0-STAMP): the action's id
    recorded: Path | None = None  # the name an earlier run chose for its copy, before it crashed


def archive_verified(target: ActionTarget, plan: ArchivePlan, sha1: str, *,
                     record_name: Callable[[Path], None], on_progress: OnProgress) -> Path:
    """Move the verified file to `plan.path` (or a free name next to it); returns where it went.

    `record_name(path)` is called before a copy made across file systems is given its
    name, so that a crash right after leaves a journal that knows the copy is this file's.
    """
    folder = plan.path.parent
    folder.mkdir(parents=True, exist_ok=True)
    dst_fd = os.open(folder, _DIR_FLAGS)
    try:
        copy_name = set_aside_name(plan.path.name, 0, plan.copy_stamp)
        if plan.recorded is not None and plan.recorded.parent == folder \
                and _holds(dst_fd, plan.recorded.name, sha1, on_progress):
            # A crash came between the copy taking its name and the source's deletion.
            delete_verified(target)
            _unlink_if_there(dst_fd, copy_name)
            return plan.recorded
        for candidate in free_names(plan.path.name):
            try:
                rename_noreplace(target.parent_fd, target.name, dst_fd, candidate)
            except FileExistsError:
                continue
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise
                return _archive_across(target, dst_fd, plan, copy_name, sha1, record_name, on_progress)
            moved = _stat_at(dst_fd, candidate)
            if moved is None or not _same_inode(moved, target.source):
                rename_noreplace(dst_fd, candidate, target.parent_fd, target.name)
                raise ActionDeferred("another file took its name while it was being archived; trying again",
                                     "changed")
            fsync_dir(dst_fd)
            fsync_dir(target.parent_fd)
            return folder / candidate
        raise ActionDeferred(f"no free name next to {plan.path}", "archive_full")
    finally:
        os.close(dst_fd)


def _archive_across(target: ActionTarget, dst_fd: int, plan: ArchivePlan, copy_name: str, sha1: str,
                    record_name: Callable[[Path], None], on_progress: OnProgress) -> Path:
    """The archive is on another file system: copy, fsync, rename (no-replace), fsync, then delete."""
    _unlink_if_there(dst_fd, copy_name)  # left by a run that stopped mid-copy
    fd = os.open(copy_name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600,
                 dir_fd=dst_fd)
    try:
        digest = hashlib.sha1()
        for block in _blocks(target.source, on_progress):
            digest.update(block)
            _write_all(fd, block)
        st = os.fstat(target.source.fileno())
        os.fchmod(fd, st.st_mode & 0o7777)
        os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))
        os.fsync(fd)
    finally:
        os.close(fd)
    target.check_no_writer()
    if digest.hexdigest() != sha1.lower():
        os.unlink(copy_name, dir_fd=dst_fd)
        raise ActionRefused("its bytes changed while they were copied to the archive")
    fsync_dir(dst_fd)
    for candidate in free_names(plan.path.name):
        if _stat_at(dst_fd, candidate) is not None:
            continue
        record_name(plan.path.parent / candidate)
        try:
            rename_noreplace(dst_fd, copy_name, dst_fd, candidate)
        except FileExistsError:
            continue
        fsync_dir(dst_fd)
        delete_verified(target)
        return plan.path.parent / candidate
    raise ActionDeferred(f"no free name next to {plan.path}", "archive_full")


def _holds(dir_fd: int, name: str, sha1: str, on_progress: OnProgress) -> bool:
    """Whether `name` in the folder is a regular file whose bytes hash to `sha1`."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=dir_fd)
    except OSError:
        return False
    with os.fdopen(fd, "rb") as handle:
        if not stat_module.S_ISREG(os.fstat(handle.fileno()).st_mode):
            return False
        digest = hashlib.sha1()
        while block := handle.read(_COPY_BLOCK):
            digest.update(block)
            on_progress(len(block))
    return digest.hexdigest() == sha1.lower()


def _unlink_if_there(dir_fd: int, name: str) -> None:
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass


def _write_all(fd: int, data: memoryview) -> None:
    while data:
        written = os.write(fd, data)
        data = data[written:]
