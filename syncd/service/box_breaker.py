"""The Box-side circuit breaker: when Box refuses us as a whole, pause instead of burning files.

Box refusing the credentials (401 after a failed refresh, a refresh token or client
secret refused, 403 on `/users/me`) or a watch's folder (403 or 404 on it) is no fault
of the files: without a breaker every file would spend its attempts against the same
refusal and end `failed`, one by one. So:

- an upload that Box refuses with such an error asks the breaker (`confirm`), which
  asks Box itself which scope refuses us: `GET /users/me` (the credentials), then
  `GET /folders/{watch folder}` (the watch). If both answer, the refusal was the
  file's own and the file's outcome is recorded as before. If one refuses, that scope
  opens: `BoxSideState.refuse(scope, reason)` (which drives ``syncd_box_refusing``,
  ``/healthz`` "degraded", `syncd status` and ``syncd status --check`` critical), the
  file is given back without spending an attempt, and claims pause for the scope
  (`paused`, the `ClaimGate` of `syncd.pipeline.claims`): none at all while the
  credentials are refused, none of the watch's files while its folder is (its
  pending files are pushed to the next probe in one statement).
- one thread probes each open scope again with the upload backoff (``retry``:
  initial_backoff doubling up to max_backoff); when Box accepts it, the scope closes
  (`BoxSideState.accept`), the workers are woken and everything resumes by itself.
  A probe that gets no answer (Box unreachable) keeps the scope open and tries later:
  only an answer from Box opens or closes a scope.
- at start-up (`check_at_start`) the credentials are probed once in the background:
  refused ones open the credentials scope (the daemon runs degraded and keeps probing,
  rather than exit and be restarted by systemd over and over).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from syncd.box import AuthError, BoxAPIError, BoxClient, BoxError, ErrorClass
from syncd.config import WatchConfig
from syncd.journal import Journal, JournalError
from syncd.logs import get_logger
from syncd.pipeline.claims import Paused
from syncd.service.daemon_state import CREDENTIALS_SCOPE, BoxSideState, watch_scope

log = get_logger(__name__)


@dataclass
class _OpenScope:
    """A scope Box refuses: why, how often asked since, when it is asked again."""

    reason: str
    probes: int
    next_probe_at: float
    watch: WatchConfig | None  # None for the credentials


class _NoAnswer(Exception):
    """Box could not be asked (unreachable, 5xx): neither a refusal nor an acceptance."""


class BoxBreaker:
    """Pauses the scopes Box refuses and probes them until it accepts them again (see the module docstring).

    `retry_in(probes)`: seconds until the next probe of a scope refused `probes` times.
    `watches()`: the configured watches (a reload may change them). `on_accept()`: called
    when a scope closes (the daemon wakes its workers).
    """

    def __init__(self, client: BoxClient, state: BoxSideState, journal: Journal, *,
                 watches: Callable[[], Sequence[WatchConfig]], retry_in: Callable[[int], float],
                 on_accept: Callable[[], None] = lambda: None, clock: Callable[[], float] = time.time) -> None:
        self._client = client
        self._state = state
        self._journal = journal
        self._watches = watches
        self._retry_in = retry_in
        self._on_accept = on_accept
        self._clock = clock
        self._lock = threading.Lock()
        self._asking = threading.Lock()  # one worker asks Box; the others wait for its answer
        self._open: dict[str, _OpenScope] = {}
        self._wake = threading.Condition(self._lock)
        self._stopping = False
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ ClaimGate

    def paused(self, watch: str | None) -> Paused | None:
        """Why claims for `watch` wait (the credentials cover every watch), or None."""
        with self._lock:
            scope = self._open.get(CREDENTIALS_SCOPE)
            if scope is None and watch is not None:
                scope = self._open.get(watch_scope(watch))
            return None if scope is None else Paused(scope.reason, scope.next_probe_at)

    # --------------------------------------------------------- BoxRefusals

    def confirm(self, watch: WatchConfig, error: BoxError) -> Paused | None:
        """`error` ended an upload into `watch`: pause the scope Box refuses, if it refuses one."""
        if error.error_class not in (ErrorClass.PERMANENT_CONFIG, ErrorClass.REFRESH_AUTH):
            return None
        with self._asking:
            already = self.paused(watch.name)
            if already is not None:
                return already
            try:
                refused = self._ask(watch)
            except _NoAnswer:
                return None  # cannot tell now: the file's own retry handles it
            if refused is None:
                return None
            scope, reason = refused
            self._open_scope(scope, reason, watch if scope != CREDENTIALS_SCOPE else None, probes=1)
            return self.paused(watch.name)

    # ------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Start the probing thread."""
        self._thread = threading.Thread(target=self._run, name="box-probe", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def check_at_start(self) -> bool | None:
        """Ask Box once whether it takes the credentials (logs the answer): True, False (refused:
        the credentials scope opens and is probed), None (no answer: files wait with their retries)."""
        try:
            user = self._client.get_current_user()
        except (BoxAPIError, AuthError) as exc:
            reason = _credentials_refusal(exc)
            if reason is None:
                log.warning("box_check_failed", reason=str(exc))
                return None
            self._open_scope(CREDENTIALS_SCOPE, reason, None, probes=1)
            log.error("box_credentials_refused", reason=reason,
                      detail="uploads are paused and Box is asked again until it accepts them; fix box.auth")
            return False
        except BoxError as exc:
            log.warning("box_unreachable", reason=str(exc), detail="files wait for Box with their retries")
            return None
        log.info("box_connected", user_id=user.get("id"), login=user.get("login"))
        return True

    # ---------------------------------------------------------------- asking Box

    def _ask(self, watch: WatchConfig | None) -> tuple[str, str] | None:
        """(scope, reason) that Box refuses now, or None when it accepts the credentials (and the watch's folder)."""
        try:
            self._client.get_current_user()
        except (BoxAPIError, AuthError) as exc:
            reason = _credentials_refusal(exc)
            if reason is None:
                raise _NoAnswer(str(exc)) from None
            return CREDENTIALS_SCOPE, reason
        except BoxError as exc:
            raise _NoAnswer(str(exc)) from None
        if watch is None:
            return None
        try:
            self._client.get_folder(watch.folder_id, fields="id")
        except BoxAPIError as exc:
            if exc.status in (403, 404):
                what = "does not exist or is not visible to this account" if exc.status == 404 else "is forbidden"
                return watch_scope(watch.name), f"Box folder {watch.folder_id} of watch {watch.name} {what} ({exc})"
            if exc.error_class is ErrorClass.REFRESH_AUTH:
                return CREDENTIALS_SCOPE, f"Box refuses the credentials: {exc}"
            raise _NoAnswer(str(exc)) from None
        except BoxError as exc:
            raise _NoAnswer(str(exc)) from None
        return None

    def _open_scope(self, scope: str, reason: str, watch: WatchConfig | None, *, probes: int) -> None:
        wait = self._retry_in(probes)
        until = self._clock() + wait
        with self._wake:
            known = self._open.get(scope)
            self._open[scope] = _OpenScope(reason, probes, until, watch)
            self._wake.notify_all()
        self._state.refuse(scope, reason)
        if watch is not None:
            self._defer(watch.name, until)
        if known is None:
            log.warning("box_refusing", scope=scope, reason=reason, retry_in_s=round(wait, 1),
                        detail="uploads for this scope are paused; files keep their attempts")

    def _defer(self, watch: str, until: float) -> None:
        try:
            self._journal.defer_pending(watch, until)
        except JournalError as exc:  # claims of the watch are given back one by one instead
            log.warning("box_refusing_defer_failed", watch=watch, reason=str(exc))

    def _close_scope(self, scope: str) -> None:
        with self._wake:
            closed = self._open.pop(scope, None)
        if closed is None:
            return
        self._state.accept(scope)
        log.info("box_accepting_again", scope=scope, probes=closed.probes)
        self._on_accept()

    # ------------------------------------------------------------------ probing

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._stopping and not self._due():
                    self._wake.wait(self._wait_s())
                if self._stopping:
                    return
                due = [(scope, open_) for scope, open_ in self._open.items() if open_.next_probe_at <= self._clock()]
            for scope, open_ in due:
                try:
                    self._probe(scope, open_)
                except Exception:  # a probe's bug must not end the thread that lifts every pause
                    log.exception("box_probe_crashed", scope=scope)

    def _due(self) -> bool:
        now = self._clock()
        return any(open_.next_probe_at <= now for open_ in self._open.values())

    def _wait_s(self) -> float:
        if not self._open:
            return 60.0
        return max(0.05, min(open_.next_probe_at for open_ in self._open.values()) - self._clock())

    def _probe(self, scope: str, open_: _OpenScope) -> None:
        watch = open_.watch
        if watch is not None:
            watch = next((w for w in self._watches() if w.name == watch.name), None)
            if watch is None:  # removed by a reload: nothing left to pause
                self._close_scope(scope)
                return
        try:
            refused = self._ask(watch)
        except _NoAnswer as exc:
            log.info("box_probe_unanswered", scope=scope, reason=str(exc))
            self._open_scope(scope, open_.reason, watch, probes=open_.probes + 1)
            return
        if refused is None:
            self._close_scope(scope)
        elif refused[0] == scope:
            self._open_scope(scope, refused[1], watch, probes=open_.probes + 1)
        else:  # the watch's probe found the credentials refused: that scope opens too
            self._open_scope(refused[0], refused[1], None, probes=1)
            self._open_scope(scope, open_.reason, watch, probes=open_.probes + 1)


def _credentials_refusal(exc: BoxAPIError | AuthError) -> str | None:
    """The reason when `exc` says Box refuses the credentials themselves, else None."""
    if isinstance(exc, AuthError):
        return f"Box refuses the credentials: {exc}" if exc.error_class is ErrorClass.PERMANENT_CONFIG else None
    if exc.status in (401, 403):
        return f"Box refuses the credentials: {exc}"
    return None
