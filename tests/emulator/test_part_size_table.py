"""The --part-sizes table (pure logic): parsing and lookup."""

from __future__ import annotations

import pytest

from syncd.emulator.context import PartSizeTable, parse_size

MiB = 1024**2
GiB = 1024**3


def test_default_table_matches_the_observed_data_points() -> None:
    table = PartSizeTable.parse(PartSizeTable.DEFAULT_TEXT)
    assert table.part_size(20_000_000) == 8 * MiB
    assert table.part_size(160_000_000) == 8 * MiB
    assert table.part_size(256 * MiB) == 8 * MiB
    assert table.part_size(256 * MiB + 1) == 32 * MiB
    assert table.part_size(1 * GiB) == 32 * MiB
    assert table.part_size(int(4.786 * GiB)) == 64 * MiB


@pytest.mark.parametrize(("text", "expected"), [
    ("1024", 1024), ("1KiB", 1024), ("1kb", 1000), ("8MiB", 8 * MiB), ("2GiB", 2 * GiB), ("20MB", 20_000_000),
    (" 5 B ", 5),
])
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


def test_table_without_catch_all_reuses_the_last_part_size() -> None:
    table = PartSizeTable.parse("1KiB=100")
    assert table.part_size(1024) == 100 and table.part_size(10**9) == 100


@pytest.mark.parametrize("text", ["", "8MiB", "x=1", "1KiB=0", "1KiB=-5", "*=lots"])
def test_bad_tables_are_rejected(text: str) -> None:
    with pytest.raises(ValueError):
        PartSizeTable.parse(text)
