"""Alert-worthy conditions, computed from the journal and the configuration.

The daemon logs each alert once, at warning level; `syncd status` shows the
ones that hold now. Both read them here, so they always agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from syncd.config import Config, format_duration
from syncd.journal import Journal
from syncd.pipeline.names import display_path


@dataclass(frozen=True)
class Alert:
    """An alert-worthy condition: `key` identifies it (the daemon logs each key once)."""

    key: str
    event: str
    message: str
    fields: dict[str, Any]


def current_alerts(journal: Journal, config: Config, now: float) -> list[Alert]:
    """The conditions worth an alert now: a file pending too long, a watch quiet too long."""
    alerts: list[Alert] = []
    threshold = config.alerts.pending_older_than
    oldest = journal.oldest_pending()
    if oldest is not None and threshold is not None and now - oldest.detected_at > threshold:
        waited = now - oldest.detected_at
        alerts.append(Alert(
            f"pending:{oldest.id}", "alert_pending_too_long",
            f"{oldest.watch}:{display_path(oldest.relpath)} has been pending for {format_age(waited)}",
            {"watch": oldest.watch, "path": display_path(oldest.relpath), "pending_s": round(waited),
             "threshold_s": threshold}))
    for watch in config.watches:
        if watch.expect_files_every is None:
            continue
        arrival = journal.last_arrival(watch.name)
        if arrival is None or now - arrival > watch.expect_files_every:
            since = "ever" if arrival is None else format_age(now - arrival)
            every = format_age(watch.expect_files_every)
            alerts.append(Alert(
                f"quiet:{watch.name}:{arrival}", "alert_no_files_arrived",
                f"no file arrived in watch {watch.name} for {since} (expected every {every})",
                {"watch": watch.name, "window_s": watch.expect_files_every, "last_arrival": arrival}))
    return alerts


def format_age(seconds: float) -> str:
    """A duration for people, in whole seconds (``2d``, ``1h 5m``); negative counts as zero."""
    return format_duration(round(max(0.0, seconds)))
