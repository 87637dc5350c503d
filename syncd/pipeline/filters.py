"""Which paths under a watched root are candidates for ingestion.

A :class:`PathFilter` holds include and exclude glob patterns and answers, for a
path *relative to the watched root* (POSIX separators, no leading slash),
whether a file should be ingested and whether a directory should be descended.

Pattern language (gitignore-like, case-sensitive as Linux file names are):

* A pattern without ``/`` is matched against the basename only, at any depth:
  ``*.tmp`` excludes ``a.tmp`` and ``x/y/a.tmp``.
* A pattern containing ``/`` is matched against the whole relative path,
  anchored at the root: ``reports/*.pdf`` matches ``reports/q1.pdf`` but not
  ``old/reports/q1.pdf``; a leading ``/`` anchors a plain name at the root
  (``/todo.txt`` matches ``todo.txt`` only).
* ``*`` matches any run of characters except ``/``, ``?`` one character except
  ``/``, ``[...]`` a character class; ``**`` matches across ``/``, and ``**/``
  matches zero or more whole directories (``**/draft/*.doc``).

Excludes apply to files and to directories: an excluded directory is not
descended, so nothing below it is ever a candidate. Includes apply to files
only (an empty include list means "every file"), so ``include=["*.pdf"]``
still descends into sub-folders to find PDFs there.

The default excludes skip the temporary names that editors, browsers and
copy tools write before the final rename, plus dotfiles and dot-directories:
see :data:`DEFAULT_EXCLUDES`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from syncd.config import DEFAULT_EXCLUDE, WatchConfig

DEFAULT_EXCLUDES: tuple[str, ...] = DEFAULT_EXCLUDE
"""Patterns excluded unless the caller passes ``use_default_excludes=False``."""


class FilterPatternError(ValueError):
    """A glob pattern given to :class:`PathFilter` is unusable; says which and why."""

    def __init__(self, pattern: object, problem: str) -> None:
        super().__init__(f"invalid path pattern {pattern!r}: {problem}")
        self.pattern = pattern
        self.problem = problem


@dataclass(frozen=True, slots=True)
class _CompiledPattern:
    source: str
    regex: re.Pattern[str]
    whole_path: bool  # True: match the relative path; False: match the basename

    def matches(self, relpath: str, basename: str) -> bool:
        return self.regex.fullmatch(relpath if self.whole_path else basename) is not None


def _translate_glob(pattern: str) -> str:
    """Regex source for one glob pattern under the rules in the module docstring."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        char = pattern[i]
        if char == "*":
            if pattern.startswith("**/", i):
                out.append("(?:.*/)?")
                i += 3
                continue
            if pattern.startswith("**", i):
                out.append(".*")
                i += 2
                continue
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            # As in fnmatch, a ']' right after '[' (or '[!') is a literal member of the class.
            negated = pattern.startswith(("[!", "[^"), i)
            end = pattern.find("]", i + (3 if negated else 2))
            if end == -1:
                raise FilterPatternError(pattern, "unclosed '[' character class")
            body = pattern[i + 1 : end]
            if negated:
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = end
        else:
            out.append(re.escape(char))
        i += 1
    return "".join(out)


def _compile(pattern: object) -> _CompiledPattern:
    if not isinstance(pattern, str):
        raise FilterPatternError(pattern, "must be a string")
    text = pattern.strip()
    if not text:
        raise FilterPatternError(pattern, "is empty")
    if "\x00" in text:
        raise FilterPatternError(pattern, "contains a NUL character")
    whole_path = "/" in text  # before removing a leading '/', which anchors "/top.txt" at the root
    text = text.removeprefix("/")
    if text.endswith("/"):
        raise FilterPatternError(pattern, "must not end with '/' (excludes apply to directories already)")
    if ".." in text.split("/"):
        raise FilterPatternError(pattern, "must not contain '..' (patterns are relative to the watched root)")
    try:
        regex = re.compile(_translate_glob(text), re.DOTALL)
    except re.error as exc:
        raise FilterPatternError(pattern, f"cannot be compiled ({exc})") from exc
    return _CompiledPattern(source=pattern, regex=regex, whole_path=whole_path)


def _basename(relpath: str) -> str:
    return relpath.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class PathFilter:
    """Include/exclude decisions for paths relative to a watched root.

    ``include``: glob patterns a *file* must match (any of them) to be a
    candidate; empty means every file. ``exclude``: glob patterns that remove
    files and whole directories; :data:`DEFAULT_EXCLUDES` are added unless
    ``use_default_excludes`` is False. Raises :class:`FilterPatternError` for
    a pattern that is not a non-empty relative glob.
    """

    include: tuple[str, ...]
    exclude: tuple[str, ...]
    _include: tuple[_CompiledPattern, ...] = field(repr=False, compare=False)
    _exclude: tuple[_CompiledPattern, ...] = field(repr=False, compare=False)

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
        exclude_patterns = tuple(exclude) + (DEFAULT_EXCLUDES if use_default_excludes else ())
        object.__setattr__(self, "include", include_patterns)
        object.__setattr__(self, "exclude", exclude_patterns)
        object.__setattr__(self, "_include", tuple(_compile(p) for p in include_patterns))
        object.__setattr__(self, "_exclude", tuple(_compile(p) for p in exclude_patterns))

    def is_excluded(self, relpath: str) -> bool:
        """True if this one path (file or directory) matches an exclude pattern.

        Does not look at the parent directories; see :meth:`accepts_file`.
        """
        basename = _basename(relpath)
        return any(p.matches(relpath, basename) for p in self._exclude)

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
        return not self.is_excluded(relpath)

    def accepts_file(self, relpath: str, *, check_parents: bool = True) -> bool:
        """True if the file ``relpath`` is a candidate for ingestion.

        The file must not be excluded, must match an include pattern when
        there are any, and (with ``check_parents``, the default) must not lie
        below an excluded directory.
        """
        relpath = relpath.strip("/")
        if not relpath:
            return False
        if check_parents and not self._parents_accepted(relpath):
            return False
        basename = _basename(relpath)
        if any(p.matches(relpath, basename) for p in self._exclude):
            return False
        return not self._include or any(p.matches(relpath, basename) for p in self._include)

    def _parents_accepted(self, relpath: str) -> bool:
        parts = relpath.split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            if self.is_excluded("/".join(parts[:depth])):
                return False
        return True


def watch_filter(watch: WatchConfig) -> PathFilter:
    """The filter of a configured watch (its `exclude` already holds the defaults it keeps)."""
    return PathFilter(watch.include, watch.exclude, use_default_excludes=False)
