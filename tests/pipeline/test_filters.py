"""PathFilter: default temp-file excludes, include/exclude semantics, bad patterns."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from syncd.config import WatchConfig
from syncd.pipeline.filters import DEFAULT_EXCLUDES, FilterPatternError, PathFilter, watch_filter


@pytest.mark.parametrize(
    "relpath",
    [
        "report.tmp",
        "movie.mkv.part",
        "x/y/file.partial",
        "setup.exe.crdownload",
        ".~lock.budget.ods#",
        "notes.txt.swp",
        "draft.doc~",
        ".hidden",
        ".git/config",
        "a/.cache/b/c.txt",
    ],
)
def test_defaults_exclude_temporary_and_dot_files(relpath: str) -> None:
    assert not PathFilter().accepts_file(relpath)


@pytest.mark.parametrize("relpath", ["report.pdf", "a/b/c.txt", "tmp/file.bin", "part", "x.tmp.pdf", "a~b"])
def test_defaults_accept_ordinary_files(relpath: str) -> None:
    assert PathFilter().accepts_file(relpath)


def test_excluded_directory_is_not_descended_and_hides_everything_below() -> None:
    f = PathFilter(exclude=["archive"])
    assert not f.accepts_directory("archive")
    assert not f.accepts_directory("archive/2024")
    assert not f.accepts_file("archive/2024/a.pdf")
    assert f.accepts_directory("x/archived")
    assert not f.accepts_directory(".snapshots")  # dot-directories by default
    assert f.accepts_directory("")  # the root is always walked


def test_check_parents_false_only_looks_at_the_path_itself() -> None:
    # As in git, a file below an excluded directory cannot be re-included; a walker that never
    # descends excluded directories may skip that ancestor check.
    f = PathFilter(exclude=["archive/", "!archive/a.pdf"])
    assert f.accepts_file("archive/a.pdf", check_parents=False)
    assert not f.accepts_file("archive/a.pdf")
    assert not f.accepts_directory("archive")


def test_basename_patterns_match_at_any_depth_and_path_patterns_are_anchored() -> None:
    f = PathFilter(include=["*.pdf", "invoices/*.xml"])
    assert f.accepts_file("a.pdf") and f.accepts_file("deep/down/a.pdf")
    assert f.accepts_file("invoices/1.xml")
    assert not f.accepts_file("old/invoices/1.xml")
    assert not f.accepts_file("invoices/2024/1.xml")  # '*' does not cross '/'
    assert not f.accepts_file("a.xml")


def test_double_star_crosses_directories() -> None:
    f = PathFilter(include=["**/scans/*.tif", "inbox/**"])
    assert f.accepts_file("scans/a.tif")
    assert f.accepts_file("x/y/scans/a.tif")
    assert f.accepts_file("inbox/a/b/c.bin")
    assert not f.accepts_file("x/scans/sub/a.tif")


def test_includes_do_not_stop_descent_but_excludes_win_over_includes() -> None:
    f = PathFilter(include=["*.pdf"], exclude=["secret*"])
    assert f.accepts_directory("any/dir")
    assert not f.accepts_file("secret.pdf")
    assert not f.accepts_file("secret-dir/a.pdf")
    assert not f.accepts_file("a.txt")


def test_character_classes_and_question_mark() -> None:
    f = PathFilter(include=["scan-[0-9][0-9].tif", "[!x]?.csv"])
    assert f.accepts_file("scan-07.tif")
    assert not f.accepts_file("scan-7a.tif")
    assert f.accepts_file("ab.csv")
    assert not f.accepts_file("xb.csv")
    assert not f.accepts_file("a/.csv")


def test_default_excludes_can_be_turned_off() -> None:
    f = PathFilter(use_default_excludes=False)
    assert f.exclude == ()
    assert f.accepts_file(".profile") and f.accepts_file("x.tmp")
    assert PathFilter(exclude=["*.log"]).exclude == (*DEFAULT_EXCLUDES, "*.log")


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("", "is empty"),
        ("   ", "is empty"),
        ("../x", "'..'"),
        ("/", "matches no name"),
        ("!", "is empty"),
        ("#notes", "comment"),
        ("a\\", "not a valid gitignore pattern"),
        ("a[bc", "unclosed"),
        (42, "must be a string"),
    ],
)
def test_bad_patterns_are_rejected_with_the_pattern_named(pattern: object, message: str) -> None:
    with pytest.raises(FilterPatternError) as info:
        PathFilter(include=[pattern])  # type: ignore[list-item]
    assert message in str(info.value)
    assert repr(pattern) in str(info.value)


def test_a_bare_string_instead_of_a_list_is_an_error() -> None:
    with pytest.raises(FilterPatternError, match="not a string"):
        PathFilter(exclude="*.tmp")  # would otherwise be read as the patterns '*', '.', 't', ...


def test_leading_slash_anchors_without_changing_meaning() -> None:
    assert PathFilter(include=["/top.txt"]).accepts_file("top.txt")
    assert not PathFilter(include=["/top.txt"]).accepts_file("a/top.txt")
    assert not PathFilter(include=["/x/top.txt"]).accepts_file("y/x/top.txt")


# The rules as a configured watch applies them (config supplies the patterns, the filter decides).
def _watch(**overrides: object) -> WatchConfig:
    values: dict[str, object] = {"path": Path("/srv/in"), "folder_id": "1", "name": "in"}
    values.update(overrides)
    return WatchConfig(**values)  # type: ignore[arg-type]


def accepts(watch: WatchConfig, relpath: str) -> bool:
    return watch_filter(watch).accepts_file(relpath)


@pytest.mark.parametrize(("relpath", "admitted"), [
    ("report.pdf", True), ("a/b/report.pdf", True), ("report.pdf.tmp", False), ("x.part", False),
    ("movie.mkv.crdownload", False), (".~lock.doc#", False), (".report.pdf.swp", False), ("notes~", False),
    (".hidden", False), (".git/config", False), ("sub/.cache/file", False), ("sub/file.partial", False),
])
def test_default_excludes_skip_temp_and_dot_files(relpath: str, admitted: bool) -> None:
    assert watch_filter(_watch()).accepts_file(relpath) is admitted


def test_include_patterns_on_name_or_relative_path() -> None:
    watch = _watch(include=("*.pdf", "scans/*.tif"), exclude=("archive/*",))
    assert accepts(watch, "x/y.pdf") and accepts(watch, "scans/page.tif")
    assert not accepts(watch, "other/page.tif") and not accepts(watch, "y.PDF") and not accepts(watch, "archive/a.pdf")


# ------------------------------------------------------ gitignore semantics


def test_negation_re_includes_what_an_earlier_pattern_excluded() -> None:
    f = PathFilter(exclude=["*.log", "!keep.log", "logs/", "!logs/important.txt"])
    assert not f.accepts_file("debug.log") and not f.accepts_file("deep/debug.log")
    assert f.accepts_file("keep.log") and f.accepts_file("deep/keep.log")
    # As in git: inside an excluded directory nothing can be re-included (it is never walked).
    assert not f.accepts_directory("logs") and not f.accepts_file("logs/important.txt")


def test_the_last_matching_pattern_wins() -> None:
    f = PathFilter(exclude=["!a.txt", "*.txt"])  # the negation comes first, so the exclusion wins
    assert not f.accepts_file("a.txt")


def test_a_user_pattern_can_re_include_a_default_excluded_name() -> None:
    f = PathFilter(exclude=["!.htaccess"])
    assert f.accepts_file(".htaccess") and not f.accepts_file(".profile")
    assert not f.accepts_file("download.crdownload")  # the other defaults still apply


def test_directory_only_patterns_match_directories_not_files() -> None:
    f = PathFilter(exclude=["build/"], use_default_excludes=False)
    assert not f.accepts_directory("build") and not f.accepts_file("build/out.bin")
    assert not f.accepts_directory("src/build")
    assert f.accepts_file("build")  # a file called build is not a directory


def test_negated_includes() -> None:
    f = PathFilter(include=["*.pdf", "!draft-*.pdf"])
    assert f.accepts_file("a.pdf") and not f.accepts_file("draft-1.pdf") and not f.accepts_file("a.txt")


@pytest.mark.parametrize("use_defaults", [True, False])
def test_syncds_set_aside_names_are_always_excluded(use_defaults: bool) -> None:
    f = PathFilter(exclude=["!.*", "!*"], use_default_excludes=use_defaults)  # however hard a config tries
    assert not f.accepts_file(".report.pdf.syncd-4242-123456789")
    assert not f.accepts_file("sub/.a b.syncd-1-2")
    assert f.accepts_file(".report.pdf.syncd-x-1")  # not the set-aside format: the config's "!.*" decides


def test_actions_set_aside_names_are_the_ones_the_filter_excludes() -> None:
    """syncd.pipeline.actions names what it sets aside (a delete) and its archive copies (a move across
    file systems) with set_aside_name: the filter must recognise every one it makes."""
    from syncd.pipeline import actions
    from syncd.pipeline.filters import is_set_aside_name, set_aside_name

    assert actions.set_aside_name is set_aside_name
    for made in (set_aside_name("report final.pdf", os.getpid(), 1_234_567_890_123), set_aside_name("r.pdf", 0, 7)):
        assert is_set_aside_name(made)
        assert not PathFilter(use_default_excludes=False).accepts_file(made)


def test_scanner_and_watcher_share_the_watch_filter(tmp_path: Path) -> None:
    from syncd.pipeline.scanner import Scanner
    from syncd.pipeline.watcher import WatchObserver

    watch = _watch(path=tmp_path, exclude=("*.log", "!keep.log"))
    path_filter = watch_filter(watch)
    for name in ("a.log", "keep.log", "b.txt", ".x.syncd-1-2", "c.tmp"):
        (tmp_path / name).write_bytes(b"x")
    scanned = {e.relpath for e in Scanner(tmp_path, path_filter=path_filter).scan()}
    watcher = WatchObserver("in", tmp_path, lambda n: None, path_filter=path_filter)
    assert scanned == {"keep.log", "b.txt"}
    assert {n for n in ("a.log", "keep.log", "b.txt", ".x.syncd-1-2", "c.tmp")
            if watcher.path_filter.accepts_file(n)} == scanned
