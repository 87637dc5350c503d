"""Helpers for config tests: write a YAML config (and its folders) into tmp_path."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from syncd.config import Config, ConfigError, load_config

MINIMAL = """\
box:
  api_url: http://127.0.0.1:8765/2.0
  upload_url: http://127.0.0.1:8765/api/2.0
  auth: {type: developer_token, token: dev-token}
journal: ./var/journal.db
watches:
  - path: ./inbox
    folder_id: "0"
"""

WriteConfig = Callable[..., Path]


@pytest.fixture
def write_config(tmp_path: Path) -> WriteConfig:
    """Write YAML text (dedented) as tmp_path/syncd.yaml with mode 0600 and an ./inbox folder."""

    def write(text: str, name: str = "syncd.yaml") -> Path:
        (tmp_path / "inbox").mkdir(exist_ok=True)
        path = tmp_path / name
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        os.chmod(path, 0o600)
        return path

    return write


def load_problems(path: Path, environ: dict[str, str] | None = None) -> ConfigError:
    """Load *path* expecting it to fail; return the error."""
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ=environ or {})
    return caught.value


def load_ok(path: Path, environ: dict[str, str] | None = None) -> Config:
    return load_config(path, environ=environ or {})


def problem_for(error: ConfigError, key: str) -> str:
    """The rendered problem for *key*; fails listing all problems if there is none."""
    matches = [str(p) for p in error.problems if p.key == key]
    assert matches, f"no problem for {key!r}; got:\n{error}"
    return matches[0]
