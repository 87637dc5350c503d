"""What a running daemon knows that the journal does not, and how it tells other processes.

Two things matter to an operator and live only in the daemon's memory:

* **Box-side state**: where Box refuses us (credentials refused, a watch's folder
  forbidden or gone). `BoxSideState` is the one place that holds it: the circuit
  breaker calls `refuse(scope, reason)` when it opens and `accept(scope)` when Box
  takes requests again; `/metrics` (`syncd_box_refusing{scope}`), `/healthz`
  (``degraded``, never a reason for systemd to restart) and `syncd status` read it.
  Scopes are ``credentials`` (every watch) or ``watch:NAME``.
* **The last reload**: whether the last SIGHUP applied, when, and which changed
  settings wait for a restart.

The daemon publishes both in ``<journal>.daemon.json`` beside the journal, replaced
atomically on every change, so that `syncd status` (another process, possibly
another user) can read them without a metrics endpoint. The file names the daemon's
pid; a file left by a daemon that is gone is ignored.

A leaf module: plain data and files, nothing of Box, the journal or the pipeline.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

#: The Box-side scope that covers every watch: the credentials themselves.
CREDENTIALS_SCOPE = "credentials"


def watch_scope(watch: str) -> str:
    """The Box-side scope of one watch (its Box folder)."""
    return f"watch:{watch}"


@dataclass(frozen=True)
class BoxRefusal:
    """Box refuses us in `scope` since `since` (Unix seconds), for `reason` (no secrets in it)."""

    scope: str
    reason: str
    since: float


class BoxSideState:
    """Where Box currently refuses us; thread-safe. `on_change` runs after every change."""

    def __init__(self, on_change: Callable[[], None] | None = None) -> None:
        self._refusals: dict[str, BoxRefusal] = {}
        self._lock = threading.Lock()
        self.on_change = on_change

    def refuse(self, scope: str, reason: str, *, now: float | None = None) -> None:
        """Box refuses `scope` (e.g. the breaker opened); keeps the first `since` while it lasts."""
        if not scope:
            raise ValueError("a Box-side scope must not be empty")
        with self._lock:
            known = self._refusals.get(scope)
            since = known.since if known is not None else (time.time() if now is None else now)
            changed = known is None or known.reason != reason
            self._refusals[scope] = BoxRefusal(scope, reason, since)
        if changed and self.on_change is not None:
            self.on_change()

    def accept(self, scope: str) -> None:
        """Box accepts `scope` again (e.g. a probe succeeded); unknown scopes are ignored."""
        with self._lock:
            changed = self._refusals.pop(scope, None) is not None
        if changed and self.on_change is not None:
            self.on_change()

    def refusals(self) -> tuple[BoxRefusal, ...]:
        """Current refusals, by scope name."""
        with self._lock:
            return tuple(self._refusals[s] for s in sorted(self._refusals))

    def refusing(self, scope: str) -> bool:
        """Whether Box refuses `scope`, or refuses the credentials (which covers every scope)."""
        with self._lock:
            return scope in self._refusals or CREDENTIALS_SCOPE in self._refusals


@dataclass(frozen=True)
class ReloadResult:
    """The outcome of one SIGHUP: applied (`ok`) or rejected, when, and what waits for a restart."""

    ok: bool
    at: float
    detail: str = ""
    restart_needed: tuple[str, ...] = ()


@dataclass(frozen=True)
class PublishedState:
    """The content of ``<journal>.daemon.json``."""

    pid: int
    started_at: float
    box_refusals: tuple[BoxRefusal, ...] = ()
    last_reload: ReloadResult | None = None
    updated_at: float = field(default_factory=time.time)

    def to_json(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> PublishedState:
        reload = data.get("last_reload")
        return cls(
            pid=int(data["pid"]),
            started_at=float(data["started_at"]),
            box_refusals=tuple(BoxRefusal(str(r["scope"]), str(r["reason"]), float(r["since"]))
                               for r in data.get("box_refusals", ())),
            last_reload=None if reload is None else ReloadResult(
                bool(reload["ok"]), float(reload["at"]), str(reload.get("detail", "")),
                tuple(reload.get("restart_needed", ()))),
            updated_at=float(data.get("updated_at", 0.0)),
        )


def state_path_for(journal_path: Path) -> Path:
    """Where the daemon of `journal_path` publishes its state: ``<journal>.daemon.json``."""
    return journal_path.with_name(journal_path.name + ".daemon.json")


def publish(journal_path: Path, state: PublishedState) -> None:
    """Replace the published state atomically (write a temporary file, fsync, rename).

    Raises OSError when the journal's directory cannot be written; the caller logs it.
    """
    target = state_path_for(journal_path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(state.to_json(), handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o640)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_published(journal_path: Path, daemon_pid: int | None) -> PublishedState | None:
    """The state published by the live daemon `daemon_pid`; None without a daemon, a file,
    or when the file was left by another (dead) process or cannot be parsed."""
    if daemon_pid is None:
        return None
    try:
        data = json.loads(state_path_for(journal_path).read_text(encoding="utf-8"))
        state = PublishedState.from_json(data)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return state if state.pid == daemon_pid else None
