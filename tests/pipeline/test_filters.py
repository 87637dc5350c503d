"""PathFilter: default temp-file excludes, include/exclude semantics, bad patterns."""

from __future__ import annotations

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


def test_check_parents_false_only_looks_at_the_last_component() -> None:
    f = PathFilter(exclude=["archive"])
    assert f.accepts_file("archive/a.pdf", check_parents=False)
    assert not f.accepts_file("archive/a.pdf")


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
    assert PathFilter(exclude=["*.log"]).exclude == ("*.log", *DEFAULT_EXCLUDES)


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("", "is empty"),
        ("   ", "is empty"),
        ("../x", "'..'"),
        ("logs/", "must not end with '/'"),
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
