"""Fuzzed drop sequences (issue 10 acceptance): 20 seeded sequences of create/write/append/rename/
delete/truncate/chmod/symlink against a real daemon and the real emulator, with Box read back
through its API as the oracle (bench/fuzz_drops.py, which runs 500 of them as a benchmark)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.fuzz_drops import generate, play_and_check


def test_generated_sequences_are_reproducible_and_cover_every_operation() -> None:
    assert generate(7, 40) == generate(7, 40)
    assert generate(7, 40) != generate(8, 40)
    kinds = {op.kind for seed in range(20) for op in generate(seed, 12)}
    assert kinds == {"write", "append", "rename", "delete", "truncate", "chmod", "symlink", "pause"}
    assert any(op.kind == "symlink" and op.other == "" for seed in range(20) for op in generate(seed, 12))
    assert any(op.pieces > 1 and op.hold > 0.3 for seed in range(20) for op in generate(seed, 12))


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_twenty_fuzzed_sequences_lose_nothing_duplicate_nothing_and_leak_nothing(tmp_path: Path,
                                                                                 emulator) -> None:
    report = play_and_check(tmp_path / "fuzz", emulator, sequences=20, operations=12, seed=10, wave=20,
                            settle_timeout=60)
    assert report.operations > 100 and report.box_versions > 20, report
    assert report.counts() == {"lost": 0, "duplicated": 0, "partial": 0, "leaked": 0}, (
        f"{report}\n" + (tmp_path / "fuzz" / "daemon.log").read_text()[-4000:])
