"""The README's first screen promises two commands; this keeps the demo one true."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

from tests.daemon.daemon_process import free_port

ROOT = Path(__file__).resolve().parents[1]


def test_readme_first_screen_gives_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    first_screen = "\n".join(readme.splitlines()[:25])
    commands = re.findall(r"^bash (scripts/\S+)", first_screen, flags=re.M)
    assert commands == ["scripts/demo.sh", "scripts/test.sh"]
    for script in commands:
        assert (ROOT / script).is_file()


def demo_checkout(scratch: Path, port: int) -> Path:
    """What `bash scripts/demo.sh` needs, copied under ``scratch`` with the demo's port made ``port``.

    The repository's own var/demo stays as it is, and the port need not be free. The
    copy shares the repository's .venv (the same pyproject.toml: bootstrap installs nothing).
    """
    for name in ("scripts/demo.sh", "scripts/bootstrap.sh", "config/demo.yaml", "pyproject.toml"):
        (scratch / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, scratch / name)
    (scratch / ".venv").symlink_to(ROOT / ".venv", target_is_directory=True)
    for name, pattern, replacement in (("scripts/demo.sh", r"^PORT=8765\b", f"PORT={port}"),
                                       ("config/demo.yaml", r"127\.0\.0\.1:8765/", f"127.0.0.1:{port}/")):
        text = (scratch / name).read_text()
        changed, count = re.subn(pattern, replacement, text, flags=re.M)
        assert count >= 1, f"{name} no longer names port 8765 where this test expects it"
        (scratch / name).write_text(changed)
    return scratch


def test_demo_uploads_the_sample_drop_folder(tmp_path: Path) -> None:
    checkout = demo_checkout(tmp_path / "checkout", free_port())
    done = subprocess.run(["bash", "scripts/demo.sh", "--once"], cwd=checkout, capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (checkout / "var" / "demo" / "inbox" / "hello.txt").is_file()  # it ran in the copy
    status = subprocess.run([str(ROOT / ".venv/bin/syncd"), "status", "--json", "-c", "config/demo.yaml"],
                            cwd=checkout, capture_output=True, text=True, timeout=60)
    report = json.loads(status.stdout)
    assert report["counts"]["uploaded"] == 3
    assert report["counts"]["pending"] == report["counts"]["failed"] == 0
