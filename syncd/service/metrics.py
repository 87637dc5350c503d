"""Prometheus metrics for the daemon (served by `syncd.service.metrics_server`).

`Metrics` owns its own `CollectorRegistry` (never prometheus_client's global
one), so several daemons, or several tests, can live in one process. Names follow
Prometheus conventions: the `syncd_` prefix, base units in the name (`_seconds`,
`_bytes`), `_total` on counters, `_timestamp_seconds` for Unix times.

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

`reason` and `endpoint` labels come from bounded sets (error codes such as
`rate_limited`, `item_name_invalid`; endpoint templates such as
`POST /files/upload_sessions/{id}`), never from free text, or every distinct
message would become a new time series. `deploy/prometheus/alerts.yml` and
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

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from syncd import __version__
from syncd.logs import get_logger

log = get_logger(__name__)

UPLOAD_METHODS = ("direct", "chunked")

# From a 1 KiB direct upload on a LAN to a multi-GiB chunked session.
UPLOAD_DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
# Includes the settle period (seconds) and queueing behind other files (up to hours).
DETECT_TO_COMMIT_BUCKETS = (1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)

#: A scrape-time reading: label values -> sample value (an empty tuple for an unlabelled gauge).
Reading = Callable[[], Mapping[tuple[str, ...], float]]


class MetricsInputError(ValueError):
    """A metric was recorded with a value that makes no sense (negative size, unknown method...)."""


class _ScrapeTimeGauge(Collector):
    """A gauge family whose samples are read from a callback at each scrape.

    Reading at scrape time keeps the numbers exactly what their owner (the journal,
    the Box-side state) says, instead of a copy every change would have to keep in
    sync. Without a source, or when the source raises, the family has no samples:
    a scrape must not fail because the journal is busy.
    """

    def __init__(self, name: str, documentation: str, labels: tuple[str, ...] = ()) -> None:
        self.name = name
        self.documentation = documentation
        self.labels = labels
        self._read: Reading | None = None
        self._lock = threading.Lock()

    def attach(self, read: Reading | None) -> None:
        with self._lock:
            self._read = read

    def _family(self) -> GaugeMetricFamily:
        return GaugeMetricFamily(self.name, self.documentation, labels=list(self.labels))

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
                family.add_metric(list(labels), value)
        yield family


class Metrics:
    """All of syncd's metrics, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        ProcessCollector(registry=r)
        Gauge("syncd_build_info", "The running syncd build (always 1).", ["version", "python"], registry=r).labels(
            version=__version__, python=platform.python_version()).set(1)
        self.uploaded_bytes = Counter(
            "syncd_uploaded_bytes", "Bytes sent to Box: a chunked part when Box acknowledges it, a direct body as it is sent.",
            registry=r,
        )
        self.reused_bytes = Counter(
            "syncd_reused_bytes", "Bytes of new versions not sent because Box already held them (plan hits).",
            registry=r,
        )
        self.uploaded_files = Counter(
            "syncd_uploaded_files", "Files committed to Box (new files and new versions).", ["watch"], registry=r
        )
        self.committed_bytes = Counter(
            "syncd_committed_bytes", "Size of the files committed to Box.", ["watch"], registry=r
        )
        self.failed_files = Counter(
            "syncd_failed_files", "Files parked as failed (attempts used up, or refused for good).",
            ["watch", "reason"], registry=r,
        )
        self.quarantined_files = Counter(
            "syncd_quarantined_files", "Files parked as quarantined (Box can never take them as they are).",
            ["watch", "reason"], registry=r,
        )
        self.retries = Counter("syncd_retries", "Uploads scheduled for another attempt.", ["reason"], registry=r)
        self.box_responses = Counter(
            "syncd_box_responses", "HTTP answers from Box (retried requests too), by endpoint and status code.",
            ["endpoint", "code"], registry=r,
        )
        self.uploads_in_flight = Gauge(
            "syncd_uploads_in_flight", "Uploads currently in progress.", registry=r
        )
        self.upload_duration = Histogram(
            "syncd_upload_duration_seconds",
            "Time from the first upload request to the verified commit.",
            ["method"],
            buckets=UPLOAD_DURATION_BUCKETS,
            registry=r,
        )
        self.detect_to_commit = Histogram(
            "syncd_detect_to_commit_seconds",
            "Time from a file's first detection to its verified commit in Box.",
            buckets=DETECT_TO_COMMIT_BUCKETS,
            registry=r,
        )
        self.observer_restarts = Counter(
            "syncd_observer_restarts", "Filesystem observers restarted after dying.", ["watch"], registry=r
        )
        self.last_scan_timestamp = Gauge(
            "syncd_last_scan_timestamp_seconds",
            "When the last full scan of a watch finished (Unix time).",
            ["watch"],
            registry=r,
        )
        self.expected_arrival_interval = Gauge(
            "syncd_expected_arrival_interval_seconds",
            "A watch's expect_files_every: an alert fires when no file arrived for longer.",
            ["watch"],
            registry=r,
        )
        self.reload_successful = Gauge(
            "syncd_config_last_reload_successful",
            "1 when the last reload (or the start) applied the configuration, 0 when it was rejected.",
            registry=r,
        )
        self.reload_success_timestamp = Gauge(
            "syncd_config_last_reload_success_timestamp_seconds",
            "When the configuration was last applied (start or reload, Unix time).",
            registry=r,
        )
        self.files = _ScrapeTimeGauge("syncd_files", "Files the journal tracks, by state.", ("state",))
        self.oldest_pending_age = _ScrapeTimeGauge(
            "syncd_oldest_pending_age_seconds", "Age of the oldest file waiting to be uploaded (0 when none is).")
        self.last_arrival = _ScrapeTimeGauge(
            "syncd_last_arrival_timestamp_seconds", "When a file last arrived in a watch (Unix time; 0: never).",
            ("watch",))
        self.box_refusing = _ScrapeTimeGauge(
            "syncd_box_refusing", "1 while Box refuses a scope (credentials, or watch:NAME's folder).", ("scope",))
        self.health_probe_ok = _ScrapeTimeGauge(
            "syncd_health_probe_ok", "1 when the health probe passes; a critical one failing for long stops the "
            "systemd watchdog pings.", ("probe",))
        self.post_actions_pending = _ScrapeTimeGauge(
            "syncd_post_actions_pending", "After-upload actions (delete, move) not done yet.")
        for collector in (self.files, self.oldest_pending_age, self.last_arrival, self.box_refusing,
                          self.health_probe_ok, self.post_actions_pending):
            r.register(collector)

    def __repr__(self) -> str:
        return "Metrics()"

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
    family = next(gauge.collect())
    return {tuple(sample.labels[name] for name in gauge.labels): sample.value for sample in family.samples}


def _require_non_negative(name: str, value: float) -> None:
    if value < 0:
        raise MetricsInputError(f"{name} must not be negative, got {value}")


def _require_label(name: str, value: str) -> str:
    if not value:
        raise MetricsInputError(f"the {name} label must not be empty")
    return value
