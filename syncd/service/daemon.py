"""The daemon: wiring, lifecycle, signals, systemd notify, metrics.

    config ─▶ Journal (single writer) ─▶ BoxClient/Uploader ─▶ Ingest
           ─▶ WorkerPool (claims from the journal, runs Ingest)
           ─▶ Intake (observers, readiness, scanner ─▶ journal, wakes the pool)
           ─▶ systemd notify + watchdog, /metrics + /healthz

Lifecycle: rows a crash left `uploading` are handed to the workers first (they
reconcile with Box before sending anything; syncd.pipeline.claims keeps that
order); after-upload actions a crash left undone are carried out (syncd.pipeline.
post_actions); intake starts; READY=1 is sent once every watch is observed and its
start-up scan queued. SIGTERM/SIGINT stop intake, let in-flight uploads reach
a safe point within `shutdown_timeout`, and exit 0; a second signal exits at
once (the journal is consistent at every instant, so nothing is lost). SIGHUP
reloads the config; an invalid one is rejected and the old one keeps running.
Every setting is either applied on reload or reported as waiting for a restart
(`syncd.config.changes`, one list); `syncd_config_last_reload_successful` and
`syncd status` say how the last one went.

What only the daemon knows (where Box refuses us, the last reload) is held in
`syncd.service.daemon_state` and published beside the journal for `syncd status`.

Box refusing us (the credentials, or a watch's folder) pauses that scope instead of
failing files (`syncd.service.box_breaker`): also at start-up, where refused
credentials leave `syncd run` running, degraded and probing Box until it accepts
them (`syncd once` exits 1: a batch run has no one to wait for). A journal that
refuses writes (disk full) degrades the daemon without a restart; claims whose
outcome it refused go back to pending as soon as it accepts writes again
(`syncd.pipeline.stranded`). The journal is pruned to its retention every hour
(`syncd.service.journal_upkeep`).

Several hosts (a PostgreSQL journal, docs/MULTI_HOST.md): the host registers itself
(`syncd.service.host_presence`: one process per host id, watches agreeing) before it
recovers its own interrupted rows; a lease keeper (`syncd.service.lease_keeper`)
sends its heartbeat, renews the leases of the claims whose jobs progress, stops a job
whose claim runs short of half a lease, and takes over rows whose leases lapsed. While
the journal is unreachable nothing is claimed and `STATUS=`, `/healthz` and `syncd
status` say so; a clean stop gives the leases back at once. The Box rate budget is the
hosts' together (`syncd.box.shared_windows`, on the journal's connection pool).

Health (`/healthz` and the watchdog): intake running, no job (upload or
after-upload action) silent for longer than ``health.stuck_after``, and the journal
readable on a connection of its own are critical: one failing for
`HEALTH_FAILURES_TO_FAIL` checks in a row over ``health.failure_window`` stops the
watchdog pings. The journal accepting a durable write is checked too, but a failure
there only degrades: a restart cannot free a disk.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from contextlib import nullcontext
from types import FrameType

from syncd import __version__
from syncd.box import WindowStore
from syncd.config import Config, ConfigError, diff_configs, load_config
from syncd.service.daemon_state import (
    CREDENTIALS_SCOPE, BoxSideState, PublishedState, ReloadResult, publish, state_path_for, watch_scope,
)
from syncd.journal import FileRecord, FileState, Journal, JournalError, JournalProbe
from syncd.logs import configure_logging, get_logger, register_secret, route_uncaught_exceptions
from syncd.pipeline.activity import PipelineActivity
from syncd.pipeline.claim_holds import ClaimHolds
from syncd.pipeline.claims import ClaimQueue
from syncd.pipeline.ingest import Ingest, Outcome, OutcomeKind
from syncd.pipeline.intake import Intake
from syncd.pipeline.post_actions import PostActionRunner
from syncd.pipeline.progress import JobProgress
from syncd.pipeline.retry_schedule import RetrySchedule
from syncd.pipeline.worker import WorkerPool
from syncd.pipeline.writers import LeaseMonitor
from syncd.service.alerts import current_alerts
from syncd.service.box_breaker import BoxBreaker
from syncd.service.box_connection import BoxConnection, JournalFolderIds, connect_box
from syncd.service.health import HealthCheck
from syncd.service.host_presence import HostPresence
from syncd.service.journal_upkeep import JournalUpkeep
from syncd.service.lease_keeper import LeaseKeeper
from syncd.service.metrics import Metrics
from syncd.service.metrics_server import MetricsServer
from syncd.service.notify import SystemdNotifier, WatchdogPinger

log = get_logger(__name__)

#: How often the STATUS= line, alerts and gauges are refreshed.
TICK_SECONDS = 1.0
#: `syncd once` exit code when Box refuses the configured credentials (documented in `syncd run --help`).
EXIT_CREDENTIALS_REFUSED = 1
#: Exit code when another process took this host id over, or the shared journal's schema is too new.
EXIT_HOST_REFUSED = 1
#: A critical health probe failing this many checks in a row, over at least
#: ``health.failure_window``, makes the daemon unhealthy (the watchdog pings stop).
HEALTH_FAILURES_TO_FAIL = 3


class Daemon:
    """One running syncd: `run()` blocks until stopped and returns the exit code."""

    def __init__(self, config: Config, *, once: bool = False, log_format: str | None = None) -> None:
        self.config = config
        self.once = once
        #: --json on the command line: JSON log lines whatever logging.format says (kept across reloads).
        self.log_format = log_format
        self.started_at = time.time()
        #: Where Box refuses us; the circuit breaker drives it, metrics, /healthz and status read it.
        self.box_state = BoxSideState(on_change=self._publish_state)
        self._last_reload: ReloadResult | None = None
        self._publish_lock = threading.Lock()  # one snapshot written at a time, the latest last
        self.notifier = SystemdNotifier()
        self.health = HealthCheck(failures_to_fail=HEALTH_FAILURES_TO_FAIL,
                                  failure_window_s=config.health.failure_window)
        self.metrics = Metrics(host_id=config.host_id)
        self._stop = threading.Event()
        #: Every move of work between the pipeline's stages; `syncd once` waits on it to exit.
        self.activity = PipelineActivity()
        self._signals = 0
        self._reload_requested = threading.Event()
        self.journal: Journal | None = None
        self.box: BoxConnection | None = None
        self.claims: ClaimQueue | None = None
        self.pool: WorkerPool[FileRecord] | None = None
        self.intake: Intake | None = None
        self.ingest: Ingest | None = None
        self.breaker: BoxBreaker | None = None
        self.post_actions: PostActionRunner | None = None
        self.leases: LeaseMonitor | None = None
        self.upkeep: JournalUpkeep | None = None
        #: Several hosts only (a PostgreSQL journal): this host's registration, its claims' leases.
        self.presence: HostPresence | None = None
        self.holds: ClaimHolds | None = None
        self.lease_keeper: LeaseKeeper | None = None
        self._journal_probe: JournalProbe | None = None
        self._metrics_server: MetricsServer | None = None
        self._pinger: WatchdogPinger | None = None
        self._alerted: set[str] = set()
        self._exit_code: int | None = None

    # --------------------------------------------------------------- lifecycle

    def run(self) -> int:
        config = self.config
        # Every thread that can hold a journal connection at once: part threads, small-file workers,
        # the lease keeper, the probe, the rate windows, intake and after-upload actions.
        connections = config.workers * config.box.part_concurrency + config.small_file_workers + 8
        self.journal = Journal.open(config.journal, role="daemon", host_id=config.host_id, pool_size=connections)
        try:
            self._start()
            self._main_loop()
            code = self._shutdown()
            return code if self._exit_code is None else self._exit_code
        finally:
            self.journal.close()

    def _start(self) -> None:
        assert self.journal is not None
        config = self.config
        if self.journal.multi_host:
            # Before anything else: the host lock proves this host id's previous process is dead,
            # so its rows left `uploading` are ours to recover at once.
            self.presence = HostPresence.start(self.journal, config.watches, on_available=self._journal_reachable)
            self.holds = ClaimHolds(self.journal.lease)
        # Sub-folder ids go to the journal: a restart then costs Box no call per folder.
        self.box = connect_box(config, folder_ids=JournalFolderIds(self.journal),
                               window_store=self._shared_windows())
        self.box.client.transport.on_status = self.metrics.record_box_response
        self.breaker = BoxBreaker(self.box.client, self.box_state, self.journal, watches=lambda: self.config.watches,
                                  retry_in=lambda probes: RetrySchedule.from_config(self.config.retry).delay(probes),
                                  on_accept=self._wake_workers)
        # One lease monitor for every upload and after-upload action: a writer opening a file
        # being uploaded cancels it at once.
        self.leases = LeaseMonitor()
        self.post_actions = PostActionRunner(config, self.journal, leases=self.leases,
                                             on_activity=self.activity.moved)
        presence = self.presence
        self.claims = ClaimQueue(self.journal, gate=self.breaker,
                                 journal_available=presence.available if presence is not None else lambda: True)
        # Direct uploads are the small-file lane's (a chunked upload needs a file above direct_upload_max).
        self.pool = WorkerPool(self.claims.claim, self._process, workers=config.workers,
                               small_file_workers=config.small_file_workers,
                               small_file_max=config.box.direct_upload_max,
                               describe=lambda r: f"{r.watch}:{r.relpath}", on_activity=self.activity.moved)
        interrupted = self.claims.recover_interrupted()
        if interrupted:
            log.info("reconciling_interrupted_uploads", files=len(interrupted))
        self.intake = Intake(config, self.journal, on_new_work=self.pool.wake, on_scan=self._scanned,
                             on_observer_restart=self.metrics.record_observer_restart,
                             on_activity=self.activity.moved, observe_events=not self.once)
        self.ingest = Ingest(config, self.journal, self.box.client, self.box.uploader, self.box.folders,
                             on_uploaded=self._uploaded, on_bytes=self._bytes_sent,
                             on_post_action=self.post_actions.poke, refusals=self.breaker,
                             intake=self.intake, leases=self.leases,
                             on_outcome_refused=self.metrics.record_claim_outcome_refused)
        if self.presence is not None and self.holds is not None:
            self.lease_keeper = LeaseKeeper(self.journal, self.presence, self.holds, self.claims, self.metrics,
                                            idle_workers=self._idle_workers, on_taken_over=self._wake_workers,
                                            host_state=self._host_state)
        self.upkeep = JournalUpkeep(self.journal, lambda: self.config)
        self._journal_probe = JournalProbe.for_journal(self.journal)
        self._register_health()
        self._attach_metrics()
        self._publish_state()
        self._install_signals()
        threading.Thread(target=self._check_credentials, name="box-check", daemon=True).start()
        self.breaker.start()
        self.post_actions.start()  # its first pass takes every action a crash left undone
        self.pool.start()
        if self.lease_keeper is not None:
            self.lease_keeper.start()
        self.intake.start()
        if not self.once:
            self.upkeep.start()
        if config.metrics.listen is not None:
            self._metrics_server = MetricsServer(self.metrics, self.health, config.metrics.listen.host,
                                                 config.metrics.listen.port,
                                                 allow_non_loopback=config.metrics.allow_remote)
            self._metrics_server.start()
            log.info("metrics_listening", url=self._metrics_server.url)
        self.notifier.ready(self.status_line())
        self._pinger = WatchdogPinger.from_environment(self.notifier, self.health.check, self.status_line)
        if self._pinger is not None:
            self._pinger.start()
        log.info("daemon_started", version=__version__, watches=[w.name for w in config.watches],
                 workers=config.workers, small_file_workers=config.small_file_workers, pid=os.getpid(),
                 once=self.once, host_id=config.host_id)

    def _shared_windows(self) -> WindowStore | None:
        """The Box rate windows shared by every host of a PostgreSQL journal (None: this process's own)."""
        assert self.journal is not None
        pool = self.journal.connection_pool()
        if pool is None:
            return None
        from syncd.box import PostgresWindows  # psycopg only when asked for

        return PostgresWindows(pool, self.config.host_id)

    def _main_loop(self) -> None:
        """Tick every TICK_SECONDS (reloads, stranded claims, status, alerts) until stopped.

        `syncd once` also returns the moment nothing is in flight or due: it waits on the
        pipeline's activity, so the move that empties the pipeline (the last commit
        journaled, the last scan or after-upload action done) wakes it, and it trusts a
        look at every stage only when nothing moved during the look.
        """
        next_tick = time.monotonic() + TICK_SECONDS
        while not self._stop.is_set():
            if time.monotonic() >= next_tick:
                self._tick()
                next_tick = time.monotonic() + TICK_SECONDS
            if not self.once:
                self._stop.wait(max(0.0, next_tick - time.monotonic()))
                continue
            seen = self.activity.generation
            if self._nothing_left() and self.activity.generation == seen:
                log.info("once_finished", detail="nothing in flight or due")
                return
            self.activity.wait(seen, next_tick - time.monotonic())

    def _tick(self) -> None:
        assert self.ingest is not None
        if self.presence is not None and self.presence.fatal is not None:
            self._exit_code = EXIT_HOST_REFUSED
            self.stop()
            return
        if self._reload_requested.is_set():
            self._reload_requested.clear()
            self.reload()
        if len(self.ingest.stranded) and self.ingest.stranded.requeue():
            self._wake_workers()
        self.notifier.status(self.status_line())
        self._check_alerts()

    def _shutdown(self) -> int:
        assert self.pool is not None and self.intake is not None and self.journal is not None
        self.notifier.stopping("stopping: finishing in-flight uploads")
        log.info("daemon_stopping", timeout_s=self.config.shutdown_timeout)
        if self._pinger is not None:
            self._pinger.stop()
        self.intake.stop()
        finished = self.pool.stop(self.config.shutdown_timeout)
        if not finished:
            log.warning("shutdown_timeout", detail="uploads still running were left to resume at next start")
        for part in (self.lease_keeper, self.post_actions, self.breaker, self.upkeep, self.leases):
            if part is not None:
                part.stop()
        if self.presence is not None:
            if finished:  # a worker still running keeps its lease until its process is gone
                self._give_back_leases()
            self.presence.stop()
        if self._journal_probe is not None:
            self._journal_probe.close()
        if self._metrics_server is not None:
            self._metrics_server.stop()
        if self.box is not None:
            self.box.close()
        try:
            counts = self.journal.counts_by_state()
            post_actions = self.journal.post_actions_pending()[0]
        except JournalError as exc:  # a shared journal out of reach: nothing more to say, nothing lost
            log.info("daemon_stopped", reason=str(exc))
            return 1 if self.once else 0
        if self.journal.path is not None:
            state_path_for(self.journal.path).unlink(missing_ok=True)  # nothing to tell once stopped
        log.info("daemon_stopped", post_actions_pending=post_actions, **{str(k): v for k, v in counts.items()})
        if self.once:
            left = counts.get(FileState.PENDING, 0) + counts.get(FileState.FAILED, 0) + counts.get(FileState.UPLOADING, 0)
            return 0 if left == 0 and post_actions == 0 else 1
        return 0

    def _give_back_leases(self) -> None:
        """A clean stop: our claims' leases lapse now, so another host goes on at once."""
        assert self.journal is not None
        try:
            self.journal.give_back_leases()
        except JournalError as exc:
            log.warning("leases_not_given_back", reason=str(exc), detail="they lapse after the lease time")

    def stop(self) -> None:
        self._stop.set()
        self.activity.moved()  # `syncd once` waits on the activity, not on the stop event

    def _check_credentials(self) -> None:
        """Ask Box once who we are (in a thread: a Box that is down must not delay start-up).

        Refused credentials pause every upload and are probed until Box accepts them (the
        breaker): `syncd run` goes on, degraded, and says so in status, /healthz and the
        metrics, rather than exit and be restarted by systemd again and again. `syncd once`
        stops with exit 1: a batch run has nothing to wait for. An unreachable Box is only a
        warning: files wait for it with their retries."""
        assert self.breaker is not None
        if self.breaker.check_at_start() is False and self.once:
            self._exit_code = EXIT_CREDENTIALS_REFUSED
            self.stop()

    # ----------------------------------------------------------------- signals

    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        signal.signal(signal.SIGTERM, self._on_stop_signal)
        signal.signal(signal.SIGINT, self._on_stop_signal)
        signal.signal(signal.SIGHUP, lambda signum, frame: self._reload_requested.set())

    def _on_stop_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signals += 1
        if self._signals > 1:
            # The journal records intent before every remote step: stopping now loses nothing.
            os.write(2, b"syncd: second signal, stopping at once\n")
            os._exit(0)
        self.stop()  # re-entrant: the activity's lock is an RLock, this thread may hold it

    def reload(self) -> None:
        """SIGHUP: load the config file again and apply it, or keep the old one."""
        assert self.intake is not None and self.ingest is not None
        source = self.config.source
        if source is None:
            return
        self.notifier.reloading("reloading configuration")
        try:
            new = load_config(source)
        except ConfigError as exc:
            log.error("reload_rejected", reason=str(exc), problems=len(exc.problems))
            self._reloaded(ReloadResult(False, time.time(), f"{len(exc.problems)} problem(s) in {source}"))
            self.notifier.ready(self.status_line())
            return
        changes = diff_configs(self.config, new)
        for secret in new.secrets:
            register_secret(secret)
        # The Box connection, journal and worker pool are built once; say so rather than half-apply.
        later = changes.restart_required
        if later:
            log.warning("reload_needs_restart", keys=list(later),
                        detail="these settings take effect at the next restart")
        if new.logging != self.config.logging:
            configure_logging(self.log_format or new.logging.format, new.logging.level)
        self.config = new
        self.health.failure_window_s = new.health.failure_window  # stuck_after is read from self.config
        self.ingest.reconfigure(new)
        if self.post_actions is not None:
            self.post_actions.reconfigure(new)
        self.intake.reconfigure(new, changes)
        self.metrics.set_expected_arrivals({w.name: w.expect_files_every for w in new.watches})
        log.info("config_reloaded", changes=changes.describe())
        self._reloaded(ReloadResult(True, time.time(), f"{len(changes.describe())} change(s)", tuple(later)))
        self.notifier.ready(self.status_line())

    def _reloaded(self, result: ReloadResult) -> None:
        self._last_reload = result
        self.metrics.record_reload(result.ok, result.at)
        self._publish_state()

    def _publish_state(self) -> None:
        """Write what only the daemon knows beside the journal, for `syncd status`. A shared journal
        has no file beside it: each host's heartbeat carries its state there instead."""
        if self.journal is None or self.journal.path is None:
            return
        with self._publish_lock:
            state = PublishedState(os.getpid(), self.started_at, self.box_state.refusals(), self._last_reload)
            try:
                publish(self.journal.path, state)
            except OSError as exc:
                log.warning("daemon_state_not_published", reason=exc.strerror or str(exc),
                            directory=str(self.journal.path.parent))

    # ------------------------------------------------------------------- work

    def _process(self, record: FileRecord, stopping: threading.Event, progress: JobProgress) -> None:
        assert self.ingest is not None and self.claims is not None
        claimed_at = self.claims.claimed_at(record)
        interrupted = self.claims.was_interrupted(record)
        # Several hosts: the claim's lease is kept while the job runs (one journal: nothing to keep).
        held = self.holds.hold(record, progress, claimed_at) if self.holds is not None else nullcontext(None)
        with self.metrics.upload_in_flight(), held as hold:
            outcome: Outcome = self.ingest.process(record, stopping, progress=progress, interrupted=interrupted,
                                                   hold=hold)
        if outcome.kind is OutcomeKind.FAILED:
            self.metrics.record_failure(record.watch, outcome.code or outcome.kind.value)
        elif outcome.kind is OutcomeKind.QUARANTINED:
            self.metrics.record_quarantine(record.watch, outcome.code or outcome.kind.value)
        elif outcome.kind in (OutcomeKind.RETRY, OutcomeKind.STRANDED):
            self.metrics.record_retry(outcome.code or "unknown")

    def _bytes_sent(self, n: int) -> None:
        """Bytes Box acknowledged (a part, or a piece of a direct body), for the metrics (the job's
        progress is counted by ingest, through its Attempt)."""
        self.metrics.record_bytes(n)

    def _wake_workers(self) -> None:
        if self.pool is not None:
            self.pool.wake()

    def _idle_workers(self) -> int:
        return sum(s.busy_since is None for s in self.pool.states) if self.pool is not None else 0

    def _journal_reachable(self, available: bool) -> None:
        """The shared journal became reachable again, or not: metrics, STATUS=, and work resumes."""
        self.metrics.set_journal_available(available)
        self.notifier.status(self.status_line())
        if available:
            self._wake_workers()

    def _host_state(self) -> tuple[str, str | None]:
        """What this host's heartbeat says of it: degraded while Box refuses a scope."""
        refusals = self.box_state.refusals()
        if refusals:
            return "degraded", "; ".join(f"Box refuses {r.scope}" for r in refusals)
        return "running", None

    def _scanned(self, watch: str, at: float) -> None:
        """A scan of `watch` finished: the metric, and every after-upload action of the watch is tried."""
        self.metrics.record_scan(watch, at)
        if self.post_actions is not None:
            self.post_actions.run_for_scan(watch)

    def _uploaded(self, record: FileRecord, result, duration: float) -> None:
        method = "chunked" if result.size >= self.config.box.direct_upload_max else "direct"
        self.metrics.record_upload(record.watch, result.size, method, duration,
                                   detect_to_commit_s=max(0.0, time.time() - record.detected_at))
        self.metrics.record_reused_bytes(result.bytes_reused)

    def _nothing_left(self) -> bool:
        """Nothing in flight or due within 30 s: intake idle (scans done, readiness holding
        nothing), no worker claiming or working, no interrupted or stranded claim, no pending
        file or after-upload action due. Stages are looked at upstream first (work moves
        downstream: a file handed on during the look is seen where it arrives); the caller
        makes it an instant's truth by checking that nothing moved meanwhile."""
        assert self.journal is not None and self.intake is not None and self.pool is not None
        assert self.claims is not None
        if self.intake.busy() or self.pool.busy():
            return False
        if self.presence is not None and not self.presence.available():
            return False  # what is left cannot be known (nor done) without the journal
        if self.claims.has_interrupted() or (self.ingest is not None and len(self.ingest.stranded)):
            return False
        soon = time.time() + 30
        try:
            due = [self.journal.next_post_action_time()]
            if self.breaker is None or self.breaker.paused(None) is None:
                # Files of a watch Box refuses wait for Box, not for their time: they are left for the next run.
                paused = [w.name for w in self.config.watches if self.breaker and self.breaker.paused(w.name)]
                due.append(self.journal.next_attempt_time(excluding=paused))
        except JournalError:
            return False
        return all(at is None or at > soon for at in due)

    # ----------------------------------------------------------------- health

    def _register_health(self) -> None:
        assert self.intake is not None and self.pool is not None and self.post_actions is not None
        assert self._journal_probe is not None
        intake, pool, post_actions, probe = self.intake, self.pool, self.post_actions, self._journal_probe

        def watching() -> tuple[bool, str]:
            problems = intake.problems()
            return (not problems, "; ".join(problems) or "observers, readiness and intake running")

        def workers() -> tuple[bool, str]:
            if not pool.alive():
                return False, "a worker thread died"
            if not post_actions.alive():
                return False, "the after-upload actions thread died"
            limit = self.config.health.stuck_after
            stuck = [f"{s.name} on {s.current}" for s in pool.stuck(limit)]
            action = post_actions.progress
            if action is not None and action.silent_for() > limit:
                stuck.append(f"after-upload action on {action.label}")
            if stuck:
                return False, f"no progress for over {limit:g}s: {', '.join(stuck)}"
            return True, f"{sum(s.busy_since is not None for s in pool.states)} busy"

        def journal_readable() -> tuple[bool, str]:
            probe.readable()  # its own read-only connection: never waits behind a worker's write
            return True, "readable"

        def journal_writable() -> tuple[bool, str]:
            probe.writable(time.time())  # a durable write of the heartbeat row, on its own connection
            stranded = len(self.ingest.stranded) if self.ingest is not None else 0
            if stranded:
                return True, f"writable; {stranded} file(s) to put back to pending"
            return True, "writable"

        def journal_reachable() -> tuple[bool, str]:
            assert self.presence is not None
            outage = self.presence.outage()
            if outage is None:
                return True, f"reachable; {len(self.holds or ())} lease(s) held"
            return False, f"journal unreachable since {_clock_time(outage.since)}: {outage.reason}"

        self.health.register("intake", watching)
        self.health.register("workers", workers)
        # A shared journal out of reach is a network's fault: a restart cures nothing, and the
        # host resumes by itself (docs/MULTI_HOST.md section 8). One file's journal is this host's own.
        shared = self.presence is not None
        self.health.register("journal_readable", journal_readable, critical=not shared)
        if shared:
            self.health.register("journal_reachable", journal_reachable, critical=False)
        # A full or read-only disk: degraded, never a restart (it would not free the disk).
        self.health.register("journal", journal_writable, critical=False)

    def _attach_metrics(self) -> None:
        """Point the scrape-time gauges at their owners: the journal, the Box-side state, the health check."""
        assert self.journal is not None
        journal = self.journal
        self.metrics.attach_journal(journal.counts_by_state, self._oldest_pending_age,
                                    lambda: {w.name: journal.last_arrival(w.name) for w in self.config.watches})
        self.metrics.attach_box_state(lambda: {
            scope: self.box_state.refusing(scope)
            for scope in (CREDENTIALS_SCOPE, *(watch_scope(w.name) for w in self.config.watches))})
        self.metrics.attach_health(lambda: {p.name: p.ok for p in self.health.check().probes})
        self.metrics.attach_post_actions(lambda: journal.post_actions_pending(1)[0])
        self.metrics.set_expected_arrivals({w.name: w.expect_files_every for w in self.config.watches})
        self.metrics.record_reload(True, self.started_at)
        self.metrics.set_journal_available(True)  # opened; a shared journal's presence says when it is not

    def _oldest_pending_age(self) -> float:
        assert self.journal is not None
        oldest = self.journal.oldest_pending()
        return 0.0 if oldest is None else max(0.0, time.time() - oldest.detected_at)

    def status_line(self) -> str:
        """One line for systemd's STATUS=: what the daemon is doing now."""
        if self.journal is None:
            return "starting"
        busy = sum(s.busy_since is not None for s in self.pool.states) if self.pool else 0
        outage = self.presence.outage() if self.presence is not None else None
        if outage is not None:
            return (f"degraded: journal unreachable since {_clock_time(outage.since)} "
                    f"({busy} upload(s) stopping)")
        try:
            counts = self.journal.counts_by_state()
            post_actions = self.journal.post_actions_pending(1)[0]
        except JournalError as exc:
            return f"degraded: journal error: {exc}"
        parts = [f"Box refuses {r.scope}" for r in self.box_state.refusals()]
        parts += [f"uploading {busy}", f"pending {counts.get(FileState.PENDING, 0)}",
                  f"uploaded {counts.get(FileState.UPLOADED, 0)}"]
        for state in (FileState.FAILED, FileState.QUARANTINED):
            if counts.get(state):
                parts.append(f"{state} {counts[state]}")
        if post_actions:
            parts.append(f"after-upload actions pending {post_actions}")
        return ", ".join(parts)

    def _check_alerts(self) -> None:
        """Log each alert-worthy condition once, at warning level (`syncd status` shows them too)."""
        assert self.journal is not None
        try:
            alerts = current_alerts(self.journal, self.config, time.time())
        except JournalError:
            return  # unreachable or refusing: said by STATUS= and /healthz; alerts wait for it
        for alert in alerts:
            if alert.key not in self._alerted:
                self._alerted.add(alert.key)
                log.warning(alert.event, detail=alert.message, **alert.fields)


def _clock_time(at: float) -> str:
    """An epoch time as the local HH:MM:SS (for STATUS= and /healthz)."""
    return time.strftime("%H:%M:%S", time.localtime(at))


def run_daemon(config: Config, *, once: bool = False, log_format: str | None = None) -> int:
    """Set up logging and run the daemon; the `syncd run`/`once` entry point.

    `log_format` overrides `logging.format` (``syncd run --json``), for this run and its reloads.
    """
    for secret in config.secrets:
        register_secret(secret)
    configure_logging(log_format or config.logging.format, config.logging.level)
    route_uncaught_exceptions()  # a crash's traceback goes through the redactor too
    for warning in config.warnings:
        log.warning("config_warning", detail=warning)
    return Daemon(config, once=once, log_format=log_format).run()
