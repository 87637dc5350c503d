"""Prometheus metrics for the daemon (served by `syncd.service.metrics_server`).

`Metrics` owns its own `CollectorRegistry` (never prometheus_client's global
one), so several daemons, or several tests, can live in one process. Names follow
Prometheus conventions: the `syncd_` prefix, base units in the name (`_seconds`,
`_bytes`), `_total` on counters, `_timestamp_seconds` for Unix times.

Every `syncd_*` metric carries a `host` label, the config's `host_id` (default the
hostname), so that the hosts sharing one PostgreSQL journal can be told apart whatever
the scrape target is called. prometheus_client has no registry-wide constant labels:
each family is declared with `host` first in its label names and bound once, in
`Metrics`, to the host id (`_PerHost`); `process_*` are prometheus-client's own, unchanged.
The table lists the other labels. The gauges read from the journal (files by state, oldest
pending, last arrival, post-actions pending) are the journal's numbers: every host on one
PostgreSQL journal reports the same, so they are compared per host, never summed.

| metric | type | labels | what |
|---|---|---|---|
| syncd_build_info | gauge (1) | version, python | the running build |
| process_* | prometheus-client's ProcessCollector | | CPU, memory, open fds, start time |
| syncd_uploaded_bytes_total | counter | | bytes sent to Box as they go: a chunked part when Box acknowledges it, a direct body as it is sent (refused attempts too) |
| syncd_reused_bytes_total | counter | | bytes of new versions not sent because Box already held them (upload-session plan hits) |
| syncd_uploaded_files_total | counter | watch | files committed to Box (new files and new versions) |
| syncd_committed_bytes_total | counter | watch | size of the files committed |
| syncd_failed_files_total | counter | watch, reason | files parked as failed (attempts used up, or refused) |
| syncd_quarantined_files_total | counter | watch, reason | files parked as quarantined (Box can never take them as they are) |
| syncd_retries_total | counter | reason | uploads scheduled for another attempt |
| syncd_box_responses_total | counter | endpoint, code | every HTTP answer from Box (retried ones too) |
| syncd_files | gauge, read from the journal at scrape time | state | files the journal tracks, by state |
| syncd_oldest_pending_age_seconds | gauge, read at scrape time | | age of the oldest file waiting |
| syncd_last_arrival_timestamp_seconds | gauge, read at scrape time | watch | when a file last arrived (0: never) |
| syncd_expected_arrival_interval_seconds | gauge | watch | the watch's `expect_files_every` (watches that set it) |
| syncd_box_refusing | gauge, read at scrape time | scope | 1 while Box refuses that scope (`credentials`, `watch:NAME`) |
| syncd_post_actions_pending | gauge, read from the journal at scrape time | | after-upload actions (delete, move) not done yet (`syncd status` says why) |
| syncd_health_probe_ok | gauge, read at scrape time | probe | 1 when the health probe passes (the watchdog's verdict) |
| syncd_config_last_reload_successful | gauge | | 1 when the last reload (or the start) applied the config |
| syncd_config_last_reload_success_timestamp_seconds | gauge | | when the config was last applied |
| syncd_uploads_in_flight | gauge | | uploads in progress |
| syncd_upload_duration_seconds | histogram | method (direct, chunked) | first request to verified commit |
| syncd_detect_to_commit_seconds | histogram | | first detection to verified commit |
| syncd_observer_restarts_total | counter | watch | filesystem observers restarted after dying |
| syncd_last_scan_timestamp_seconds | gauge | watch | when the last full scan of a watch finished |
| syncd_journal_available | gauge (0/1) | | 1 while the journal answers; 0 from the start until the daemon says it does, and while it cannot be reached (the host claims nothing then) |
| syncd_leases_held | gauge | | claims whose lease this host holds now |
| syncd_lease_renewals_total | counter | outcome (renewed, lost, failed) | claims by the outcome of their lease renewal: renewed; lost (taken over or changed: the job stops); failed (the renewal did not reach the journal) |
| syncd_takeovers_total | counter | | files this host took over from a host whose lease expired |
| syncd_claim_outcomes_refused_total | counter | | finished uploads whose outcome the fence refused because the claim had changed hands meanwhile (dropped; the new holder reconciles with Box) |

`reason` and `endpoint` labels come from bounded sets (error codes such as
`rate_limited`, `item_name_invalid`; endpoint templates such as
`POST /files/upload_sessions/{id}`), never from free text, or every distinct
message would become a new time series. Families whose label values are all known
up front (`outcome`) export each at 0 from the start, so a fresh daemon shows them
and `rate()` sees the first increase. `deploy/prometheus/alerts.yml` and
`deploy/grafana/syncd.json` use these names; a test scrapes a running daemon for
every name they use.

`syncd.service.metrics_server` serves `/metrics` and `/healthz`. This module is a leaf: numbers that live elsewhere (the journal, the
Box-side state, the health probes) come in through callbacks read at scrape time,
so it never imports the journal, the pipeline or the Box client.
"""

from __future__ import annotations

import platform
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Generic, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from syncd import __version__
from syncd.logs import get_logger

log = get_logger(__name__)

UPLOAD_METHODS = ("direct", "chunked")
#: What a lease renewal did to a claim (docs/MULTI_HOST.md section 5.3).
LEASE_RENEWAL_OUTCOMES = ("renewed", "lost", "failed")
#: The label every syncd metric carries, bound to the config's host_id.
HOST_LABEL = "host"

# From a 1 KiB direct upload on a LAN to a multi-GiB chunked session.
UPLOAD_DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
# Includes the settle period (seconds) and queueing behind other files (up to hours).
DETECT_TO_COMMIT_BUCKETS = (1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)

#: A scrape-time reading: label values -> sample value (an empty tuple for an unlabelled gauge).
Reading = Callable[[], Mapping[tuple[str, ...], float]]

_Family = TypeVar("_Family", Counter, Gauge, Histogram)


class MetricsInputError(ValueError):
    """A metric was recorded with a value that makes no sense (negative size, unknown method...)."""


class _ScrapeTimeGauge(Collector):
    """A gauge family whose samples are read from a callback at each scrape.

    Reading at scrape time keeps the numbers exactly what their owner (the journal,
    the Box-side state) says, instead of a copy every change would have to keep in
    sync. Without a source, or when the source raises, the family has no samples:
    a scrape must not fail because the journal is busy. `host` is put in front of
    every sample's label values, as `_PerHost` does for the other families.
    """

    def __init__(self, name: str, documentation: str, host: str, labels: tuple[str, ...] = ()) -> None:
        self.name = name
        self.documentation = documentation
        #: The label names a reading gives values for (`host` comes on top).
        self.labels = labels
        self._host = host
        self._read: Reading | None = None
        self._lock = threading.Lock()

    def attach(self, read: Reading | None) -> None:
        with self._lock:
            self._read = read

    def _family(self) -> GaugeMetricFamily:
        return GaugeMetricFamily(self.name, self.documentation, labels=[HOST_LABEL, *self.labels])

    def describe(self) -> list[Metric]:
        # Declaring the family up front lets the registry reject name clashes at registration.
        return [self._family()]

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            read = self._read
        family = self._family()
        if read is not None:
            try:
                samples = {tuple(str(v) for v in k): float(v) for k, v in read().items()}
            except Exception as exc:
                log.warning("metrics_read_failed", metric=self.name, reason=f"{type(exc).__name__}: {exc}")
                samples = {}
            for labels, value in sorted(samples.items()):
                family.add_metric([self._host, *labels], value)
        yield family


class _PerHost(Generic[_Family]):
    """A prometheus_client family declared with `host` first in its label names, bound to one host.

    `labels(**rest)` gives the child for the other labels (none for a family that has no
    other: `labels()` is then the one series), so no recording call names the host.
    """

    def __init__(self, family: _Family, host: str) -> None:
        self._family = family
        self._host = host

    def labels(self, **labels: str) -> _Family:
        return self._family.labels(**{HOST_LABEL: self._host}, **labels)

    def clear(self) -> None:
        """Drop every series of the family (this registry holds one host's only)."""
        self._family.clear()


class Metrics:
    """All of syncd's metrics, in a registry of their own, each labelled with this host's id."""

    def __init__(self, *, host_id: str) -> None:
        self.host_id = _require_label(HOST_LABEL, host_id)
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        self._family(Gauge, "syncd_build_info", "The running syncd build (always 1).", ("version", "python")).labels(
            version=__version__, python=platform.python_version()).set(1)
        self.uploaded_bytes = self._family(
            Counter, "syncd_uploaded_bytes",
            "Bytes sent to Box: a chunked part when Box acknowledges it, a direct body as it is sent.").labels()
        self.reused_bytes = self._family(
            Counter, "syncd_reused_bytes", "Bytes of new versions not sent because Box already held them (plan hits)."
        ).labels()
        self.uploaded_files = self._family(
            Counter, "syncd_uploaded_files", "Files committed to Box (new files and new versions).", ("watch",))
        self.committed_bytes = self._family(
            Counter, "syncd_committed_bytes", "Size of the files committed to Box.", ("watch",))
        self.failed_files = self._family(
            Counter, "syncd_failed_files", "Files parked as failed (attempts used up, or refused for good).",
            ("watch", "reason"))
        self.quarantined_files = self._family(
            Counter, "syncd_quarantined_files", "Files parked as quarantined (Box can never take them as they are).",
            ("watch", "reason"))
        self.retries = self._family(Counter, "syncd_retries", "Uploads scheduled for another attempt.", ("reason",))
        self.box_responses = self._family(
            Counter, "syncd_box_responses", "HTTP answers from Box (retried requests too), by endpoint and status code.",
            ("endpoint", "code"))
        self.uploads_in_flight = self._family(Gauge, "syncd_uploads_in_flight", "Uploads currently in progress.").labels()
        self.upload_duration = self._family(
            Histogram, "syncd_upload_duration_seconds", "Time from the first upload request to the verified commit.",
            ("method",), buckets=UPLOAD_DURATION_BUCKETS)
        self.detect_to_commit = self._family(
            Histogram, "syncd_detect_to_commit_seconds",
            "Time from a file's first detection to its verified commit in Box.",
            buckets=DETECT_TO_COMMIT_BUCKETS).labels()
        self.observer_restarts = self._family(
            Counter, "syncd_observer_restarts", "Filesystem observers restarted after dying.", ("watch",))
        self.last_scan_timestamp = self._family(
            Gauge, "syncd_last_scan_timestamp_seconds", "When the last full scan of a watch finished (Unix time).",
            ("watch",))
        self.expected_arrival_interval = self._family(
            Gauge, "syncd_expected_arrival_interval_seconds",
            "A watch's expect_files_every: an alert fires when no file arrived for longer.", ("watch",))
        self.reload_successful = self._family(
            Gauge, "syncd_config_last_reload_successful",
            "1 when the last reload (or the start) applied the configuration, 0 when it was rejected.").labels()
        self.reload_success_timestamp = self._family(
            Gauge, "syncd_config_last_reload_success_timestamp_seconds",
            "When the configuration was last applied (start or reload, Unix time).").labels()
        # Several hosts on one PostgreSQL journal (docs/MULTI_HOST.md sections 5 and 8).
        self.journal_available = self._family(
            Gauge, "syncd_journal_available",
            "1 while the journal answers; 0 until the daemon says it does, and while it cannot be reached "
            "(the host claims nothing then).").labels()
        self.leases_held = self._family(
            Gauge, "syncd_leases_held", "Claims whose lease this host holds now.").labels()
        self.lease_renewals = self._family(
            Counter, "syncd_lease_renewals",
            "Claims by the outcome of their lease renewal: renewed, lost (taken over or changed), "
            "failed (the renewal did not reach the journal).", ("outcome",))
        for outcome in LEASE_RENEWAL_OUTCOMES:
            self.lease_renewals.labels(outcome=outcome)  # every outcome exported from the start, at 0
        self.takeovers = self._family(
            Counter, "syncd_takeovers", "Files this host took over from a host whose lease expired.").labels()
        self.claim_outcomes_refused = self._family(
            Counter, "syncd_claim_outcomes_refused",
            "Finished uploads whose outcome the fence refused: the claim had changed hands meanwhile.").labels()
        self.files = self._scrape_time("syncd_files", "Files the journal tracks, by state.", ("state",))
        self.oldest_pending_age = self._scrape_time(
            "syncd_oldest_pending_age_seconds", "Age of the oldest file waiting to be uploaded (0 when none is).")
        self.last_arrival = self._scrape_time(
            "syncd_last_arrival_timestamp_seconds", "When a file last arrived in a watch (Unix time; 0: never).",
            ("watch",))
        self.box_refusing = self._scrape_time(
            "syncd_box_refusing", "1 while Box refuses a scope (credentials, or watch:NAME's folder).", ("scope",))
        self.health_probe_ok = self._scrape_time(
            "syncd_health_probe_ok", "1 when the health probe passes; a critical one failing for long stops the "
            "systemd watchdog pings.", ("probe",))
        self.post_actions_pending = self._scrape_time(
            "syncd_post_actions_pending", "After-upload actions (delete, move) not done yet.")

    def _family(self, kind: type[_Family], name: str, documentation: str, labels: tuple[str, ...] = (),
                **options: object) -> _PerHost[_Family]:
        """Declare a family in this registry with `host` in front of `labels`, bound to this host."""
        family = kind(name, documentation, (HOST_LABEL, *labels), registry=self.registry, **options)
        return _PerHost(family, self.host_id)

    def _scrape_time(self, name: str, documentation: str, labels: tuple[str, ...] = ()) -> _ScrapeTimeGauge:
        gauge = _ScrapeTimeGauge(name, documentation, self.host_id, labels)
        self.registry.register(gauge)
        return gauge

    def __repr__(self) -> str:
        return f"Metrics(host_id={self.host_id!r})"

    def attach_journal(self, files_by_state: Callable[[], Mapping[str, int]],
                       oldest_pending_age_s: Callable[[], float | None],
                       last_arrivals: Callable[[], Mapping[str, float | None]] | None = None) -> None:
        """Read files by state, the oldest pending age and each watch's last arrival from these
        callbacks at scrape time."""
        # str() so enum states (the journal's FileState is a StrEnum) become plain label values.
        self.files.attach(lambda: {(str(state),): n for state, n in files_by_state().items()})
        self.oldest_pending_age.attach(lambda: {(): max(0.0, oldest_pending_age_s() or 0.0)})
        if last_arrivals is not None:
            self.last_arrival.attach(lambda: {(watch,): at or 0.0 for watch, at in last_arrivals().items()})

    def attach_post_actions(self, pending: Callable[[], int]) -> None:
        """Read `syncd_post_actions_pending` from `pending()` at scrape time."""
        self.post_actions_pending.attach(lambda: {(): float(pending())})

    def detach_journal(self) -> None:
        """Stop reporting journal gauges (e.g. while the journal is closed)."""
        for gauge in (self.files, self.oldest_pending_age, self.last_arrival, self.post_actions_pending):
            gauge.attach(None)

    def attach_box_state(self, refusing: Callable[[], Mapping[str, bool]]) -> None:
        """Read `syncd_box_refusing{scope}` from `refusing()` (scope -> refusing) at scrape time."""
        self.box_refusing.attach(lambda: {(scope,): 1.0 if no else 0.0 for scope, no in refusing().items()})

    def attach_health(self, probes: Callable[[], Mapping[str, bool]]) -> None:
        """Read `syncd_health_probe_ok{probe}` from `probes()` (name -> ok) at scrape time."""
        self.health_probe_ok.attach(lambda: {(name,): 1.0 if ok else 0.0 for name, ok in probes().items()})

    def set_expected_arrivals(self, intervals: Mapping[str, float | None]) -> None:
        """Each watch's expect_files_every (seconds); watches without one are not reported."""
        self.expected_arrival_interval.clear()
        for watch, interval in intervals.items():
            if interval is not None:
                self.expected_arrival_interval.labels(watch=watch).set(interval)

    def record_reload(self, ok: bool, at: float | None = None) -> None:
        """Note a reload (or the start): applied (`ok`) or rejected."""
        self.reload_successful.set(1 if ok else 0)
        if ok:
            self.reload_success_timestamp.set(time.time() if at is None else at)

    def record_bytes(self, n: int) -> None:
        """Count `n` bytes sent to Box (an acknowledged part, or a piece of a direct upload's body)."""
        _require_non_negative("bytes", n)
        self.uploaded_bytes.inc(n)

    def record_reused_bytes(self, n: int) -> None:
        """Count `n` bytes of a committed version that Box already held, so they were not sent."""
        _require_non_negative("bytes", n)
        self.reused_bytes.inc(n)

    def record_upload(
        self,
        watch: str,
        size_bytes: int,
        method: str,
        duration_s: float,
        detect_to_commit_s: float | None = None,
    ) -> None:
        """Count one verified commit: file and its size per watch, duration by method, end-to-end latency."""
        if method not in UPLOAD_METHODS:
            raise MetricsInputError(f"upload method must be one of {UPLOAD_METHODS}, got {method!r}")
        _require_non_negative("size_bytes", size_bytes)
        _require_non_negative("duration_s", duration_s)
        self.uploaded_files.labels(watch=watch).inc()
        self.committed_bytes.labels(watch=watch).inc(size_bytes)
        self.upload_duration.labels(method=method).observe(duration_s)
        if detect_to_commit_s is not None:
            _require_non_negative("detect_to_commit_s", detect_to_commit_s)
            self.detect_to_commit.observe(detect_to_commit_s)

    def record_failure(self, watch: str, reason: str) -> None:
        """Count a file parked as failed; `reason` is an error code, not a message."""
        self.failed_files.labels(watch=watch, reason=_require_label("reason", reason)).inc()

    def record_quarantine(self, watch: str, reason: str) -> None:
        """Count a file parked as quarantined; `reason` is an error code, not a message."""
        self.quarantined_files.labels(watch=watch, reason=_require_label("reason", reason)).inc()

    def record_retry(self, reason: str) -> None:
        """Count one retry; `reason` is an error code (e.g. rate_limited, server_error, timeout)."""
        self.retries.labels(reason=_require_label("reason", reason)).inc()

    def record_box_response(self, endpoint: str, status: int) -> None:
        """Count one HTTP answer from Box; `endpoint` is a template (``GET /files/{id}``), never a raw URL."""
        self.box_responses.labels(endpoint=_require_label("endpoint", endpoint), code=str(status)).inc()

    def record_observer_restart(self, watch: str) -> None:
        """Count a filesystem observer restarted for `watch`."""
        self.observer_restarts.labels(watch=watch).inc()

    def record_scan(self, watch: str, finished_at: float | None = None) -> None:
        """Note that a full scan of `watch` finished (now, unless `finished_at` is given)."""
        self.last_scan_timestamp.labels(watch=watch).set(time.time() if finished_at is None else finished_at)

    def set_journal_available(self, available: bool) -> None:
        """Say whether the journal answers (after opening it, and at each change)."""
        self.journal_available.set(1 if available else 0)

    def set_leases_held(self, n: int) -> None:
        """The number of claims whose lease this host holds now."""
        _require_non_negative("leases held", n)
        self.leases_held.set(n)

    def record_lease_renewals(self, outcome: str, n: int = 1) -> None:
        """Count `n` claims whose renewal ended in `outcome` (renewed, lost or failed)."""
        if outcome not in LEASE_RENEWAL_OUTCOMES:
            raise MetricsInputError(f"lease renewal outcome must be one of {LEASE_RENEWAL_OUTCOMES}, got {outcome!r}")
        _require_non_negative("renewals", n)
        self.lease_renewals.labels(outcome=outcome).inc(n)

    def record_takeovers(self, n: int) -> None:
        """Count `n` files taken over from hosts whose leases expired."""
        _require_non_negative("takeovers", n)
        self.takeovers.inc(n)

    def record_claim_outcome_refused(self) -> None:
        """Count one finished upload whose outcome the fence refused (the claim changed hands)."""
        self.claim_outcomes_refused.inc()

    @contextmanager
    def upload_in_flight(self) -> Iterator[None]:
        """Count an upload as in flight for the duration of the `with` block, whatever happens in it."""
        self.uploads_in_flight.inc()
        try:
            yield
        finally:
            self.uploads_in_flight.dec()

    def box_refusals(self) -> dict[str, bool]:
        """The Box-side state as last attached (scope -> refusing), for /healthz."""
        return {labels[0]: bool(value) for labels, value in _read_now(self.box_refusing).items()}

    def exposition(self, accept: str = "") -> tuple[bytes, str]:
        """The scrape body and its content type, negotiated from an Accept header."""
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type


def _read_now(gauge: _ScrapeTimeGauge) -> dict[tuple[str, ...], float]:
    """The gauge's samples as its reading gives them (without the host)."""
    family = next(gauge.collect())
    return {tuple(sample.labels[name] for name in gauge.labels): sample.value for sample in family.samples}


def _require_non_negative(name: str, value: float) -> None:
    if value < 0:
        raise MetricsInputError(f"{name} must not be negative, got {value}")


def _require_label(name: str, value: str) -> str:
    if not value:
        raise MetricsInputError(f"the {name} label must not be empty")
    return value
