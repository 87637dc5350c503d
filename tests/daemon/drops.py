"""The ways files land in a drop folder, done for real: `cp`, a slow writer,
write-then-rename from a temporary name, and a whole directory moved in."""

from __future__ import annotations

import os
import random
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Drop:
    """One file a test puts into a drop folder: where (relative to the root) and what."""

    relpath: str
    data: bytes


def random_bytes(rng: random.Random, size: int) -> bytes:
    # randbytes from a seeded generator: reproducible content, and incompressible like real scans.
    return rng.randbytes(size)


def write_file(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def cp_into(root: Path, staging: Path, drops: list[Drop], *, preserve: bool = False) -> None:
    """Write each drop under `staging`, then `cp` it into `root` (`cp -p` keeps the old mtime)."""
    for drop in drops:
        source = staging / drop.relpath
        write_file(source, drop.data)
        if preserve:
            os.utime(source, (time.time() - 86400 * 30,) * 2)
        target = root / drop.relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["cp", *(["-p"] if preserve else []), str(source), str(target)], check=True)


def write_slowly(path: Path, data: bytes, *, chunks: int, pause: float) -> None:
    """Write `data` in `chunks` pieces with `pause` seconds between them, keeping the file open."""
    path.parent.mkdir(parents=True, exist_ok=True)
    step = max(1, -(-len(data) // chunks))
    with open(path, "wb") as f:
        for start in range(0, max(len(data), 1), step):
            f.write(data[start:start + step])
            f.flush()
            time.sleep(pause)


def write_then_rename(root: Path, drop: Drop) -> None:
    """The usual safe-writer pattern: write `NAME.tmp` (excluded by default), then rename it."""
    final = root / drop.relpath
    temporary = final.with_name(final.name + ".tmp")
    write_file(temporary, drop.data)
    os.rename(temporary, final)


def move_directory_in(root: Path, staging: Path, name: str, drops: list[Drop]) -> None:
    """Build a directory tree outside the root (same filesystem), then move it in at once.

    Each drop's relpath must start with `name/`.
    """
    for drop in drops:
        assert drop.relpath.startswith(f"{name}/"), drop.relpath
        write_file(staging / drop.relpath, drop.data)
    os.rename(staging / name, root / name)
