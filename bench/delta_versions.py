"""New versions that send only their changed parts (issue 13). Reports, never asserts.

Run: ``python -m bench.delta_versions [--size 1GiB] [--runs 3] [--quick]``

Per run and per link (loopback; and the WAN setting of ``bench.client_upload``:
emulator ``--latency-ms 40 --bandwidth 12000000`` per connection), against a fresh
emulator (32 MiB parts, Box's for files up to 2 GiB) and one ``syncd.box.Uploader``
(4 parts in flight):

1. a file of ``--size`` random bytes is uploaded (version 1);
2. the **baseline**: a full re-upload of a new version (``Uploader(delta=False)``),
   timed in the same run;
3. new versions with 0 %, 1 %, 10 % and 100 % of the parts changed (at least one part
   for any share above 0; 4 KiB rewritten in the middle of each chosen part, one part
   set after the other, each on top of the last), uploaded with the delta path.

For each: the part bytes the emulator received (its own counter), the seconds from the
call to the verified commit, and both against the baseline. 0 % is Box's "file did not
change": every part a plan hit, no version made. ``--quick``: 256 MiB, one run.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.client_upload import BENCH_TOKEN, WAN_BANDWIDTH, WAN_LATENCY_MS, make_random_file
from bench.emulator import EmulatorProcess
from bench.report import save_result
from syncd.config import parse_size

MIB = 1024 * 1024
PART_SIZE = 32 * MIB  # Box's observed part size for files of 256 MiB to 2 GiB; set on the emulator for every size
CHANGED_SHARES = (0.0, 0.01, 0.10, 1.0)
LINKS = {"loopback": (), "wan": ("--latency-ms", str(WAN_LATENCY_MS), "--bandwidth", str(WAN_BANDWIDTH))}
QUICK = {"size": 256 * MIB, "runs": 1}
FULL = {"size": 1024 * MIB, "runs": 3}


def parts_to_change(total_parts: int, share: float, rng: random.Random) -> list[int]:
    """Which parts a new version rewrites: ``share`` of them, at least one when the share is above 0."""
    if share <= 0:
        return []
    count = min(total_parts, max(1, round(total_parts * share)))
    return sorted(rng.sample(range(total_parts), count))


def rewrite_parts(path: Path, parts: list[int], rng: random.Random) -> None:
    """4 KiB of new bytes in the middle of each of ``parts`` (in place; size unchanged)."""
    size = path.stat().st_size
    with open(path, "r+b") as handle:
        for part in parts:
            start = part * PART_SIZE
            middle = min(start + PART_SIZE // 2, size - 4096)
            handle.seek(middle)
            handle.write(rng.randbytes(4096))


def _uploader(emulator: EmulatorProcess, *, delta: bool):
    from syncd.box import BoxClient, DeveloperTokenAuth, RateLimits, Uploader

    client = BoxClient(DeveloperTokenAuth(BENCH_TOKEN), api_url=emulator.api_url, upload_url=emulator.upload_url,
                       concurrency=4, rate_limits=RateLimits(None, None), timeout=(10, 600))
    return client, Uploader(client, chunked_threshold=20_000_000, concurrency=4, delta=delta)


def _timed_version(emulator: EmulatorProcess, path: Path, file_id: str, *, delta: bool) -> dict[str, Any]:
    """One new version of ``path``: seconds to the verified commit, part bytes the emulator received."""
    client, uploader = _uploader(emulator, delta=delta)
    emulator.reset_stats()
    try:
        started = time.perf_counter()
        result = uploader.upload(path, None, path.name, existing_file_id=file_id)
        seconds = time.perf_counter() - started
    finally:
        client.close()
    return {"seconds": seconds, "bytes_sent": emulator.part_bytes_received(), "parts_reused": result.parts_reused,
            "bytes_reused": result.bytes_reused, "version_id": result.version_id}


def one_run(work: Path, size: int, link: str, seed: int) -> dict[str, Any]:
    """Version 1, the full re-upload baseline, then a version per changed share, on one fresh emulator."""
    rng = random.Random(seed)
    path = work / "delta.bin"
    make_random_file(path, size)
    data = work / f"emu-{link}-{seed}"
    total_parts = -(-size // PART_SIZE)
    with EmulatorProcess(data, "--part-sizes", f"*={PART_SIZE}", *LINKS[link], token=BENCH_TOKEN) as emulator:
        client, uploader = _uploader(emulator, delta=False)
        try:
            first = uploader.upload(path, "0", path.name)
        finally:
            client.close()
        rewrite_parts(path, [0], rng)  # the baseline uploads different bytes, as a real new version would
        baseline = _timed_version(emulator, path, first.file_id, delta=False)
        rows = []
        for share in CHANGED_SHARES:
            changed = parts_to_change(total_parts, share, rng)
            rewrite_parts(path, changed, rng)
            row = _timed_version(emulator, path, first.file_id, delta=True)
            row.update(share=share, parts_changed=len(changed), ratio_time=row["seconds"] / baseline["seconds"],
                       ratio_bytes=row["bytes_sent"] / max(1, baseline["bytes_sent"]))
            rows.append(row)
            print(f"  {link} {size / MIB:.0f} MiB, {share:.0%} changed ({len(changed)} parts): "
                  f"{row['bytes_sent'] / MIB:.0f} MiB sent in {row['seconds']:.2f} s, "
                  f"{row['ratio_time']:.3f}x the full re-upload ({baseline['seconds']:.2f} s)", flush=True)
    path.unlink(missing_ok=True)
    shutil.rmtree(data, ignore_errors=True)  # several GiB of versions: free them before the next run
    return {"link": link, "total_parts": total_parts, "baseline": baseline, "versions": rows}


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def run(*, quick: bool = False, size: int | None = None, runs: int | None = None) -> dict[str, Any]:
    """The suite's entry point: medians per link and share over ``runs`` runs."""
    settings = QUICK if quick else FULL
    size = size or int(settings["size"])
    runs = runs or int(settings["runs"])
    result: dict[str, Any] = {"size": size, "part_size": PART_SIZE, "runs": runs,
                              "command": "python -m bench all --only delta_versions" + (" --quick" if quick else ""),
                              "links": {}}
    with tempfile.TemporaryDirectory(prefix="syncd-bench-delta-") as tmp:
        work = Path(tmp)
        for link in LINKS:
            raw = [one_run(work, size, link, seed) for seed in range(runs)]
            shares = []
            for index, share in enumerate(CHANGED_SHARES):
                rows = [r["versions"][index] for r in raw]
                shares.append({
                    "share": share, "parts_changed": rows[0]["parts_changed"],
                    "seconds_median": _median([r["seconds"] for r in rows]),
                    "bytes_sent_median": _median([r["bytes_sent"] for r in rows]),
                    "ratio_time_median": _median([r["ratio_time"] for r in rows]),
                    "ratio_bytes_median": _median([r["ratio_bytes"] for r in rows]),
                })
            result["links"][link] = {
                "total_parts": raw[0]["total_parts"],
                "baseline_seconds_median": _median([r["baseline"]["seconds"] for r in raw]),
                "baseline_bytes_median": _median([r["baseline"]["bytes_sent"] for r in raw]),
                "shares": shares, "raw": raw,
            }
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.delta_versions", description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=parse_size, default=None, help="file size (default 1GiB; --quick: 256MiB)")
    parser.add_argument("--runs", type=int, default=None, help="runs per link (default 3; --quick: 1)")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    result = run(quick=args.quick, size=args.size, runs=args.runs)
    for link, figures in result["links"].items():
        print(f"{link}: full re-upload {figures['baseline_seconds_median']:.2f} s")
        for share in figures["shares"]:
            print(f"  {share['share']:>5.0%} changed: {share['bytes_sent_median'] / MIB:7.1f} MiB sent, "
                  f"{share['seconds_median']:.2f} s, {share['ratio_time_median']:.3f}x")
    print(f"written {save_result('delta_versions', result)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
