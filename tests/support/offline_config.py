"""A syncd config for tests that never reach Box: the journal, the watches and whatever else a
test sets, with a Box nobody listens on (port 9, discard). For intake, journal and command tests
that load a real config file but make no Box call."""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: `box:` pointing where nothing answers, with a token nobody checks.
OFFLINE_BOX: dict[str, Any] = {
    "api_url": "http://127.0.0.1:9/2.0",
    "upload_url": "http://127.0.0.1:9/api/2.0",
    "auth": {"type": "developer_token", "token": "unused"},
}


def offline_config(journal: str | Path | dict[str, Any], watches: list[dict[str, Any]], **top: Any) -> dict[str, Any]:
    """The config mapping: `journal` (a SQLite path or a PostgreSQL mapping), `watches`, other top-level keys."""
    return {"box": OFFLINE_BOX, "journal": journal if isinstance(journal, dict) else str(journal),
            "watches": watches, **top}
