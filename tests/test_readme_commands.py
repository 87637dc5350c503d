"""The README's first screen promises two commands; this keeps the demo one true."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_first_screen_gives_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    first_screen = "\n".join(readme.splitlines()[:25])
    commands = re.findall(r"^bash (scripts/\S+)", first_screen, flags=re.M)
    assert commands == ["scripts/demo.sh", "scripts/test.sh"]
    for script in commands:
        assert (ROOT / script).is_file()


def test_demo_uploads_the_sample_drop_folder():
    shutil.rmtree(ROOT / "var" / "demo", ignore_errors=True)
    done = subprocess.run(["bash", "scripts/demo.sh", "--once"], cwd=ROOT, capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    status = subprocess.run([str(ROOT / ".venv/bin/syncd"), "status", "--json", "-c", "config/demo.yaml"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    report = json.loads(status.stdout)
    assert report["counts"]["uploaded"] == 3
    assert report["counts"]["pending"] == report["counts"]["failed"] == 0
