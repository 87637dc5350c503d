"""config/syncd.example.yaml documents every key; config/demo.yaml drives the README demo."""

from __future__ import annotations

import os
import re
from pathlib import Path

from syncd.config import SCHEMA, ClientCredentialsAuth, DeveloperTokenAuth, load_config
from syncd.config.yaml_source import parse_yaml

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "config" / "syncd.example.yaml"
DEMO = REPO / "config" / "demo.yaml"


def test_example_loads(tmp_path: Path) -> None:
    (tmp_path / "box-client-secret").write_text("example-secret-value")
    os.chmod(tmp_path / "box-client-secret", 0o400)
    config = load_config(EXAMPLE, environ={"CREDENTIALS_DIRECTORY": str(tmp_path)})
    # A production-grade method by default: not a developer token, which Box expires after 60 minutes.
    assert isinstance(config.box.auth, ClientCredentialsAuth)
    assert config.box.auth.client_secret.reveal() == "example-secret-value"
    assert [w.name for w in config.watches] == ["invoices", "scans"]


def test_docs_name_the_auth_login_command() -> None:
    """`syncd auth` alone is a usage error: every place that tells an operator to run it says `auth login`."""
    for path in (EXAMPLE, REPO / "deploy" / "README.md", REPO / "syncd" / "config" / "loader.py"):
        text = path.read_text()
        assert not re.search(r"syncd auth(?! (login|check))\b", text), path
        assert "syncd auth login" in text, path


def test_example_documents_every_schema_key() -> None:
    text = EXAMPLE.read_text()
    active = {re.sub(r"\[\d+\]", "[]", key) for key in parse_yaml(text).lines}
    commented = set(re.findall(r"^\s*#\s*([a-z_]+):", text, flags=re.MULTILINE))
    # Auth keys of the types not in use, the PostgreSQL journal's keys (the example's journal is
    # SQLite) and host_id (a copied config must not give two hosts one id) are shown commented out.
    commented_only = {"box.auth", "journal", "host_id"}
    missing = []
    for section, keys in SCHEMA.items():
        for key in keys:
            path = f"{section}.{key}" if section else key
            if path not in active and not ((section or key) in commented_only and key in commented):
                missing.append(path)
    assert missing == []


def test_example_states_each_default() -> None:
    lines = [line for line in EXAMPLE.read_text().splitlines() if re.match(r"^\s+[a-z_]+: ", line)]
    undocumented = [line.strip() for line in lines
                    if "default" not in line and "required" not in line and not line.strip().startswith("- ")]
    # Keys of the second watch only show a different use of keys documented on the first.
    assert undocumented == ['folder_id: "987654321"', "after_upload: move", "expect_files_every: 1d"]


def test_demo_matches_the_emulator_contract() -> None:
    config = load_config(DEMO, environ={})
    assert config.box.api_url == "http://127.0.0.1:8765/2.0"
    assert config.box.upload_url == "http://127.0.0.1:8765/api/2.0"
    assert config.box.token_url == "http://127.0.0.1:8765/oauth2/token"
    assert isinstance(config.box.auth, DeveloperTokenAuth) and config.box.auth.token.reveal() == "dev-token"
    assert config.journal == REPO / "var" / "demo" / "journal.db"
    (watch,) = config.watches
    assert (watch.path, watch.folder_id) == (REPO / "var" / "demo" / "inbox", "0")
    assert config.logging.format == "console"
