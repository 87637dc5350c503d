"""Prometheus metrics for the daemon (served by `syncd.service.metrics_server`).

`Metrics` owns its own `CollectorRegistry` (never prometheus_client's global
one), so several daemons, or several tests, can live in one process. All
metric names carry the `syncd_` prefix:

| metric | type | labels |
|---|---|---|
| syncd_files_uploaded_total | counter | watch |
| syncd_bytes_uploaded_total | counter | watch |
| syncd_upload_failures_total | counter | watch, reason |
| syncd_retries_total | counter | reason |
| syncd_rate_limited_total | counter | (429 answers from Box) |
| syncd_queue_depth | gauge, read from the journal at scrape time | state |
| syncd_oldest_pending_age_seconds | gauge, read at scrape time | |
| syncd_uploads_in_flight | gauge | |
| syncd_upload_duration_seconds | histogram | method (direct, chunked) |
| syncd_detect_to_commit_seconds | histogram | |
| syncd_observer_restarts_total | counter | watch |
| syncd_last_scan_timestamp_seconds | gauge | watch |

`reason` labels must come from a bounded set (error codes such as
`rate_limited`, `server_error`, `item_name_invalid`), never from free text,
or every distinct message would become a new time series.

This module is a leaf: the journal's numbers come in through
callbacks, so it never imports the journal, the pipeline or the Box client.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

log = structlog.get_logger("syncd.metrics")  # named as before the move into syncd.service

UPLOAD_METHODS = ("direct", "chunked")

# From a 1 KiB direct upload on a LAN to a multi-GiB chunked session.
UPLOAD_DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
# Includes the settle period (seconds) and queueing behind other files (up to hours).
DETECT_TO_COMMIT_BUCKETS = (1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)

QueueCounts = Callable[[], Mapping[str, int]]
OldestPendingAge = Callable[[], float | None]


class MetricsInputError(ValueError):
    """A metric was recorded with a value that makes no sense (negative size, unknown method...)."""


@dataclass(frozen=True)
class JournalGauges:
    """Callbacks read at scrape time: counts by state, and the oldest pending file's age (or None)."""

    queue_counts: QueueCounts
    oldest_pending_age_s: OldestPendingAge


class _JournalCollector(Collector):
    """Reads queue depth and oldest pending age only when Prometheus scrapes.

    Reading at scrape time keeps the numbers exactly what the journal says,
    instead of a copy that every state change would have to keep in sync.
    """

    def __init__(self) -> None:
        self._gauges: JournalGauges | None = None
        self._lock = threading.Lock()

    def attach(self, gauges: JournalGauges | None) -> None:
        with self._lock:
            self._gauges = gauges

    def describe(self) -> list[Metric]:
        # Declaring the families up front lets the registry reject name clashes at registration.
        return [self._queue_family(), self._age_family()]

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            gauges = self._gauges
        if gauges is None:
            return
        yield from self._collect_queue(gauges)
        yield from self._collect_age(gauges)

    def _collect_queue(self, gauges: JournalGauges) -> Iterator[Metric]:
        try:
            # str() so enum states (the journal's FileState is a StrEnum) become plain label values.
            counts = {str(state): int(n) for state, n in gauges.queue_counts().items()}
        except Exception as exc:  # a scrape must not fail because the journal is busy
            log.warning("metrics_queue_counts_failed", error=f"{type(exc).__name__}: {exc}")
            return
        family = self._queue_family()
        for state, count in sorted(counts.items()):
            family.add_metric([state], float(count))
        yield family

    def _collect_age(self, gauges: JournalGauges) -> Iterator[Metric]:
        try:
            age = gauges.oldest_pending_age_s()
        except Exception as exc:
            log.warning("metrics_oldest_pending_failed", error=f"{type(exc).__name__}: {exc}")
            return
        family = self._age_family()
        family.add_metric([], 0.0 if age is None else max(0.0, float(age)))
        yield family

    @staticmethod
    def _queue_family() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "syncd_queue_depth", "Files in the journal by state.", labels=["state"]
        )

    @staticmethod
    def _age_family() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "syncd_oldest_pending_age_seconds",
            "Age of the oldest file waiting to be uploaded (0 when none is waiting).",
        )


class Metrics:
    """All of syncd's metrics, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.files_uploaded = Counter(
            "syncd_files_uploaded", "Files committed to Box.", ["watch"], registry=r
        )
        self.bytes_uploaded = Counter(
            "syncd_bytes_uploaded", "Bytes of files committed to Box.", ["watch"], registry=r
        )
        self.upload_failures = Counter(
            "syncd_upload_failures",
            "Uploads that failed for good (parked as failed or quarantined).",
            ["watch", "reason"],
            registry=r,
        )
        self.retries = Counter("syncd_retries", "Requests or uploads retried.", ["reason"], registry=r)
        self.rate_limited = Counter(
            "syncd_rate_limited", "429 Too Many Requests answers from Box.", registry=r
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
        self._journal = _JournalCollector()
        r.register(self._journal)

    def __repr__(self) -> str:
        return "Metrics()"

    def attach_journal(self, queue_counts: QueueCounts, oldest_pending_age_s: OldestPendingAge) -> None:
        """Read queue depth by state and the oldest pending age from these callbacks at scrape time."""
        self._journal.attach(JournalGauges(queue_counts, oldest_pending_age_s))

    def detach_journal(self) -> None:
        """Stop reporting journal gauges (e.g. while the journal is closed)."""
        self._journal.attach(None)

    def record_upload(
        self,
        watch: str,
        size_bytes: int,
        method: str,
        duration_s: float,
        detect_to_commit_s: float | None = None,
    ) -> None:
        """Count one verified commit: file and bytes per watch, duration by method, end-to-end latency."""
        if method not in UPLOAD_METHODS:
            raise MetricsInputError(f"upload method must be one of {UPLOAD_METHODS}, got {method!r}")
        _require_non_negative("size_bytes", size_bytes)
        _require_non_negative("duration_s", duration_s)
        self.files_uploaded.labels(watch=watch).inc()
        self.bytes_uploaded.labels(watch=watch).inc(size_bytes)
        self.upload_duration.labels(method=method).observe(duration_s)
        if detect_to_commit_s is not None:
            _require_non_negative("detect_to_commit_s", detect_to_commit_s)
            self.detect_to_commit.observe(detect_to_commit_s)

    def record_failure(self, watch: str, reason: str) -> None:
        """Count a file parked as failed/quarantined; `reason` is an error code, not a message."""
        self.upload_failures.labels(watch=watch, reason=_require_label("reason", reason)).inc()

    def record_retry(self, reason: str) -> None:
        """Count one retry; `reason` is an error code (e.g. rate_limited, server_error, timeout)."""
        self.retries.labels(reason=_require_label("reason", reason)).inc()

    def record_rate_limited(self) -> None:
        """Count one 429 answer."""
        self.rate_limited.inc()

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

    def exposition(self, accept: str = "") -> tuple[bytes, str]:
        """The scrape body and its content type, negotiated from an Accept header."""
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type


def _require_non_negative(name: str, value: float) -> None:
    if value < 0:
        raise MetricsInputError(f"{name} must not be negative, got {value}")


def _require_label(name: str, value: str) -> str:
    if not value:
        raise MetricsInputError(f"the {name} label must not be empty")
    return value
