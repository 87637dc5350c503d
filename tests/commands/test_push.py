"""`syncd push` in a real pseudo-terminal against the real emulator."""

from __future__ import annotations

import hashlib
import os
import re
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def write_config(tmp_path: Path, emulator) -> Path:
    config = {
        "box": {"api_url": emulator.api_url, "upload_url": emulator.upload_url,
                "auth": {"type": "developer_token", "token": emulator.token},
                "direct_upload_max": 20_000_000},
        "journal": str(tmp_path / "journal.db"),
        "watches": [{"path": str(tmp_path / "unused-inbox"), "folder_id": "0"}],
    }
    (tmp_path / "unused-inbox").mkdir(exist_ok=True)
    path = tmp_path / "syncd.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def run_in_pty(args: list[str], cwd: Path, timeout: float = 120) -> tuple[int, str]:
    primary, secondary = pty.openpty()
    env = dict(os.environ, XDG_STATE_HOME=str(cwd / "state"), COLUMNS="160")
    process = subprocess.Popen(args, cwd=cwd, stdin=secondary, stdout=secondary, stderr=secondary, env=env)
    os.close(secondary)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([primary], [], [], 0.2)
        if ready:
            try:
                data = os.read(primary, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif process.poll() is not None:
            break
    os.close(primary)
    return process.wait(timeout=10), b"".join(chunks).decode("utf-8", "replace")


def test_push_shows_progress_in_a_terminal_and_uploads(tmp_path, emulator):
    config = write_config(tmp_path, emulator)
    drop = tmp_path / "exports"
    (drop / "2026").mkdir(parents=True)
    big = drop / "2026" / "dump.bin"
    big.write_bytes(os.urandom(21_000_000))  # chunked: above direct_upload_max
    (drop / "note.txt").write_text("hello\n")
    code, screen = run_in_pty([sys.executable, "-m", "syncd", "push", "-c", str(config), "--folder", "0", str(drop)],
                              tmp_path)
    assert code == 0, screen
    assert re.search(r"\[#+\.*\] +\d+%", screen)  # a partly filled bar was drawn
    assert "100%" in screen and "total" in screen and "/s" in screen
    assert "\x1b[1A" in screen  # redrawn in place on a terminal
    assert "uploaded" in screen and "dump.bin" in screen
    top = {item["name"]: item for item in emulator.folder_items("0")}
    exports = {item["name"]: item for item in emulator.folder_items(top["exports"]["id"])}
    assert emulator.get_file(exports["note.txt"]["id"])["sha1"] == hashlib.sha1(b"hello\n").hexdigest()
    inner = {item["name"]: item for item in emulator.folder_items(exports["2026"]["id"])}
    assert emulator.get_file(inner["dump.bin"]["id"])["sha1"] == hashlib.sha1(big.read_bytes()).hexdigest()


def test_push_conflict_policies_and_exit_codes(tmp_path, emulator):
    config = write_config(tmp_path, emulator)
    first = tmp_path / "a.txt"
    first.write_text("one")
    base = [sys.executable, "-m", "syncd", "push", "-c", str(config), "--folder", "0"]
    assert subprocess.run(base + [str(first)], capture_output=True, timeout=60).returncode == 0
    first.write_text("two")
    failed = subprocess.run(base + ["--conflict", "fail", str(first)], capture_output=True, text=True, timeout=60)
    assert failed.returncode == 1 and "already has a file named 'a.txt'" in failed.stderr
    plain = subprocess.run(base + ["--conflict", "rename", str(first)], capture_output=True, text=True, timeout=60)
    assert plain.returncode == 0 and "\x1b[" not in plain.stdout  # no terminal: plain lines only
    names = sorted(item["name"] for item in emulator.folder_items("0"))
    assert names == ["a (1).txt", "a.txt"]
    missing = subprocess.run(base + [str(tmp_path / "nope")], capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "no such file" in missing.stderr


def test_push_of_a_changed_large_file_sends_only_its_changed_part(tmp_path, emulator):
    """A new version through `syncd push` plans its parts: one 8 MiB part of three is sent."""
    import json

    config = write_config(tmp_path, emulator)
    big = tmp_path / "dump.bin"
    big.write_bytes(os.urandom(21_000_000))
    base = [sys.executable, "-m", "syncd", "push", "-c", str(config), "--folder", "0", "--json", str(big)]
    env = dict(os.environ, XDG_STATE_HOME=str(tmp_path / "state"))
    assert subprocess.run(base, capture_output=True, timeout=120, env=env).returncode == 0
    with open(big, "r+b") as handle:
        handle.seek(10_000_000)
        handle.write(b"changed in place")
    emulator.reset_stats()
    second = subprocess.run(base, capture_output=True, text=True, timeout=120, env=env)
    assert second.returncode == 0, second.stderr
    result = json.loads(second.stdout.splitlines()[-1])
    assert result["outcome"] == "uploaded", result
    assert "2 parts (12611392 bytes) Box already held" in result["detail"], result  # the first and the last
    assert emulator.part_bytes_received() == 8 * 1024 * 1024
    assert emulator.get_file(result["file_id"])["sha1"] == hashlib.sha1(big.read_bytes()).hexdigest()
