"""Fuzzed drop sequences against the real daemon (issue 10). Reports, never asserts.

Run: ``python -m bench.fuzz_drops [--sequences 500] [--operations 12] [--seed 1]``

A seeded generator draws sequences of what writers do to a drop folder:
create, rewrite (in pieces, the file held open between them, sometimes longer
than ``settle``), append, rename (over other files too), delete, truncate,
chmod, and replacing a file by a symbolic link (to another file of the folder,
or to a "secret" outside the watched root), with pauses between operations,
some shorter and some longer than ``settle``. Each sequence plays in its own
folder of one watch while a real ``syncd run`` daemon ingests into the real
emulator; sequences play a wave at a time, in parallel. Then Box is read
through its API (:class:`bench.verifier.BoxReader`, never the journal), every
version of every file, and compared with what the sequences did:

* **lost**: a file that ends as a regular file is not in Box at its path with
  its final SHA-1; or an entry that ends as a link is neither in Box (an
  earlier regular state) nor parked with a reason in ``syncd status --json``;
* **partial**: a Box version whose SHA-1 is no state the sequence's files had
  between two operations (a writer's half-written file, or a mix of two states);
* **duplicated**: two consecutive versions of a Box file with the same SHA-1
  (the same content sent twice), or a Box file under a name no sequence used
  (a copy such as ``name (1).ext``);
* **leaked**: a Box version holding the secret's bytes (read through a link).

All four must be zero. Files renamed or deleted after they went up stay in Box
(syncd never deletes in Box); every version there must still be a complete state.
:func:`play_and_check` is what ``tests/daemon/test_fuzz_drops.py`` runs with 20
sequences; :func:`run` is the suite's entry (``python -m bench all --only fuzz_drops``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.emulator import EmulatorProcess
from bench.report import save_result
from bench.verifier import BoxReader
from syncd.testing.daemon_process import DaemonProcess, Watch, config_data, run_syncd, write_config

NAMES = ("a.txt", "b.bin", "sub/c.dat", "sub/d.dat")
#: Operation kinds and how often the generator draws each.
WEIGHTS = {"write": 4, "append": 3, "rename": 2, "delete": 1, "truncate": 1, "chmod": 1, "symlink": 1, "pause": 2}
SETTLE = 0.3
CLOSED_SETTLE = 0.1
PAUSES = (0.0, 0.02, 0.1, 0.2, 0.5, 0.9)  # between operations: around and beyond settle
WAVE = 25
SECRET = b"the token store syncd must never upload\n" * 4


@dataclass(frozen=True, slots=True)
class Op:
    """One thing a writer does to a path of its sequence's folder."""

    kind: str
    path: str
    other: str = ""  # rename target; symlink target ("" for the secret outside the root)
    size: int = 0  # write/append bytes; truncate length
    pieces: int = 1  # a write in this many pieces, the file held open between them
    hold: float = 0.0  # seconds between the pieces of a write
    mode: int = 0o644
    pause: float = 0.0  # seconds after the operation


def generate(seed: int, operations: int) -> list[Op]:
    """A reproducible sequence of `operations` operations on the paths of :data:`NAMES`."""
    rng = random.Random(seed)
    kinds, weights = zip(*WEIGHTS.items())
    ops = []
    for _ in range(operations):
        kind = rng.choices(kinds, weights)[0]
        path = rng.choice(NAMES)
        pause = rng.choice(PAUSES)
        if kind == "write":
            pieces = rng.choice((1, 1, 2, 3))
            ops.append(Op(kind, path, size=rng.randrange(0, 40_000), pieces=pieces,
                          hold=rng.choice((0.0, 0.1, 0.4, 0.8)) if pieces > 1 else 0.0, pause=pause))
        elif kind == "append":
            ops.append(Op(kind, path, size=rng.randrange(1, 5_000), pause=pause))
        elif kind == "rename":
            ops.append(Op(kind, path, other=rng.choice([n for n in NAMES if n != path]), pause=pause))
        elif kind == "truncate":
            ops.append(Op(kind, path, size=rng.randrange(0, 20_000), pause=pause))
        elif kind == "chmod":
            ops.append(Op(kind, path, mode=rng.choice((0o644, 0o600, 0o400)), pause=pause))
        elif kind == "symlink":
            target = rng.choice(["", *[n for n in NAMES if n != path]])
            ops.append(Op(kind, path, other=target, pause=pause))
        else:
            ops.append(Op(kind, path, pause=pause))
    return ops


def _sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


class DropSequence:
    """One sequence played in its own folder: the operations done and every complete state seen."""

    def __init__(self, number: int, root: Path, ops: list[Op], secret: Path, seed: int) -> None:
        self.number = number
        self.folder = f"s{number:03d}"
        self.dir = root / self.folder
        self.ops = ops
        self.secret = secret
        self.rng = random.Random(seed)
        self.done = 0
        self.states: set[str] = set()  # SHA-1 of every file's content between two operations
        self.names_used: set[str] = set()

    def play(self) -> None:
        (self.dir / "sub").mkdir(parents=True, exist_ok=True)
        for op in self.ops:
            if self._apply(op):
                self.done += 1
            self._record_states()
            time.sleep(op.pause)

    def _path(self, relpath: str) -> Path:
        return self.dir / relpath

    def _regular(self, path: Path) -> bool:
        return path.is_file() and not path.is_symlink()

    def _apply(self, op: Op) -> bool:
        path = self._path(op.path)
        if op.kind == "write":
            if path.is_symlink():
                path.unlink()
            data = self.rng.randbytes(op.size)
            step = max(1, -(-len(data) // op.pieces))
            with open(path, "wb") as f:
                for start in range(0, max(len(data), 1), step):
                    f.write(data[start:start + step])
                    f.flush()
                    if start + step < len(data):
                        time.sleep(op.hold)  # held open, half written
            self.names_used.add(op.path)
            return True
        if op.kind in ("append", "truncate", "chmod") and not self._regular(path):
            return False  # never through a link: that would write outside the folder
        if op.kind == "append":
            with open(path, "ab") as f:
                f.write(self.rng.randbytes(op.size))
            return True
        if op.kind == "truncate":
            os.truncate(path, op.size)
            return True
        if op.kind == "chmod":
            os.chmod(path, op.mode)
            return True
        if op.kind == "rename":
            if not os.path.lexists(path):
                return False
            os.rename(path, self._path(op.other))
            self.names_used.add(op.other)
            return True
        if op.kind == "delete":
            if not os.path.lexists(path):
                return False
            path.unlink()
            return True
        if op.kind == "symlink":
            if os.path.lexists(path):
                path.unlink()
            target = self.secret if not op.other else Path(os.path.relpath(self._path(op.other), path.parent))
            path.symlink_to(target)
            self.names_used.add(op.path)
            return True
        return True  # pause

    def _record_states(self) -> None:
        for relpath in NAMES:
            path = self._path(relpath)
            if self._regular(path):
                try:
                    self.states.add(_sha1(path.read_bytes()))
                except PermissionError:  # mode 0400 is readable by the owner; nothing else expected
                    pass

    def final(self) -> tuple[dict[str, str], set[str]]:
        """Regular files at the end (relpath -> SHA-1) and entries that end as links, under the folder."""
        files: dict[str, str] = {}
        links: set[str] = set()
        for relpath in NAMES:
            path = self._path(relpath)
            if path.is_symlink():
                links.add(f"{self.folder}/{relpath}")
            elif path.is_file():
                files[f"{self.folder}/{relpath}"] = _sha1(path.read_bytes())
        return files, links


@dataclass
class FuzzReport:
    """The figures of one fuzz run (all defect counts must be zero)."""

    sequences: int = 0
    operations: int = 0
    box_files: int = 0
    box_versions: int = 0
    lost: list[str] = field(default_factory=list)
    partial: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    leaked: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {"lost": len(self.lost), "duplicated": len(self.duplicated), "partial": len(self.partial),
                "leaked": len(self.leaked)}

    def clean(self) -> bool:
        return not any(self.counts().values())


def _box_versions(reader: BoxReader) -> dict[str, list[str]]:
    """Box path -> SHA-1 of every version, oldest first (the current one last)."""
    versions: dict[str, list[str]] = {}
    for item in reader.walk("0"):
        past = reader.version_sha1s(item.file_id) if item.past_versions else []
        versions[item.relpath] = [*reversed(past), item.sha1]
    return versions


def check(sequences: list[DropSequence], reader: BoxReader, secret_sha1: str, parked: set[str]) -> FuzzReport:
    """Compare what the sequences did with every version Box holds (see the module docstring)."""
    report = FuzzReport(sequences=len(sequences), operations=sum(s.done for s in sequences))
    held = _box_versions(reader)
    report.box_files = len(held)
    report.box_versions = sum(len(v) for v in held.values())
    by_folder = {s.folder: s for s in sequences}
    for path, shas in sorted(held.items()):
        folder, _, relpath = path.partition("/")
        sequence = by_folder.get(folder)
        if secret_sha1 in shas:
            report.leaked.append(path)
        if sequence is None or relpath not in sequence.names_used:
            report.duplicated.append(path)
            continue
        if any(sha not in sequence.states for sha in shas):
            report.partial.append(path)
        if any(a == b for a, b in zip(shas, shas[1:])):
            report.duplicated.append(path)
    for sequence in sequences:
        files, links = sequence.final()
        for path, sha in files.items():
            if held.get(path, [None])[-1] != sha:
                report.lost.append(path)
        for path in links:
            if path not in parked and path not in held:
                report.lost.append(path)
    return report


def parked_paths(config: Path) -> set[str]:
    """Paths `syncd status --json` lists as parked (failed or quarantined), as it shows them."""
    result = run_syncd("status", "--config", str(config), "--json", "--failures", "100000")
    return {f["path"] for f in json.loads(result.stdout)["recent_failures"]}


def _still_busy(config: Path) -> bool:
    result = run_syncd("status", "--config", str(config), "--json", "--failures", "1")
    counts = json.loads(result.stdout)["counts"]
    return bool(counts.get("pending") or counts.get("uploading"))


def play_and_check(work: Path, emulator: EmulatorProcess, *, sequences: int, operations: int, seed: int,
                   wave: int = WAVE, settle_timeout: float = 120.0,
                   on_wave: Callable[[int], None] | None = None) -> FuzzReport:
    """Play `sequences` generated sequences against one daemon, a wave at a time, and check Box."""
    inbox, outside = work / "inbox", work / "outside"
    inbox.mkdir(parents=True)
    outside.mkdir()
    secret = outside / "secret.txt"
    secret.write_bytes(SECRET)
    config = write_config(work / "syncd.yaml", config_data(
        emulator, work / "journal.db", [Watch(inbox, name="inbox")], workers=3,
        readiness={"settle": f"{int(SETTLE * 1000)}ms", "closed_settle": f"{int(CLOSED_SETTLE * 1000)}ms"}))
    played = [DropSequence(n, inbox, generate(seed * 100_003 + n, operations), secret, seed * 7 + n)
              for n in range(sequences)]
    reader = BoxReader(emulator.api_url, emulator.token)
    with DaemonProcess(config, work / "daemon.log") as daemon:
        for start in range(0, len(played), wave):
            threads = [threading.Thread(target=s.play, name=f"fuzz-{s.number}") for s in played[start:start + wave]]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            if on_wave is not None:
                on_wave(min(start + wave, len(played)))
        deadline = time.monotonic() + settle_timeout
        while True:
            time.sleep(max(1.0, SETTLE * 4))
            report = check(played, reader, _sha1(SECRET), parked_paths(config))
            if (report.clean() and not _still_busy(config)) or time.monotonic() > deadline:
                break
        if not daemon.running():
            raise RuntimeError(f"the daemon died during the fuzz run\n{daemon.tail()}")
    reader.close()
    return report


def run(*, quick: bool = False, sequences: int | None = None, operations: int = 12, seed: int = 1) -> dict[str, Any]:
    """The suite's entry point: one run of `sequences` sequences (500; 100 with --quick)."""
    sequences = sequences or (100 if quick else 500)
    work = Path(tempfile.mkdtemp(prefix="syncd-fuzz-"))
    started = time.monotonic()
    emulator = EmulatorProcess(work / "box").start()
    try:
        report = play_and_check(work, emulator, sequences=sequences, operations=operations, seed=seed,
                                on_wave=lambda done: print(f"  fuzz: {done}/{sequences} sequences played", flush=True))
    finally:
        emulator.stop()
    if report.clean():
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"  defects found; work directory kept: {work}", flush=True)
    return {"sequences": report.sequences, "operations": report.operations, "box_files": report.box_files,
            "box_versions": report.box_versions, **report.counts(), "seconds": round(time.monotonic() - started, 1),
            "examples": {kind: paths[:10] for kind, paths in asdict(report).items()
                         if isinstance(paths, list) and paths},
            "command": f"python -m bench.fuzz_drops --sequences {sequences} --operations {operations} --seed {seed}"}


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sequences", type=int, default=500)
    parser.add_argument("--operations", type=int, default=12)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(list(argv) if argv is not None else None)
    result = run(sequences=args.sequences, operations=args.operations, seed=args.seed)
    print(json.dumps({k: v for k, v in result.items() if k != "examples"}, indent=2))
    out = save_result("fuzz-drops", result)
    print(f"  written to {out}")
    return 0 if not any(result[k] for k in ("lost", "duplicated", "partial", "leaked")) else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
