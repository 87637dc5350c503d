"""Walk a watched root and list the files that are candidates for ingestion.

The :class:`Scanner` is the backstop of the watcher: it runs at start-up
(files dropped while the daemon was down), periodically, whenever the watcher
may have lost events, and on a directory moved in. It yields one
:class:`ScanEntry` (relative path and :class:`~syncd.pipeline.identity.FileIdentity`:
device, inode, size, mtime_ns, ctime_ns) per regular file the
:class:`~syncd.pipeline.filters.PathFilter` accepts, and reports what it could
not look at (permission denied, vanished mid-walk, symlinks, FIFOs...) as
:class:`ScanProblem` values through a callback instead of dying.

Symlink policy (the same in :func:`stat_identity`, used by the readiness
tracker, so both agree on what a candidate is):

* ``follow_symlinks=False`` (default): symlinks are never followed, neither to
  files nor to directories; each one is reported as
  :attr:`ProblemKind.SYMLINK_SKIPPED`, so a user who dropped a link sees why it
  was not uploaded. This is what rclone does without ``--copy-links``.
* ``follow_symlinks=True``: a symlink is followed only when its fully resolved
  target lies inside the watched root (files are listed under the link's name
  with the target's size/mtime/inode, directories are descended once, loops
  are cut); a link pointing outside the root is reported as
  :attr:`ProblemKind.SYMLINK_OUTSIDE_ROOT`. Nothing outside the root is ever
  read, whatever the setting.

Relative paths use ``/`` and never start with it; the root itself is ``""``.
A name that is not valid UTF-8 is a ``str`` holding surrogate escapes
(``os.fsdecode``); ``os.fsencode`` gives its bytes back. ``str(problem)``
renders such paths with :func:`~syncd.pipeline.names.display_path`.

Everything here looks *by path*: it decides what to look at, never what is
read. Reading goes through :func:`syncd.pipeline.source.open_source`.
"""

from __future__ import annotations

import errno
import os
import stat as stat_module
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from syncd.pipeline.filters import PathFilter
from syncd.pipeline.identity import FileIdentity, FileStat, HasIdentity
from syncd.pipeline.names import display_path

DEFAULT_BACKSTOP_INTERVAL = 600.0
"""Seconds between backstop scans of every root (the daemon schedules them; see DESIGN.md invariant 2)."""


@dataclass(frozen=True, slots=True)
class ScanEntry(HasIdentity):
    """One candidate file found by a scan, as seen at that moment."""

    relpath: str
    identity: FileIdentity


class ProblemKind(StrEnum):
    """Why a path was not listed (or not fully walked)."""

    PERMISSION_DENIED = "permission_denied"
    VANISHED = "vanished"
    SYMLINK_SKIPPED = "symlink_skipped"
    SYMLINK_OUTSIDE_ROOT = "symlink_outside_root"
    SYMLINK_LOOP = "symlink_loop"
    NOT_REGULAR_FILE = "not_regular_file"
    IO_ERROR = "io_error"
    CHANGED = "changed"  # not the file readiness saw any more (see syncd.pipeline.source)
    BUSY = "busy"  # another process holds a lease that refuses our open for now


#: Kinds that will not clear up until the entry itself changes: a link (never followed), a
#: FIFO, socket, device or directory where a file was. Such an entry is parked in the journal
#: with the reason; readiness stops tracking it (a new event nominates it again).
FINAL_PROBLEMS = frozenset({
    ProblemKind.SYMLINK_SKIPPED,
    ProblemKind.SYMLINK_OUTSIDE_ROOT,
    ProblemKind.SYMLINK_LOOP,
    ProblemKind.NOT_REGULAR_FILE,
})


@dataclass(frozen=True, slots=True)
class ScanProblem:
    """A path the scanner or the readiness tracker could not use, with a human-readable reason.

    ``directory`` is True when a directory could not be listed (fully): the
    scan is then incomplete below ``relpath`` ("" = the whole root), so files
    there that a caller knows of must not be taken as deleted just because
    this scan did not list them.
    """

    relpath: str
    kind: ProblemKind
    detail: str
    directory: bool = False

    def __str__(self) -> str:
        return f"{display_path(self.relpath) or '.'}: {self.kind.value}: {self.detail}"


class RelativePathError(ValueError):
    """A relative path given by a caller would leave the watched root or is malformed."""

    def __init__(self, relpath: object, problem: str) -> None:
        super().__init__(f"bad path relative to the watched root {relpath!r}: {problem}")
        self.relpath = relpath


ProblemCallback = Callable[[ScanProblem], None]

_FILE_TYPES = (
    (stat_module.S_ISDIR, "is a directory"),
    (stat_module.S_ISFIFO, "is a FIFO (named pipe)"),
    (stat_module.S_ISSOCK, "is a UNIX socket"),
    (stat_module.S_ISCHR, "is a character device"),
    (stat_module.S_ISBLK, "is a block device"),
    (stat_module.S_ISLNK, "is a symbolic link"),
)


def not_regular_reason(mode: int) -> str:
    """Why an entry of this ``st_mode`` is not uploaded, in words ("is a FIFO (named pipe)")."""
    for test, reason in _FILE_TYPES:
        if test(mode):
            return reason
    return "is not a regular file"


def normalize_relpath(relpath: str) -> str:
    """``relpath`` with redundant ``/`` and ``.`` removed; raises :class:`RelativePathError`
    if it is absolute, climbs with ``..``, or contains NUL."""
    if not isinstance(relpath, str):
        raise RelativePathError(relpath, "must be a string")
    if "\x00" in relpath:
        raise RelativePathError(relpath, "contains a NUL character")
    if relpath.startswith("/"):
        raise RelativePathError(relpath, "must be relative, not absolute")
    parts = [p for p in relpath.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise RelativePathError(relpath, "must not contain '..'")
    return "/".join(parts)


def _is_inside(path_real: str, root_real: str) -> bool:
    return path_real == root_real or path_real.startswith(root_real.rstrip("/") + "/")


def _problem_from_oserror(relpath: str, exc: OSError, *, directory: bool = False) -> ScanProblem:
    if isinstance(exc, (FileNotFoundError, NotADirectoryError)):
        return ScanProblem(relpath, ProblemKind.VANISHED, "disappeared while being looked at", directory)
    if isinstance(exc, PermissionError):
        return ScanProblem(relpath, ProblemKind.PERMISSION_DENIED, "permission denied", directory)
    if exc.errno == errno.ELOOP:
        return ScanProblem(relpath, ProblemKind.SYMLINK_LOOP, "too many levels of symbolic links", directory)
    return ScanProblem(relpath, ProblemKind.IO_ERROR, exc.strerror or str(exc), directory)


def _parents_free_of_symlinks(root: str, relpath: str) -> bool:
    """True if no directory between root and ``relpath``'s parent is a symlink."""
    parts = relpath.split("/")[:-1]
    current = root
    for part in parts:
        current = os.path.join(current, part)
        if stat_module.S_ISLNK(os.lstat(current).st_mode):
            return False
    return True


def stat_identity(
    root: Path,
    relpath: str,
    *,
    follow_symlinks: bool = False,
    parents_checked: dict[str, bool] | None = None,
) -> FileIdentity | ScanProblem:
    """Stat the file ``relpath`` under ``root`` under the module's symlink policy.

    Returns its :class:`FileIdentity`, or a :class:`ScanProblem` saying why it
    is not a usable regular file (``VANISHED`` when it does not exist any
    more). Never raises for conditions on disk; raises
    :class:`RelativePathError` for a malformed ``relpath``.
    ``parents_checked``: a dict the caller keeps for one batch of calls,
    remembering which parent directories were found free of symlinks, so
    files sharing a directory do not re-check it.

    This is a check by path, good for deciding what to look at; what is read
    and uploaded is decided by :func:`syncd.pipeline.source.open_source`,
    which cannot be raced by a symlink swapped in after this stat.
    """
    relpath = normalize_relpath(relpath)
    root_abs = os.fspath(root)
    if not os.path.isabs(root_abs):
        root_abs = os.path.abspath(root_abs)
    full = os.path.join(root_abs, relpath)
    try:
        if not follow_symlinks:
            st = os.lstat(full)
            if stat_module.S_ISLNK(st.st_mode):
                return ScanProblem(relpath, ProblemKind.SYMLINK_SKIPPED, "symbolic links are not followed")
            parent = relpath.rpartition("/")[0]
            parents_ok = parents_checked.get(parent) if parents_checked is not None else None
            if parents_ok is None:
                parents_ok = _parents_free_of_symlinks(root_abs, relpath)
                if parents_checked is not None:
                    parents_checked[parent] = parents_ok
            if not parents_ok:
                return ScanProblem(relpath, ProblemKind.SYMLINK_SKIPPED, "a parent directory is a symbolic link")
        else:
            if not _is_inside(os.path.realpath(full), os.path.realpath(root_abs)):
                return ScanProblem(relpath, ProblemKind.SYMLINK_OUTSIDE_ROOT, "resolves outside the watched root")
            st = os.stat(full)
    except OSError as exc:
        return _problem_from_oserror(relpath, exc)
    if not stat_module.S_ISREG(st.st_mode):
        return ScanProblem(relpath, ProblemKind.NOT_REGULAR_FILE, not_regular_reason(st.st_mode))
    return FileIdentity.from_stat(st)


class Scanner:
    """Lists candidate files below one watched root with ``os.scandir``.

    ``root``: the watched directory. ``recursive``: descend into
    sub-directories (False: only files directly in the root). ``path_filter``:
    include/exclude rules (default: :class:`PathFilter` with its default
    excludes); excluded directories are not descended and excluded files are
    not even stat'ed. ``follow_symlinks``: see the module docstring.
    ``on_problem``: called (in the scanning thread) for every path that could
    not be looked at; the scan goes on.
    """

    def __init__(
        self,
        root: Path | str,
        *,
        recursive: bool = True,
        path_filter: PathFilter | None = None,
        follow_symlinks: bool = False,
        on_problem: ProblemCallback | None = None,
    ) -> None:
        self.root = Path(os.path.abspath(root))
        self.recursive = recursive
        self.path_filter = path_filter if path_filter is not None else PathFilter()
        self.follow_symlinks = follow_symlinks
        self._on_problem = on_problem

    def scan(self, subdir: str = "", *, on_problem: ProblemCallback | None = None) -> Iterator[ScanEntry]:
        """Yield a :class:`ScanEntry` for every candidate file below ``subdir``.

        ``on_problem``: where this scan's problems go (default: the scanner's own callback).

        ``subdir`` is relative to the root (``""``, the default, is the whole
        root); it is how a "scan directory" nomination for a directory moved
        in is served. A ``subdir`` that is excluded, missing or reached through
        a symlink the policy does not follow yields nothing (the last two are
        reported). For a non-recursive scanner only ``""`` lists anything.
        Entries come in no particular order. The generator is lazy: problems
        are reported as the walk reaches them.
        """
        report = on_problem if on_problem is not None else self._report
        start_rel = normalize_relpath(subdir)
        if start_rel and (not self.recursive or not self.path_filter.accepts_directory(start_rel)):
            return
        root_str = str(self.root)
        root_real = os.path.realpath(root_str)
        start_abs = os.path.join(root_str, start_rel) if start_rel else root_str
        visited: set[tuple[int, int]] = set()
        if start_rel:
            problem = self._check_start(root_str, root_real, start_rel)
            if problem is not None:
                report(problem)
                return
        if self.follow_symlinks:
            try:
                st = os.stat(start_abs)
            except OSError as exc:
                report(_problem_from_oserror(start_rel, exc, directory=True))
                return
            visited.add((st.st_dev, st.st_ino))
        stack: list[tuple[str, str]] = [(start_abs, start_rel + "/" if start_rel else "")]
        while stack:
            directory, prefix = stack.pop()
            yield from self._scan_one_directory(directory, prefix, root_real, visited, stack, report)

    def _check_start(self, root_str: str, root_real: str, start_rel: str) -> ScanProblem | None:
        full = os.path.join(root_str, start_rel)
        try:
            if self.follow_symlinks:
                if not _is_inside(os.path.realpath(full), root_real):
                    return ScanProblem(start_rel, ProblemKind.SYMLINK_OUTSIDE_ROOT, "resolves outside the watched root")
                is_dir = stat_module.S_ISDIR(os.stat(full).st_mode)
            else:
                st = os.lstat(full)
                if stat_module.S_ISLNK(st.st_mode) or not _parents_free_of_symlinks(root_str, start_rel):
                    return ScanProblem(start_rel, ProblemKind.SYMLINK_SKIPPED, "symbolic links are not followed")
                is_dir = stat_module.S_ISDIR(st.st_mode)
        except OSError as exc:
            return _problem_from_oserror(start_rel, exc, directory=True)
        if not is_dir:
            return ScanProblem(start_rel, ProblemKind.VANISHED, "is no longer a directory", directory=True)
        return None

    def _scan_one_directory(
        self,
        directory: str,
        prefix: str,
        root_real: str,
        visited: set[tuple[int, int]],
        stack: list[tuple[str, str]],
        report: ProblemCallback,
    ) -> Iterator[ScanEntry]:
        accepts_file = self.path_filter.accepts_file
        accepts_directory = self.path_filter.accepts_directory
        try:
            iterator = os.scandir(directory)
        except OSError as exc:
            report(_problem_from_oserror(prefix.rstrip("/"), exc, directory=True))
            return
        with iterator:
            while True:
                try:
                    entry = next(iterator)
                except StopIteration:
                    return
                except OSError as exc:  # e.g. EIO half-way through a directory on a flaky mount
                    report(_problem_from_oserror(prefix.rstrip("/"), exc, directory=True))
                    return
                relpath = prefix + entry.name
                try:
                    if entry.is_symlink():
                        yield from self._symlink(entry, relpath, root_real, visited, stack, report)
                    elif entry.is_dir(follow_symlinks=False):
                        if self.recursive and accepts_directory(relpath, check_parents=False):
                            if self.follow_symlinks:
                                # Remember real directories too, so a link to one is not walked twice.
                                dir_st = entry.stat(follow_symlinks=False)
                                key = (dir_st.st_dev, dir_st.st_ino)
                                if key in visited:
                                    continue
                                visited.add(key)
                            stack.append((entry.path, relpath + "/"))
                    elif accepts_file(relpath, check_parents=False):
                        st = entry.stat(follow_symlinks=False)
                        if stat_module.S_ISREG(st.st_mode):
                            yield ScanEntry(relpath, FileIdentity.from_stat(st))
                        else:
                            report(ScanProblem(relpath, ProblemKind.NOT_REGULAR_FILE,
                                                     not_regular_reason(st.st_mode)))
                except OSError as exc:
                    report(_problem_from_oserror(relpath, exc))

    def _symlink(
        self,
        entry: os.DirEntry[str],
        relpath: str,
        root_real: str,
        visited: set[tuple[int, int]],
        stack: list[tuple[str, str]],
        report: ProblemCallback,
    ) -> Iterator[ScanEntry]:
        # The filter sees the link's own name: a link called "x.tmp" is excluded like a file would be.
        if self.path_filter.is_excluded(relpath):
            return
        if not self.follow_symlinks:
            report(ScanProblem(relpath, ProblemKind.SYMLINK_SKIPPED, "symbolic links are not followed"))
            return
        if not _is_inside(os.path.realpath(entry.path), root_real):
            report(ScanProblem(relpath, ProblemKind.SYMLINK_OUTSIDE_ROOT, "resolves outside the watched root"))
            return
        st = os.stat(entry.path)  # OSError (dangling link, loop) is reported by the caller
        if stat_module.S_ISDIR(st.st_mode):
            if not self.recursive or not self.path_filter.accepts_directory(relpath, check_parents=False):
                return
            key = (st.st_dev, st.st_ino)
            if key in visited:
                report(ScanProblem(relpath, ProblemKind.SYMLINK_LOOP,
                                         "directory already visited through another path"))
                return
            visited.add(key)
            stack.append((entry.path, relpath + "/"))
        elif stat_module.S_ISREG(st.st_mode):
            if self.path_filter.accepts_file(relpath, check_parents=False):
                yield ScanEntry(relpath, FileIdentity.from_stat(st))
        else:
            report(ScanProblem(relpath, ProblemKind.NOT_REGULAR_FILE, not_regular_reason(st.st_mode)))

    def _report(self, problem: ScanProblem) -> None:
        if self._on_problem is not None:
            self._on_problem(problem)
