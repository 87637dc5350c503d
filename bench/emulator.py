"""The emulator as benchmarks use it: syncd's harness (`EmulatorProcess`, a fresh
``python -m syncd.emulator`` on an ephemeral port with its admin API at hand), and
what benchmarks read from its statistics."""

from __future__ import annotations

from typing import Any

from syncd.emulator.harness import EmulatorProcess

__all__ = ["BenchError", "EmulatorProcess", "count_status"]


class BenchError(RuntimeError):
    """The benchmark could not run (emulator did not start, an upload was refused...)."""


def count_status(stats: dict[str, Any], status: str) -> tuple[int, int]:
    """(requests answered with ``status``, all requests) over every endpoint of a stats snapshot."""
    matching = total = 0
    for by_status in stats.get("requests", {}).values():
        for code, count in by_status.items():
            total += count
            if code == status:
                matching += count
    return matching, total
