"""Which paths under a watched root are candidates for ingestion.

A :class:`PathFilter` holds include and exclude patterns and answers, for a
path *relative to the watched root* (POSIX separators, no leading slash),
whether a file should be ingested and whether a directory should be
descended. The scanner and the watcher of a watch share one filter, so both
always agree on what a candidate is.

Patterns follow **gitignore** semantics (the ``pathspec`` library's
``GitIgnoreSpec``), case-sensitive as Linux names are:

* a pattern without a ``/`` (other than a trailing one) matches a name at any
  depth: ``*.tmp`` matches ``a.tmp`` and ``x/y/a.tmp``;
* a pattern with a ``/`` at the start or in the middle is anchored at the
  root: ``reports/*.pdf`` matches ``reports/q1.pdf``, not
  ``old/reports/q1.pdf``; ``/todo.txt`` matches ``todo.txt`` only;
* a trailing ``/`` matches directories only: ``build/``;
* ``*`` matches anything but ``/``, ``?`` one character but ``/``, ``[...]``
  a class (``[!...]`` negated); ``**`` matches across directories
  (``**/draft/*.doc``, ``inbox/**``);
* ``!pattern`` re-includes what an earlier pattern excluded; the last
  pattern that matches decides. As in git, a file inside an excluded
  *directory* cannot be re-included: the directory is never descended.

Excludes apply to files and directories; includes to files only (the default
``*`` takes every file), so ``include: ["*.pdf"]`` still descends into
sub-folders to find PDFs there.

**Defaults.** :data:`DEFAULT_EXCLUDES` (editor, browser and copy-tool
temporaries; dotfiles and dot-directories) come first and the watch's own
excludes after them, so a watch can add to them and re-include one with
``!`` (``!.htaccess``); ``use_default_excludes=False`` (config
``default_excludes: false``) drops them.

**Always excluded**, whatever the configuration: syncd's own set-aside names
(``.NAME.syncd-PID-STAMP``, see :func:`set_aside_name`), which exist for an
instant while an uploaded file is deleted or archived and must never be
uploaded themselves.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

import pathspec
from pathspec.patterns.gitignore.base import GitIgnorePatternError

from syncd.config import DEFAULT_EXCLUDE, WatchConfig

DEFAULT_EXCLUDES: tuple[str, ...] = DEFAULT_EXCLUDE
"""Patterns excluded unless the caller passes ``use_default_excludes=False``."""

_SET_ASIDE = re.compile(r"\..+\.syncd-[0-9]+-[0-9]+", re.DOTALL)


def set_aside_name(name: str, pid: int, stamp: int) -> str:
    """The temporary name a file gets while syncd deletes or archives it (same directory)."""
    return f".{name}.syncd-{pid}-{stamp}"


def is_set_aside_name(name: str) -> bool:
    """True for a name :func:`set_aside_name` makes; such entries are never candidates."""
    return _SET_ASIDE.fullmatch(name) is not None


class FilterPatternError(ValueError):
    """A glob pattern given to :class:`PathFilter` is unusable; says which and why."""

    def __init__(self, pattern: object, problem: str) -> None:
        super().__init__(f"invalid path pattern {pattern!r}: {problem}")
        self.pattern = pattern
        self.problem = problem


def _unclosed_class(text: str) -> bool:
    index = 0
    while index < len(text):
        char = text[index]
        if char == "\\":
            index += 2
            continue
        if char == "[":
            start = index + 1
            if text[start : start + 1] in ("!", "^"):
                start += 1
            # As in fnmatch and git, a ']' right after '[' (or '[!') is a member of the class.
            end = text.find("]", start + 1)
            if end == -1:
                return True
            index = end
        index += 1
    return False


def _check(pattern: object) -> str:
    """The pattern as gitignore reads it; raises FilterPatternError for a pattern that is surely a mistake."""
    if not isinstance(pattern, str):
        raise FilterPatternError(pattern, "must be a string")
    text = pattern.strip()
    if not text or text == "!":
        raise FilterPatternError(pattern, "is empty")
    if "\x00" in text:
        raise FilterPatternError(pattern, "contains a NUL character")
    if text.startswith("#"):
        raise FilterPatternError(pattern, r"starts with '#', which gitignore reads as a comment (write \# for a name)")
    body = text.removeprefix("!").strip("/")
    if not body:
        raise FilterPatternError(pattern, "matches no name (only '/')")
    if ".." in body.split("/"):
        raise FilterPatternError(pattern, "must not contain '..' (patterns are relative to the watched root)")
    if _unclosed_class(body):
        raise FilterPatternError(pattern, "unclosed '[' character class")
    return text


def _compile(patterns: tuple[str, ...]) -> pathspec.GitIgnoreSpec:
    lines = [_check(p) for p in patterns]
    try:
        return pathspec.GitIgnoreSpec.from_lines(lines)
    except GitIgnorePatternError:
        for pattern, line in zip(patterns, lines):  # name the one pattern at fault
            try:
                pathspec.GitIgnoreSpec.from_lines([line])
            except GitIgnorePatternError as exc:
                raise FilterPatternError(pattern, f"is not a valid gitignore pattern ({exc})") from exc
        raise


def _basename(relpath: str) -> str:
    return relpath.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class PathFilter:
    """Include/exclude decisions for paths relative to a watched root.

    ``include``: patterns a *file* must match (the last matching one not
    negated) to be a candidate; empty means every file. ``exclude``: patterns
    that remove files and whole directories, after :data:`DEFAULT_EXCLUDES`
    unless ``use_default_excludes`` is False. Raises
    :class:`FilterPatternError` for a pattern that is not a usable gitignore
    pattern relative to the root.
    """

    include: tuple[str, ...]
    exclude: tuple[str, ...]  # the patterns in force: defaults (when used) then the given ones
    _include: pathspec.GitIgnoreSpec | None = field(repr=False, compare=False)
    _exclude: pathspec.GitIgnoreSpec = field(repr=False, compare=False)

    def __init__(
        self,
        include: Iterable[str] = (),
        exclude: Iterable[str] = (),
        *,
        use_default_excludes: bool = True,
    ) -> None:
        if isinstance(include, str) or isinstance(exclude, str):
            given = include if isinstance(include, str) else exclude
            raise FilterPatternError(given, "give a list of patterns, not a string")
        include_patterns = tuple(include)
        exclude_patterns = (DEFAULT_EXCLUDES if use_default_excludes else ()) + tuple(exclude)
        object.__setattr__(self, "include", include_patterns)
        object.__setattr__(self, "exclude", exclude_patterns)
        object.__setattr__(self, "_include", _compile(include_patterns) if include_patterns else None)
        object.__setattr__(self, "_exclude", _compile(exclude_patterns))

    def is_excluded(self, relpath: str, *, is_directory: bool = False) -> bool:
        """True if this one path matches the excludes (or is a set-aside name).

        Does not look at the parent directories; see :meth:`accepts_file`.
        ``is_directory`` lets directory-only patterns (``build/``) match.
        """
        if is_set_aside_name(_basename(relpath)):
            return True
        return self._exclude.match_file(relpath + "/" if is_directory else relpath)

    def accepts_directory(self, relpath: str, *, check_parents: bool = True) -> bool:
        """True if the directory ``relpath`` should be descended.

        The root itself (``""``) is always accepted. With ``check_parents``
        (default) every ancestor must be accepted too; a walker that already
        pruned excluded ancestors can pass False to save the work.
        """
        relpath = relpath.strip("/")
        if not relpath:
            return True
        if check_parents and not self._parents_accepted(relpath):
            return False
        return not self.is_excluded(relpath, is_directory=True)

    def accepts_file(self, relpath: str, *, check_parents: bool = True) -> bool:
        """True if the file ``relpath`` is a candidate for ingestion.

        The file must not be excluded, must match the includes when there are
        any, and (with ``check_parents``, the default) must not lie below an
        excluded directory.
        """
        relpath = relpath.strip("/")
        if not relpath:
            return False
        if check_parents and not self._parents_accepted(relpath):
            return False
        if self.is_excluded(relpath):
            return False
        return self._include is None or self._include.match_file(relpath)

    def _parents_accepted(self, relpath: str) -> bool:
        parts = relpath.split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            if self.is_excluded("/".join(parts[:depth]), is_directory=True):
                return False
        return True


def watch_filter(watch: WatchConfig) -> PathFilter:
    """The filter of a configured watch: its excludes added to the defaults unless it turned them off."""
    return PathFilter(watch.include, watch.exclude, use_default_excludes=watch.default_excludes)
