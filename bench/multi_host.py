"""Several hosts benchmark (issue 16): throughput of one and two hosts, and the time to take over
a dead host's upload. Reports, never asserts.

Run: ``python -m bench.multi_host [--quick] [--lease 5s]``

Throughput: the same drop (400 files of 64 KiB; then 4 files of 128 MiB) ingested by
three setups, each against a fresh emulator with Box's rate limits lifted (and the
daemons' too): one host on a SQLite journal (the baseline, measured in the same run),
one host on a PostgreSQL journal, two hosts on that PostgreSQL journal. PostgreSQL is a
throwaway cluster started here (syncd.testing.postgres) with fsync on, as a real server
runs. The hosts are configured as on a shared mount (tests/support/multi_host.py: the
polling observer, a short settle). The files are built beside the drop folder and renamed
in at once; the time runs from that rename to the last ``upload_committed`` in the hosts'
logs, and every run is checked through Box's API (bench.verifier) before it counts.

Takeover (workload 5 of docs/MULTI_HOST.md section 10): two hosts, one chunked file
(200 MiB; 60 MiB with --quick) that the emulator's per-connection bandwidth cap slows to
about a second a part; the host uploading it is SIGKILLed after its 3rd acknowledged
part. Reported: the time from the kill to the other host's ``claim_taken_over`` and to
its ``upload_committed``, against ``lease + one part`` (one part: the median time between
the dead host's part acknowledgements times the parts it had in flight) and, for the
commit, plus the time the parts it had no answer for take at the dead host's rate.

The figures are printed and written to ``bench/results/multi_host-<UTC date>.json``.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.emulator import BenchError, EmulatorProcess
from bench.report import save_result
from syncd.config import parse_duration
from syncd.testing.daemon_process import CHUNKED_MIN, event_time
from syncd.testing.postgres import PostgresCluster
from tests.support.multi_host import HostGroup
from tests.support.postgres import PgDatabase

MIB = 1024 * 1024
#: Parts in flight per upload (`box.part_concurrency`), set here because the takeover bound depends on it.
PART_CONCURRENCY = 2
#: Box's and the daemons' rate limits lifted: the benchmark measures the hosts, not the budget.
BOX_SETTINGS = {"uploads_per_minute": 100_000, "calls_per_minute": 100_000, "part_concurrency": PART_CONCURRENCY}
SETUPS = ("sqlite_1_host", "postgres_1_host", "postgres_2_hosts")
#: The takeover upload's parts (Box's own size up to 256 MiB) and the cap that makes one take about a second.
TAKEOVER_PART = 8 * MIB
TAKEOVER_BANDWIDTH = 8 * MIB


@dataclass(frozen=True)
class Workload:
    """Files of one size dropped at once."""

    name: str
    files: int
    size: int

    def build(self, folder: Path, seed: int) -> None:
        """Write the files (incompressible, reproducible) under `folder`, 8 MiB at a time."""
        rng = random.Random(seed)
        folder.mkdir(parents=True)
        for i in range(self.files):
            with open(folder / f"{self.name}-{i:04}.bin", "wb") as handle:
                left = self.size
                while left:
                    piece = min(left, 8 * MIB)
                    handle.write(rng.randbytes(piece))
                    left -= piece


def workloads(quick: bool) -> list[Workload]:
    if quick:
        return [Workload("small", 100, 64 * 1024), Workload("large", 2, CHUNKED_MIN + 4 * MIB)]
    return [Workload("small", 400, 64 * 1024), Workload("large", 4, 128 * MIB)]


def _wait(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise BenchError(f"{what} within {timeout:.0f} s")
        time.sleep(interval)


def _group(work: Path, emulator: EmulatorProcess, database: PgDatabase | None, hosts: int, lease: str) -> HostGroup:
    group = HostGroup(work, emulator, database, lease=lease, box=BOX_SETTINGS)
    for i in range(hosts):
        group.add(f"bench-{i + 1}")
    return group


def measure_ingest(setup: str, workload: Workload, work: Path, cluster: PostgresCluster, lease: str) -> dict[str, Any]:
    """One setup ingesting one workload: files/s and MB/s from the drop to the last commit."""
    database = None if setup == "sqlite_1_host" else PgDatabase(cluster, cluster.create_database())
    with EmulatorProcess(work / "box") as emulator, ExitStack() as cleanup:
        group = _group(work, emulator, database, 2 if setup == "postgres_2_hosts" else 1, lease)
        cleanup.callback(group.kill)
        group.start()
        staging = work / "staging"
        workload.build(staging / workload.name, seed=workload.size)
        dropped = time.time()
        os.rename(staging / workload.name, group.inbox / workload.name)

        def commits() -> list[dict[str, Any]]:
            return [e for h in group.hosts.values() for e in h.daemon.events("upload_committed")]

        _wait(lambda: len(commits()) >= workload.files, 120 + workload.files * workload.size / 5e6,
              f"{setup}: {workload.files} {workload.name} files not committed")
        seconds = max(event_time(e) for e in commits()) - dropped
        report = group.verify()
        if not report.clean():
            raise BenchError(f"{setup}, {workload.name}: Box differs from the drop: {report.counts()}")
        per_host = {h.host_id: len(h.committed()) for h in group.hosts.values()}
        for host in group.hosts.values():
            host.daemon.stop(timeout=30)
    if database is not None:
        cluster.drop_database(database.name)
    return {"setup": setup, "workload": workload.name, "files": workload.files, "size": workload.size,
            "seconds": round(seconds, 3), "files_per_s": round(workload.files / seconds, 2),
            "mb_per_s": round(workload.files * workload.size / 1e6 / seconds, 2), "committed_by": per_host}


def measure_takeover(work: Path, cluster: PostgresCluster, size: int, lease: str) -> dict[str, Any]:
    """Kill the host uploading a slowed chunked file after its 3rd part; time the other host's takeover."""
    database = PgDatabase(cluster, cluster.create_database())
    with EmulatorProcess(work / "box", "--part-sizes", f"*={TAKEOVER_PART // MIB}MiB", "--bandwidth",
                         str(TAKEOVER_BANDWIDTH)) as emulator, ExitStack() as cleanup:
        group = _group(work, emulator, database, 2, lease)
        cleanup.callback(group.kill)
        group.start()
        Workload("takeover", 1, size).build(work / "staging" / "big", seed=size)
        path = "big/takeover-0000.bin"
        os.rename(work / "staging" / "big", group.inbox / "big")
        dead, (heir,) = group.uploading(path, parts=3, timeout=120)
        dead.daemon.kill()
        killed = time.time()
        parts = [event_time(e) for e in dead.events("part_uploaded", path=path)]
        total_parts = int(dead.events("upload_session_created", path=path)[0]["total_parts"])
        taken = heir.daemon.wait_for_event("claim_taken_over", timeout=parse_duration(lease) * 10 + 60)
        committed = heir.daemon.wait_for_event("upload_committed", timeout=600, where=lambda e: e["path"] == path)
        report = group.verify()
        if not report.clean():
            raise BenchError(f"takeover: Box differs from the drop: {report.counts()}")
        heir.daemon.stop(timeout=30)
    cluster.drop_database(database.name)
    # With PART_CONCURRENCY parts in flight, acknowledgements come every part time / PART_CONCURRENCY.
    per_part = statistics.median(b - a for a, b in zip(parts, parts[1:])) if len(parts) > 1 else float("nan")
    one_part = per_part * PART_CONCURRENCY
    lease_s = parse_duration(lease)
    remaining = (total_parts - len(parts)) * per_part
    return {
        "size": size, "part_size": TAKEOVER_PART, "total_parts": total_parts, "parts_acknowledged": len(parts),
        "lease_s": lease_s, "one_part_s": round(one_part, 3), "part_concurrency": PART_CONCURRENCY,
        "kill_to_takeover_s": round(event_time(taken) - killed, 3),
        "kill_to_commit_s": round(event_time(committed) - killed, 3),
        "bound_takeover_s": round(lease_s + one_part, 3),
        "bound_commit_s": round(lease_s + one_part + remaining, 3),
    }


def run(*, quick: bool = False, lease: str | None = None) -> dict[str, Any]:
    """The suite's entry point: every setup on every workload, then the takeover."""
    lease = lease or ("3s" if quick else "5s")
    takeover_size = (60 if quick else 200) * MIB
    rows = []
    with tempfile.TemporaryDirectory(prefix="syncd-multi-host-") as tmp, PostgresCluster.start(durable=True) as cluster:
        for workload in workloads(quick):
            for setup in SETUPS:
                rows.append(measure_ingest(setup, workload, Path(tmp) / f"{workload.name}-{setup}", cluster, lease))
                print(f"  {workload.name:<6} {setup:<18} {rows[-1]['files_per_s']:>8.2f} files/s "
                      f"{rows[-1]['mb_per_s']:>8.2f} MB/s", flush=True)
        takeover = measure_takeover(Path(tmp) / "takeover", cluster, takeover_size, lease)
    for row in rows:
        base = next(r for r in rows if r["workload"] == row["workload"] and r["setup"] == "sqlite_1_host")
        row["ratio_to_sqlite"] = round(row["files_per_s"] / base["files_per_s"], 3)
    flags = " --quick" if quick else ""
    return {"ingest": rows, "takeover": takeover, "lease": lease,
            "command": f"python -m bench.multi_host{flags} --lease {lease}"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 100 small files, 2 files just above the chunked threshold, 60 MiB takeover")
    parser.add_argument("--lease", default=None, help="journal.lease of the hosts (default 5s; 3s with --quick)")
    args = parser.parse_args(argv)
    result = run(quick=args.quick, lease=args.lease)
    print(f"several hosts ({result['command']})")
    for row in result["ingest"]:
        print(f"  {row['workload']:<6} {row['setup']:<18} {row['files_per_s']:>8.2f} files/s {row['mb_per_s']:>8.2f} MB/s"
              f"   x{row['ratio_to_sqlite']:.2f} of SQLite, one host   committed by {row['committed_by']}")
    t = result["takeover"]
    print(f"  takeover of a {t['size'] // MIB} MiB upload killed after part {t['parts_acknowledged']} of "
          f"{t['total_parts']} (lease {t['lease_s']:g} s, one part {t['one_part_s']:.2f} s):")
    print(f"    kill -> claim_taken_over {t['kill_to_takeover_s']:.2f} s (lease + one part {t['bound_takeover_s']:.2f} s)")
    print(f"    kill -> upload_committed {t['kill_to_commit_s']:.2f} s "
          f"(lease + one part + the rest at the same rate {t['bound_commit_s']:.2f} s)")
    out = save_result("multi_host", result)
    print(f"  written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
