"""The emulator as benchmarks use it: syncd's harness (`EmulatorProcess`, a fresh
``python -m syncd.emulator`` on an ephemeral port with its admin API at hand), and
what benchmarks read from its statistics."""

from __future__ import annotations

from typing import Any

from syncd.emulator.harness import EmulatorProcess

__all__ = ["SCALED_DAEMON_UPLOADS_PER_MINUTE", "SCALED_UPLOADS_PER_MINUTE", "BenchError", "EmulatorProcess",
           "count_status"]

#: Box's per-user upload limit (240 a minute, REFERENCE.md) scaled up 10x, enforced by the
#: emulator (``--upload-rate-limit``) where a benchmark measures more than Box would let one user do.
SCALED_UPLOADS_PER_MINUTE = 2400
#: The daemon's ``box.uploads_per_minute`` under that limit: just under it, as its default (230)
#: is under Box's 240, so the rate plus the client's initial burst (2 s of uploads) stays within
#: any 60 s window of the emulator.
SCALED_DAEMON_UPLOADS_PER_MINUTE = 2320


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
