"""The back-end of `syncd status`: what the daemon is doing and what went wrong, from the journal alone.

It reads the journal as a reader (no lock taken), so it works whether or not a
daemon is running, and every figure comes from an indexed query so that it
stays fast on a journal of a million rows. Alerts are the service's
(`syncd.service.alerts`), the same the daemon logs.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from syncd.config import Config
from syncd.journal import FileState, Journal
from syncd.service.alerts import current_alerts, format_age


@dataclass(frozen=True)
class InFlightUpload:
    watch: str
    path: str
    size: int
    bytes_done: int
    session_id: str | None

    @property
    def percent(self) -> float:
        return 100.0 if self.size == 0 else round(100.0 * self.bytes_done / self.size, 1)


@dataclass(frozen=True)
class Failure:
    watch: str
    path: str
    state: str
    reason: str
    code: str | None
    attempts: int
    at: float


@dataclass(frozen=True)
class StatusReport:
    """Everything `syncd status` shows; `to_json()` is the `--json` form."""

    journal: str
    daemon_pid: int | None
    counts: dict[str, int]
    in_flight: list[InFlightUpload]
    oldest_pending_path: str | None
    oldest_pending_age_s: float | None
    last_upload_path: str | None
    last_upload_at: float | None
    recent_failures: list[Failure]
    alerts: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["daemon_running"] = self.daemon_pid is not None
        data["in_flight"] = [asdict(u) | {"percent": u.percent} for u in self.in_flight]
        return data


def collect_status(journal: Journal, config: Config | None = None, *, failures: int = 10,
                   now: float | None = None) -> StatusReport:
    """Read a StatusReport from `journal` (alert thresholds come from `config`)."""
    now = time.time() if now is None else now
    counts = {str(state): 0 for state in FileState}
    counts.update({str(k): v for k, v in journal.counts_by_state().items()})
    oldest = journal.oldest_pending()
    last = journal.last_uploaded()
    in_flight = [
        InFlightUpload(f.file.watch, f.file.relpath, f.file.size, f.bytes_done, f.session_id)
        for f in journal.in_flight()
    ]
    recent = [
        Failure(r.watch, r.relpath, str(r.state), r.last_error or "", r.last_error_code, r.attempts, r.updated_at)
        for r in journal.recent_failures(failures)
    ]
    alerts = [alert.message for alert in current_alerts(journal, config, now)] if config is not None else []
    return StatusReport(
        journal=str(journal.path),
        daemon_pid=journal.daemon_pid(),
        counts=counts,
        in_flight=in_flight,
        oldest_pending_path=f"{oldest.watch}:{oldest.relpath}" if oldest else None,
        oldest_pending_age_s=round(now - oldest.detected_at, 1) if oldest else None,
        last_upload_path=f"{last.watch}:{last.relpath}" if last else None,
        last_upload_at=last.ts if last else None,
        recent_failures=recent,
        alerts=alerts,
    )


def render_status(report: StatusReport, *, now: float | None = None) -> str:
    """The human form of a StatusReport."""
    now = time.time() if now is None else now
    lines = [
        f"daemon:    {'running, pid ' + str(report.daemon_pid) if report.daemon_pid else 'not running'}",
        f"journal:   {report.journal}",
        "files:     " + ", ".join(f"{state} {n}" for state, n in report.counts.items()),
    ]
    if report.oldest_pending_path:
        lines.append(f"oldest pending: {report.oldest_pending_path} ({format_age(report.oldest_pending_age_s or 0)})")
    if report.last_upload_path and report.last_upload_at:
        lines.append(f"last upload:    {report.last_upload_path} ({format_age(now - report.last_upload_at)} ago)")
    else:
        lines.append("last upload:    none yet")
    if report.in_flight:
        lines.append("uploading:")
        lines += [f"  {u.watch}:{u.path}  {u.bytes_done}/{u.size} bytes ({u.percent}%)" for u in report.in_flight]
    if report.recent_failures:
        lines.append("recent failures:")
        for f in report.recent_failures:
            when = datetime.fromtimestamp(f.at).astimezone().strftime("%Y-%m-%d %H:%M:%S")
            lines.append(f"  [{f.state}] {f.watch}:{f.path}  {when}  {f.reason}")
    for alert in report.alerts:
        lines.append(f"ALERT: {alert}")
    return "\n".join(lines)
