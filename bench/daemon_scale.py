"""Start-up at scale (issue 4 bar): 100,000 files already present in 1,000 folders.
Reports, never asserts.

Run: ``python -m bench.daemon_scale [--files 100000] [--folders 1000]``

* **warm**: the journal already records every file as uploaded (built through
  the Journal API, then marked uploaded in one SQL statement, as a real run
  would leave it). Measured: from `syncd run` start to the end of its start-up
  scan and reconcile (`scan_finished`), and the daemon's RSS while it then
  watches the tree. Targets: under 30 s, under 200 MiB.
* **cold**: no journal. Measured: time until every file is recorded in the
  journal (scanned, settled, observed), and peak RSS meanwhile.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil

from bench.emulator import EmulatorProcess
from bench.report import save_result
from syncd.testing.daemon_process import DaemonProcess, write_config
from syncd.journal import Journal, ObservedFile


def make_tree(root: Path, files: int, folders: int) -> None:
    per_folder = max(1, files // folders)
    made = 0
    for f in range(folders):
        folder = root / f"d{f // 100:02}" / f"f{f:04}"
        folder.mkdir(parents=True)
        for i in range(per_folder):
            if made == files:
                return
            (folder / f"file-{i:04}.dat").write_bytes(b"%d\n" % made)
            made += 1


def warm_journal(path: Path, root: Path) -> None:
    entries = []
    for directory, _, names in os.walk(root):
        for name in names:
            full = Path(directory) / name
            st = full.stat()
            entries.append(ObservedFile(full.relative_to(root).as_posix(), st.st_size, st.st_mtime_ns, st.st_ino,
                                        st.st_dev, st.st_ctime_ns))
    with Journal.open(path, role="daemon") as journal:
        for start in range(0, len(entries), 500):
            journal.observe_many("inbox", entries[start:start + 500], time.time())
    with sqlite3.connect(path) as db:
        db.execute("UPDATE files SET state = 'uploaded', box_file_id = id, sha1 = 'da39a3ee5e6b4b0d3255bfef95601890afd80709',"
                   " uploaded_at = updated_at")


def scale_config(work: Path, emulator: EmulatorProcess, journal: Path) -> Path:
    return write_config(work / "syncd.yaml", {
        "box": {"api_url": emulator.api_url, "upload_url": emulator.upload_url,
                "auth": {"type": "developer_token", "token": "dev-token"}},
        "journal": str(journal),
        "watches": [{"path": str(work / "inbox"), "folder_id": "0"}],
        "readiness": {"settle": "1s"},
        "logging": {"format": "json"},
    })


def rss_mib(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


def journal_rows(path: Path) -> int:
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            return db.execute("SELECT count(*) FROM files").fetchone()[0]
    except sqlite3.Error:
        return 0


def measure_warm(work: Path, emulator: EmulatorProcess, files: int) -> dict:
    journal = work / "warm.db"
    warm_journal(journal, work / "inbox")
    started = time.monotonic()
    daemon = DaemonProcess(scale_config(work, emulator, journal), work / "warm.log").start(wait_ready=False)
    try:
        event = daemon.wait_for_event("scan_finished", timeout=300, interval=0.05)
        startup = time.monotonic() - started
        peak = 0.0
        for _ in range(40):  # watching, idle, for 10 s
            peak = max(peak, rss_mib(daemon.pid))
            time.sleep(0.25)
        daemon.stop(timeout=60)
    finally:
        daemon.kill()
    return {"startup_s": round(startup, 2), "scan_ms": event["duration_ms"], "files_seen": event["files"],
            "nominated": event["nominated"], "rss_watching_mib": round(peak, 1), "target_s": 30, "target_rss_mib": 200}


def measure_cold(work: Path, emulator: EmulatorProcess, files: int) -> dict:
    journal = work / "cold.db"
    started = time.monotonic()
    daemon = DaemonProcess(scale_config(work, emulator, journal), work / "cold.log").start(wait_ready=False)
    peak = 0.0
    try:
        while journal_rows(journal) < files:
            if time.monotonic() - started > 600 or not daemon.running():
                raise RuntimeError(f"cold start stalled at {journal_rows(journal)} rows")
            peak = max(peak, rss_mib(daemon.pid))
            time.sleep(0.25)
        elapsed = time.monotonic() - started
        daemon.stop(timeout=60)
    finally:
        daemon.kill()
    return {"all_recorded_s": round(elapsed, 2), "peak_rss_mib": round(peak, 1)}


def measure(files: int, folders: int) -> dict:
    """One run on a fresh tree and emulator: the warm journal first, then the cold one."""
    with tempfile.TemporaryDirectory(prefix="syncd-scale-") as tmp:
        work = Path(tmp)
        make_tree(work / "inbox", files, folders)
        emulator = EmulatorProcess(work / "box").start()
        try:
            return {"warm": measure_warm(work, emulator, files), "cold": measure_cold(work, emulator, files)}
        finally:
            emulator.stop()


def run(*, quick: bool = False, runs: int | None = None, files: int | None = None, folders: int | None = None) -> dict:
    """The suite's entry point: medians over ``runs`` of warm start-up, RSS watching and cold recording."""
    runs = runs or (1 if quick else 3)
    files = files or (10_000 if quick else 100_000)
    folders = folders or max(1, files // 100)
    measured = []
    for index in range(runs):
        measured.append(measure(files, folders))
        print(f"  scale run {index + 1}/{runs}: warm {measured[-1]['warm']['startup_s']} s, "
              f"cold {measured[-1]['cold']['all_recorded_s']} s", flush=True)

    def median(section: str, key: str) -> float:
        return statistics.median(one[section][key] for one in measured)

    return {
        "runs": runs, "files": files, "folders": folders,
        "warm": {"startup_s": median("warm", "startup_s"), "rss_watching_mib": median("warm", "rss_watching_mib"),
                 "target_s": 30, "target_rss_mib": 200},
        "cold": {"all_recorded_s": median("cold", "all_recorded_s"), "peak_rss_mib": median("cold", "peak_rss_mib")},
        "raw": measured,
        "command": f"python -m bench.daemon_scale --files {files} --folders {folders}",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--folders", type=int, default=1_000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="syncd-scale-") as tmp:
        work = Path(tmp)
        make_tree(work / "inbox", args.files, args.folders)
        emulator = EmulatorProcess(work / "box").start()
        try:
            warm = measure_warm(work, emulator, args.files)
            cold = measure_cold(work, emulator, args.files)
        finally:
            emulator.stop()
    result = {"files": args.files, "folders": args.folders, "warm": warm, "cold": cold,
              "command": "python -m bench.daemon_scale " + " ".join(argv if argv is not None else sys.argv[1:]),
              "machine": {"cores": os.cpu_count(), "memory_gib": round(psutil.virtual_memory().total / 2**30),
                          "python": sys.version.split()[0]}}
    print(f"{args.files} files in {args.folders} folders")
    print(f"  warm journal: start-up scan + reconcile {warm['startup_s']} s (target 30 s, "
          f"ratio {warm['startup_s'] / 30:.2f}); RSS watching {warm['rss_watching_mib']} MiB "
          f"(target 200 MiB, ratio {warm['rss_watching_mib'] / 200:.2f}); nominated {warm['nominated']}")
    print(f"  cold journal: every file recorded after {cold['all_recorded_s']} s; peak RSS {cold['peak_rss_mib']} MiB")
    out = save_result("scale", result)
    print(f"  written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
