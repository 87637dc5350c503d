"""Tokens obtained at run time are scrubbed from every log line from the moment they arrive, and the
redactor keeps only the latest ones (it must not grow for the life of the daemon)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from syncd import logs
from syncd.config import load_config
from syncd.service.box_connection import RUNTIME_SECRETS, RuntimeSecrets, build_auth


@pytest.fixture(autouse=True)
def clean_registry() -> Iterator[None]:
    yield
    logs.forget_secrets()


def test_the_latest_tokens_are_scrubbed_and_old_ones_let_go() -> None:
    secrets = RuntimeSecrets(keep=3)
    tokens = [f"access-token-{i:04d}" for i in range(5)]
    for token in tokens:
        secrets.add(token)
    assert logs.scrub_text(" ".join(tokens)) == f"{tokens[0]} {tokens[1]} *** *** ***"
    secrets.add(tokens[2])  # seen again: the newest now, nothing let go
    secrets.add("access-token-0005")
    assert len(secrets) == 3
    assert logs.scrub_text(" ".join(tokens)) == f"{tokens[0]} {tokens[1]} *** {tokens[3]} ***"


def test_every_auth_the_service_builds_reports_its_tokens(tmp_path) -> None:
    (tmp_path / "inbox").mkdir()
    path = tmp_path / "syncd.yaml"
    path.write_text("box:\n  api_url: http://127.0.0.1:9/2.0\n  upload_url: http://127.0.0.1:9/api/2.0\n"
                    "  auth: {type: client_credentials, client_id: c, client_secret: s3cr3t-value,"
                    " subject_type: enterprise, subject_id: '1'}\n"
                    "journal: ./j.db\nwatches: [{path: ./inbox, folder_id: '0'}]\n")
    auth = build_auth(load_config(path))
    assert auth.on_token == RUNTIME_SECRETS.add
    auth.on_token("a-freshly-minted-token")
    assert logs.scrub_text("Bearer-less a-freshly-minted-token") == "Bearer-less ***"
