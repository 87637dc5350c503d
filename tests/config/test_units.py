"""Sizes and durations in human form."""

from __future__ import annotations

import pytest

from syncd.config import format_duration, format_size, parse_duration, parse_size


@pytest.mark.parametrize(("text", "size"), [
    (1048576, 1048576), ("1048576", 1048576), ("50MiB", 52_428_800), ("20MB", 20_000_000),
    ("20 mb", 20_000_000), ("1.5KiB", 1536), ("512B", 512), ("1GiB", 2**30), ("2TB", 2 * 10**12), (0, 0),
])
def test_parse_size(text: object, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(("text", "reason"), [
    ("50 megs", "unknown unit 'megs'"), ("-1", "is not a size"), (-5, "negative"), (True, "boolean"),
    ("1.5B", "whole number of bytes"), (1.5, "fraction of a byte"), ([1], "a list is not a size"), ("", "not a size"),
])
def test_parse_size_refuses(text: object, reason: str) -> None:
    with pytest.raises(ValueError, match=reason.replace("(", r"\(")):
        parse_size(text)


@pytest.mark.parametrize(("text", "seconds"), [
    ("500ms", 0.5), ("10s", 10.0), ("5m", 300.0), ("1h", 3600.0), ("1d", 86400.0), ("1h30m", 5400.0),
    ("1.5s", 1.5), ("0", 0.0), (0, 0.0), ("2m 30s", 150.0),
])
def test_parse_duration(text: object, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(("text", "reason"), [
    ("10", "did you mean '10s'"), (30, "did you mean '30s'"), ("10 minutes", "not a duration"),
    ("5x", "not a duration"), ("s", "not a duration"), (None, "null is not a duration"), (False, "boolean"),
])
def test_parse_duration_refuses(text: object, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_duration(text)


def test_formatting_round_trips() -> None:
    for size in (52_428_800, 20_000_000, 1536, 7, 0):
        assert parse_size(format_size(size)) == size
    assert format_size(52_428_800) == "50MiB" and format_size(20_000_000) == "20MB"
    for seconds in (0.5, 10, 5400, 86400 + 61, 0):
        assert parse_duration(format_duration(seconds)) == pytest.approx(seconds)
    assert format_duration(5400) == "1h30m" and format_duration(0.3) == "300ms"
