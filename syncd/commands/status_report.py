"""The back-end of `syncd status`: what the daemon is doing and what went wrong, from
the journal and what the running daemon publishes beside it (Box refusing us, the
last reload).

It reads the journal as a reader (no lock taken), so it works whether or not a
daemon is running, and every figure comes from an indexed query so that it
stays fast on a journal of a million rows. Alerts are the service's
(`syncd.service.alerts`), the same the daemon logs.

Every path is shown with `display_path` (bytes that are not UTF-8 as ``\\xNN``,
a backslash as ``\\\\``); `syncd retry/forget/history` accept that form back.

On a PostgreSQL journal (several hosts, docs/MULTI_HOST.md section 8) it adds the hosts:
each host's id, hostname, version, state, heartbeat age by PostgreSQL's clock (`lost`
once older than the lease) and uploads in flight; each upload in flight shows the host
holding it and its lease's time left.

`StatusReport.check()` grades the report for monitoring (`syncd status --check`):
critical when files failed, Box refuses us or no daemon runs (on PostgreSQL: no host has
a fresh heartbeat); warning on alerts, a lost host (registered, not stopped, silent for
longer than the lease), after-upload actions that could not be done (a read-only drop
folder...), a rejected reload or settings waiting for a restart; ok otherwise.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import IntEnum
from typing import Any

from syncd.commands.common import iso_time as _iso
from syncd.config import Config
from syncd.service.daemon_state import BoxRefusal, ReloadResult, read_published
from syncd.journal import FileState, Journal
from syncd.pipeline.names import display_path
from syncd.service.alerts import current_alerts, format_age


class CheckLevel(IntEnum):
    """Monitoring levels, valued as the exit codes of `syncd status --check` (Nagios plugin convention)."""

    OK = 0
    WARNING = 1
    CRITICAL = 2
    UNKNOWN = 3


@dataclass(frozen=True)
class CheckResult:
    """A graded status: the worst level found and every reason for it."""

    level: CheckLevel
    reasons: tuple[str, ...]

    def line(self) -> str:
        """One line for a monitoring system: ``SYNCD CRITICAL - 2 failed file(s); ...``."""
        return f"SYNCD {self.level.name}" + (f" - {'; '.join(self.reasons)}" if self.reasons else "")


@dataclass(frozen=True)
class InFlightUpload:
    watch: str
    path: str
    size: int
    bytes_done: int
    session_id: str | None
    holder: str | None = None  # the host holding the claim
    lease_expires_in_s: float | None = None  # by the database's clock; negative: lapsed

    @property
    def percent(self) -> float:
        return 100.0 if self.size == 0 else round(100.0 * self.bytes_done / self.size, 1)

    def lease_text(self) -> str:
        """``held by ingest-1, lease 42s left`` (or lapsed ... ago), for the human form."""
        if self.holder is None:
            return ""
        if self.lease_expires_in_s is None:
            return f"  held by {self.holder}"
        left = self.lease_expires_in_s
        lease = f"lease {format_age(left)} left" if left >= 0 else f"lease lapsed {format_age(-left)} ago"
        return f"  held by {self.holder}, {lease}"


@dataclass(frozen=True)
class HostStatus:
    """One host of a PostgreSQL journal, as status shows it."""

    host_id: str
    hostname: str
    pid: int
    version: str
    state: str
    heartbeat_age_s: float  # by PostgreSQL's clock
    lost: bool  # not stopped, and silent for longer than the lease
    in_flight: int
    detail: str | None

    @property
    def fresh(self) -> bool:
        """Running (or degraded, or stopping) and heard from within the lease."""
        return self.state != "stopped" and not self.lost


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
class PendingAction:
    """An after-upload action (delete, move) not done yet, and why when it was tried."""

    watch: str
    path: str
    action: str
    attempts: int
    reason: str | None
    code: str | None
    since: float


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
    box_refusals: list[BoxRefusal] = field(default_factory=list)
    last_reload: ReloadResult | None = None
    post_actions_pending: int = 0
    post_actions: list[PendingAction] = field(default_factory=list)  # those waiting longest
    multi_host: bool = False  # a PostgreSQL journal: `hosts` says who runs, not `daemon_pid`
    hosts: list[HostStatus] = field(default_factory=list)

    def check(self) -> CheckResult:
        """Grade this report: CRITICAL, WARNING or OK, with every reason."""
        critical = []
        if self.multi_host:
            if not any(host.fresh for host in self.hosts):
                critical.append("no syncd host has a fresh heartbeat")
        elif self.daemon_pid is None:
            critical.append("daemon not running")
        if self.counts.get("failed"):
            critical.append(f"{self.counts['failed']} failed file(s)")
        critical += [f"Box refuses {r.scope}: {r.reason}" for r in self.box_refusals]
        warning = list(self.alerts)
        warning += [f"host {h.host_id} lost: no heartbeat for {format_age(h.heartbeat_age_s)}"
                    for h in self.hosts if h.lost]
        stuck = [a for a in self.post_actions if a.reason]
        if stuck:
            warning.append(f"{len(stuck)} after-upload action(s) waiting, e.g. {stuck[0].action} "
                           f"{stuck[0].watch}:{stuck[0].path}: {stuck[0].reason}")
        if self.last_reload is not None and not self.last_reload.ok:
            warning.append(f"last reload rejected: {self.last_reload.detail}")
        if self.last_reload is not None and self.last_reload.restart_needed:
            warning.append(f"restart needed for {', '.join(self.last_reload.restart_needed)}")
        level = CheckLevel.CRITICAL if critical else CheckLevel.WARNING if warning else CheckLevel.OK
        return CheckResult(level, tuple(critical + warning))

    def to_json(self) -> dict[str, Any]:
        """The `--json` form: timestamps in ISO 8601 (UTC, with offset), ages in seconds."""
        data = asdict(self)
        data["daemon_running"] = self.daemon_pid is not None
        data["in_flight"] = [asdict(u) | {"percent": u.percent} for u in self.in_flight]
        data["last_upload_at"] = _iso(self.last_upload_at)
        data["recent_failures"] = [asdict(f) | {"at": _iso(f.at)} for f in self.recent_failures]
        data["box_refusals"] = [asdict(r) | {"since": _iso(r.since)} for r in self.box_refusals]
        data["post_actions"] = [asdict(a) | {"since": _iso(a.since)} for a in self.post_actions]
        data["hosts"] = [asdict(h) | {"alive": h.fresh} for h in self.hosts]
        if self.last_reload is not None:
            data["last_reload"] = asdict(self.last_reload) | {"at": _iso(self.last_reload.at)}
        check = self.check()
        data["check"] = {"level": check.level.name.lower(), "reasons": list(check.reasons)}
        return data


def collect_status(journal: Journal, config: Config | None = None, *, failures: int = 10,
                   now: float | None = None) -> StatusReport:
    """Read a StatusReport from `journal` (alert thresholds come from `config`)."""
    now = time.time() if now is None else now
    counts = {str(state): 0 for state in FileState}
    counts.update({str(k): v for k, v in journal.counts_by_state().items()})
    oldest = journal.oldest_pending()
    last = journal.last_uploaded()
    multi_host = journal.multi_host
    in_flight = [
        InFlightUpload(f.file.watch, display_path(f.file.relpath), f.file.size, f.bytes_done, f.session_id,
                       f.lease_owner if multi_host else None,
                       None if not multi_host or f.lease_expires_in is None else round(f.lease_expires_in, 1))
        for f in journal.in_flight()
    ]
    hosts = [HostStatus(h.host_id, h.hostname, h.pid, h.version, h.state, round(h.heartbeat_age_s, 1), h.lost,
                        h.in_flight, h.detail) for h in journal.hosts()]
    recent = [
        Failure(r.watch, display_path(r.relpath), str(r.state), r.last_error or "", r.last_error_code, r.attempts,
                r.updated_at)
        for r in journal.recent_failures(failures)
    ]
    alerts = [alert.message for alert in current_alerts(journal, config, now)] if config is not None else []
    actions_pending, oldest_actions = journal.post_actions_pending(failures)
    actions = [PendingAction(a.watch, a.relpath, a.action.value, a.attempts, a.last_error, a.last_error_code,
                             a.created_at) for a in oldest_actions]
    daemon_pid = journal.daemon_pid()
    # What a SQLite daemon publishes beside its journal file (a PostgreSQL journal has no file).
    published = read_published(journal.path, daemon_pid) if journal.path is not None else None
    return StatusReport(
        journal=journal.location,
        daemon_pid=daemon_pid,
        counts=counts,
        in_flight=in_flight,
        oldest_pending_path=f"{oldest.watch}:{display_path(oldest.relpath)}" if oldest else None,
        oldest_pending_age_s=round(now - oldest.detected_at, 1) if oldest else None,
        last_upload_path=f"{last.watch}:{display_path(last.relpath)}" if last else None,
        last_upload_at=last.ts if last else None,
        recent_failures=recent,
        alerts=alerts,
        box_refusals=list(published.box_refusals) if published else [],
        last_reload=published.last_reload if published else None,
        post_actions_pending=actions_pending,
        post_actions=actions,
        multi_host=multi_host,
        hosts=hosts,
    )


def render_status(report: StatusReport, *, now: float | None = None) -> str:
    """The human form of a StatusReport."""
    now = time.time() if now is None else now
    if report.multi_host:
        fresh = sum(host.fresh for host in report.hosts)
        lines = [f"hosts:     {fresh} of {len(report.hosts)} alive"]
        lines += [
            f"  {h.host_id}  {h.hostname} pid {h.pid}  syncd {h.version}  {h.state}"
            f"{' (' + h.detail + ')' if h.detail else ''}  heartbeat {format_age(h.heartbeat_age_s)} ago"
            f"{' LOST' if h.lost else ''}  {h.in_flight} uploading"
            for h in report.hosts
        ]
    else:
        lines = [f"daemon:    {'running, pid ' + str(report.daemon_pid) if report.daemon_pid else 'not running'}"]
    lines += [
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
        lines += [f"  {u.watch}:{u.path}  {u.bytes_done}/{u.size} bytes ({u.percent}%){u.lease_text()}"
                  for u in report.in_flight]
    if report.recent_failures:
        lines.append("recent failures:")
        for f in report.recent_failures:
            when = datetime.fromtimestamp(f.at).astimezone().strftime("%Y-%m-%d %H:%M:%S")
            lines.append(f"  [{f.state}] {f.watch}:{f.path}  {when}  {f.reason}")
    if report.post_actions_pending:
        lines.append(f"after-upload actions pending: {report.post_actions_pending}")
        for a in report.post_actions:
            why = f"  (tried {a.attempts}x: {a.reason})" if a.reason else ""
            lines.append(f"  {a.action} {a.watch}:{a.path}{why}")
    for refusal in report.box_refusals:
        lines.append(f"BOX REFUSING: {refusal.scope} for {format_age(now - refusal.since)}: {refusal.reason}")
    if report.last_reload is not None:
        reload = report.last_reload
        when = datetime.fromtimestamp(reload.at).astimezone().strftime("%Y-%m-%d %H:%M:%S")
        lines.append(f"last reload:    {when}, {'applied' if reload.ok else 'REJECTED'} ({reload.detail})"
                     + (f"; restart needed for {', '.join(reload.restart_needed)}" if reload.restart_needed else ""))
    for alert in report.alerts:
        lines.append(f"ALERT: {alert}")
    return "\n".join(lines)
