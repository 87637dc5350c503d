"""The checks every daemon integration test shares, and the daemon launcher they use.

Launching `python -m syncd run`, writing its config and running `syncd status/history`
is syncd's public launcher, syncd.testing.daemon_process (re-exported here for the tests'
imports). The checks here read what Box holds through the emulator's HTTP API with
plain `requests` (never through syncd.box or the journal) and the local files' SHA-1s (bench.verifier's, the same independent reading the chaos runs use).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.verifier import local_tree, sha1_of
from syncd.testing.daemon_process import (
    CHUNKED_MIN,
    DaemonProcess,
    DaemonProcessError,
    Watch,
    config_data,
    history_json,
    run_syncd,
    status_json,
    syncd_command,
    write_config,
)
from tests.support.emulator import EmulatorProcess
from tests.support.waiting import wait_until

__all__ = [
    "CHUNKED_MIN", "DaemonProcess", "DaemonProcessError", "Watch", "assert_exactly_once", "box_files", "box_sha1s",
    "free_port",
    "config_data", "history_json", "iter_chunks", "local_files", "run_syncd", "settled_counts", "sha1_of",
    "status_json", "syncd_command", "wait_for_box", "wait_until", "write_config",
]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (for a daemon's metrics.listen)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ------------------------------------------------------------- local and Box


def local_files(root: Path) -> dict[str, str]:
    """Relative path -> SHA-1 of every regular file under `root` (symlinks not followed)."""
    return local_tree(root, ignore_suffixes=())


def box_files(emulator: EmulatorProcess, folder_id: str = "0", prefix: str = "") -> dict[str, dict[str, Any]]:
    """Relative path -> Box file entry (with `sha1`) of every file under a Box folder."""
    found: dict[str, dict[str, Any]] = {}
    for entry in emulator.folder_items(folder_id):
        path = f"{prefix}{entry['name']}"
        if entry["type"] == "folder":
            found.update(box_files(emulator, entry["id"], f"{path}/"))
        elif entry["type"] == "file":
            found[path] = entry
    return found


def box_sha1s(emulator: EmulatorProcess, folder_id: str = "0") -> dict[str, str]:
    return {path: entry["sha1"] for path, entry in box_files(emulator, folder_id).items()}


def wait_for_box(emulator: EmulatorProcess, expected: dict[str, str], *, timeout: float,
                 daemon: DaemonProcess | None = None, folder_id: str = "0") -> dict[str, str]:
    """Wait until Box holds every expected path with its SHA-1; returns what Box holds then."""
    held: dict[str, str] = {}

    def arrived() -> bool:
        nonlocal held
        held = box_sha1s(emulator, folder_id)
        return all(held.get(path) == sha1 for path, sha1 in expected.items())

    def explain() -> str:
        missing = sorted(p for p, s in expected.items() if held.get(p) != s)
        return (f"{len(missing)} of {len(expected)} files not in Box with the right SHA-1 after {timeout}s, "
                f"e.g. {missing[:5]}\n" + (daemon.tail() if daemon else ""))

    wait_until(arrived, timeout=timeout, interval=0.5, message=explain)
    return held


def assert_exactly_once(emulator: EmulatorProcess, expected: dict[str, str], *, folder_id: str = "0",
                        versions: dict[str, set[int]] | None = None) -> None:
    """Box holds exactly `expected` (path -> SHA-1): nothing missing, nothing extra, one version each
    (or one of `versions[path]` where the test changed a file)."""
    files = box_files(emulator, folder_id)
    held = {path: entry["sha1"] for path, entry in files.items()}
    missing = sorted(set(expected) - set(held))
    extra = sorted(set(held) - set(expected))
    wrong = sorted(p for p in expected if p in held and held[p] != expected[p])
    assert not missing and not extra and not wrong, (
        f"Box differs from the drop folder: missing {missing[:10]}, extra {extra[:10]}, wrong SHA-1 {wrong[:10]}")
    for path, entry in files.items():
        want = (versions or {}).get(path, {1})
        # Box lists only the previous versions; the current one is the file itself.
        got = len(emulator.file_versions(entry["id"])) + 1
        assert got in want, f"{path}: {got} versions in Box, expected {sorted(want)}"


def settled_counts(status: dict[str, Any]) -> dict[str, int]:
    """The non-zero state counts of a `status --json` report."""
    return {state: n for state, n in status["counts"].items() if n}


def iter_chunks(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start:start + size]
