"""Logging is process-global: every test here starts and ends with a clean set-up."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import structlog

from syncd import logs


@pytest.fixture(autouse=True)
def clean_logging() -> Iterator[None]:
    root = logging.getLogger()
    level = root.level
    yield
    for handler in [h for h in root.handlers if getattr(h, "_syncd_handler", False)]:
        root.removeHandler(handler)
        handler.close()
    root.setLevel(level)
    structlog.reset_defaults()
    logs.route_to_stdlib_until_configured()  # what a process has before configure_logging
    structlog.contextvars.clear_contextvars()
    logs.forget_secrets()
