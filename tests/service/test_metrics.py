"""Metrics scraped over real HTTP from a real MetricsServer, parsed with prometheus_client's parser."""

from __future__ import annotations

import enum
import json
import platform
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from syncd import __version__
from syncd.service.health import HealthCheck
from syncd.service.metrics import Metrics, MetricsInputError
from syncd.service.metrics_server import MetricsServer, MetricsServerError

pytestmark = pytest.mark.timeout(30)

HOST = "ingest-1"


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(host_id=HOST)


@pytest.fixture
def health() -> HealthCheck:
    return HealthCheck()


@pytest.fixture
def server(metrics: Metrics, health: HealthCheck) -> Iterator[MetricsServer]:
    srv = MetricsServer(metrics, health, "127.0.0.1", 0)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def get(url: str) -> tuple[int, str, str]:
    """(status, content type, body) of a GET, including error statuses."""
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], err.read().decode()


def scrape(server: MetricsServer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every syncd sample on /metrics, keyed by (sample name, sorted labels other than the host).

    Each one must carry this host's label (checked here, so every test checks it);
    prometheus-client's own `process_*` carry none and are kept as they come.
    """
    status, content_type, body = get(server.url + "/metrics")
    assert status == 200
    assert content_type.startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            labels = dict(sample.labels)
            if sample.name.startswith("syncd_"):
                assert labels.pop("host", None) == HOST, sample
            else:
                assert "host" not in labels, sample
            samples[(sample.name, tuple(sorted(labels.items())))] = sample.value
    return samples


def test_recorded_events_appear_in_a_scrape(metrics: Metrics, server: MetricsServer) -> None:
    metrics.record_upload("inbox", 1000, "direct", 0.2, detect_to_commit_s=3.0)
    metrics.record_upload("inbox", 24_000_000, "chunked", 12.0, detect_to_commit_s=20.0)
    metrics.record_upload("scans", 10, "direct", 0.01)
    metrics.record_bytes(8 * 1024 * 1024)  # a part acknowledged, long before its file commits
    metrics.record_failure("inbox", "attempts_exhausted")
    metrics.record_quarantine("inbox", "item_name_invalid")
    metrics.record_retry("rate_limited")
    metrics.record_retry("rate_limited")
    metrics.record_box_response("PUT /files/upload_sessions/{id}", 429)
    metrics.record_box_response("PUT /files/upload_sessions/{id}", 200)
    metrics.record_reload(False)
    metrics.record_observer_restart("scans")
    metrics.record_scan("inbox", finished_at=1_700_000_000.0)

    s = scrape(server)

    assert s[("syncd_uploaded_files_total", (("watch", "inbox"),))] == 2
    assert s[("syncd_uploaded_files_total", (("watch", "scans"),))] == 1
    assert s[("syncd_committed_bytes_total", (("watch", "inbox"),))] == 24_001_000
    assert s[("syncd_uploaded_bytes_total", ())] == 8 * 1024 * 1024
    # failures and quarantines are counted apart
    assert s[("syncd_failed_files_total", (("reason", "attempts_exhausted"), ("watch", "inbox")))] == 1
    assert s[("syncd_quarantined_files_total", (("reason", "item_name_invalid"), ("watch", "inbox")))] == 1
    assert not any(name == "syncd_failed_files_total" and ("reason", "item_name_invalid") in labels
                   for name, labels in s)
    assert s[("syncd_retries_total", (("reason", "rate_limited"),))] == 2
    assert s[("syncd_box_responses_total", (("code", "429"), ("endpoint", "PUT /files/upload_sessions/{id}")))] == 1
    assert s[("syncd_box_responses_total", (("code", "200"), ("endpoint", "PUT /files/upload_sessions/{id}")))] == 1
    assert s[("syncd_config_last_reload_successful", ())] == 0
    assert s[("syncd_build_info", (("python", platform.python_version()), ("version", __version__)))] == 1
    assert s[("process_open_fds", ())] > 0
    assert s[("syncd_observer_restarts_total", (("watch", "scans"),))] == 1
    assert s[("syncd_last_scan_timestamp_seconds", (("watch", "inbox"),))] == 1_700_000_000.0
    assert s[("syncd_upload_duration_seconds_count", (("method", "direct"),))] == 2
    assert s[("syncd_upload_duration_seconds_count", (("method", "chunked"),))] == 1
    assert s[("syncd_upload_duration_seconds_bucket", (("le", "0.25"), ("method", "direct")))] == 2
    assert s[("syncd_upload_duration_seconds_bucket", (("le", "10.0"), ("method", "chunked")))] == 0
    assert s[("syncd_upload_duration_seconds_bucket", (("le", "30.0"), ("method", "chunked")))] == 1
    # detect-to-commit is observed only when the caller knows it
    assert s[("syncd_detect_to_commit_seconds_count", ())] == 2
    assert s[("syncd_detect_to_commit_seconds_sum", ())] == 23.0


def test_journal_gauges_are_read_at_scrape_time(metrics: Metrics, server: MetricsServer) -> None:
    counts = {"pending": 3, "uploading": 1}
    ages: list[float | None] = [42.5]
    metrics.attach_journal(lambda: counts, lambda: ages[0])

    first = scrape(server)
    assert first[("syncd_files", (("state", "pending"),))] == 3
    assert first[("syncd_files", (("state", "uploading"),))] == 1
    assert first[("syncd_oldest_pending_age_seconds", ())] == 42.5

    counts.update(pending=0, uploaded=4)
    ages[0] = None  # nothing pending any more
    second = scrape(server)
    assert second[("syncd_files", (("state", "pending"),))] == 0
    assert second[("syncd_files", (("state", "uploaded"),))] == 4
    assert second[("syncd_oldest_pending_age_seconds", ())] == 0


def test_enum_states_become_plain_label_values(metrics: Metrics, server: MetricsServer) -> None:
    class State(enum.StrEnum):
        PENDING = "pending"
        FAILED = "failed"

    metrics.attach_journal(lambda: {State.PENDING: 2, State.FAILED: 0}, lambda: None)
    s = scrape(server)
    assert s[("syncd_files", (("state", "pending"),))] == 2
    assert s[("syncd_files", (("state", "failed"),))] == 0
    metrics.detach_journal()
    assert not any(name == "syncd_files" for name, _ in scrape(server))


def test_a_failing_journal_callback_does_not_break_the_scrape(metrics: Metrics, server: MetricsServer) -> None:
    def broken() -> dict[str, int]:
        raise RuntimeError("database is locked")

    metrics.attach_journal(broken, lambda: 1.0)
    metrics.record_box_response("GET /users/me", 200)
    s = scrape(server)
    assert not any(name == "syncd_files" for name, _ in s)
    assert s[("syncd_oldest_pending_age_seconds", ())] == 1.0
    assert s[("syncd_box_responses_total", (("code", "200"), ("endpoint", "GET /users/me")))] == 1


def test_uploads_in_flight_follow_the_with_block_even_on_error(metrics: Metrics, server: MetricsServer) -> None:
    with metrics.upload_in_flight():
        with metrics.upload_in_flight():
            assert scrape(server)[("syncd_uploads_in_flight", ())] == 2
        with pytest.raises(OSError):
            with metrics.upload_in_flight():
                raise OSError("disk vanished")
        assert scrape(server)[("syncd_uploads_in_flight", ())] == 1
    assert scrape(server)[("syncd_uploads_in_flight", ())] == 0


def test_each_metrics_object_has_its_own_registry_and_host() -> None:
    a, b = Metrics(host_id="ingest-1"), Metrics(host_id="ingest-2")
    a.record_bytes(7)
    assert b'syncd_uploaded_bytes_total{host="ingest-1"} 7.0' in a.exposition()[0]
    assert b'syncd_uploaded_bytes_total{host="ingest-2"} 0.0' in b.exposition()[0]
    assert b"ingest-2" not in a.exposition()[0]


def test_every_syncd_family_is_labelled_with_the_host_and_process_ones_are_not(
        metrics: Metrics, server: MetricsServer) -> None:
    """Checked on every family the registry declares: each is given a sample here first."""
    metrics.attach_journal(lambda: {"pending": 1}, lambda: 5.0, lambda: {"inbox": 1.0})
    metrics.attach_box_state(lambda: {"credentials": False})
    metrics.attach_health(lambda: {"journal": True})
    metrics.attach_post_actions(lambda: 0)
    metrics.record_upload("inbox", 1, "direct", 0.1, detect_to_commit_s=1.0)
    metrics.record_failure("inbox", "attempts_exhausted")
    metrics.record_quarantine("inbox", "item_name_invalid")
    metrics.record_retry("timeout")
    metrics.record_box_response("GET /users/me", 200)
    metrics.record_observer_restart("inbox")
    metrics.record_scan("inbox")
    metrics.set_expected_arrivals({"inbox": 60.0})
    families = list(metrics.registry.collect())
    syncd = [f for f in families if f.name.startswith("syncd_")]
    assert len(syncd) >= 28
    for family in syncd:
        assert family.samples and {sample.labels.get("host") for sample in family.samples} == {HOST}, family.name
    process = [f for f in families if f.name.startswith("process_")]
    assert process and not any("host" in s.labels for f in process for s in f.samples)
    scrape(server)  # and over HTTP: scrape() checks every sample's host


def test_the_host_id_must_be_given() -> None:
    with pytest.raises(MetricsInputError, match="host label must not be empty"):
        Metrics(host_id="")
    with pytest.raises(TypeError):
        Metrics()  # type: ignore[call-arg]


def test_multi_host_metrics_are_exported_from_the_start_at_zero(server: MetricsServer) -> None:
    """A fresh daemon shows every series the alerts and the dashboard read, before anything happens."""
    s = scrape(server)
    assert s[("syncd_journal_available", ())] == 0  # until the daemon says the journal answers
    assert s[("syncd_leases_held", ())] == 0
    assert {labels: v for (name, labels), v in s.items() if name == "syncd_lease_renewals_total"} == {
        (("outcome", "renewed"),): 0, (("outcome", "lost"),): 0, (("outcome", "failed"),): 0}
    assert s[("syncd_takeovers_total", ())] == 0
    assert s[("syncd_claim_outcomes_refused_total", ())] == 0


def test_multi_host_events_are_recorded(metrics: Metrics, server: MetricsServer) -> None:
    metrics.set_journal_available(True)
    metrics.set_leases_held(3)
    metrics.record_lease_renewals("renewed", 3)
    metrics.record_lease_renewals("renewed")
    metrics.record_lease_renewals("failed", 2)
    metrics.record_lease_renewals("lost")
    metrics.record_takeovers(2)
    metrics.record_takeovers(0)  # a takeover pass that found nothing expired
    metrics.record_claim_outcome_refused()
    s = scrape(server)
    assert s[("syncd_journal_available", ())] == 1
    assert s[("syncd_leases_held", ())] == 3
    assert s[("syncd_lease_renewals_total", (("outcome", "renewed"),))] == 4
    assert s[("syncd_lease_renewals_total", (("outcome", "failed"),))] == 2
    assert s[("syncd_lease_renewals_total", (("outcome", "lost"),))] == 1
    assert s[("syncd_takeovers_total", ())] == 2
    assert s[("syncd_claim_outcomes_refused_total", ())] == 1

    metrics.set_journal_available(False)  # cut off PostgreSQL: the leases are not held any more
    metrics.set_leases_held(0)
    s = scrape(server)
    assert s[("syncd_journal_available", ())] == 0
    assert s[("syncd_leases_held", ())] == 0


def test_openmetrics_is_served_when_asked_for(server: MetricsServer) -> None:
    request = urllib.request.Request(
        server.url + "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    with urllib.request.urlopen(request, timeout=5) as resp:
        assert resp.headers["Content-Type"].startswith("application/openmetrics-text")
        assert resp.read().decode().rstrip().endswith("# EOF")


def test_healthz_is_200_with_probe_details_then_503_when_a_probe_fails(
    health: HealthCheck, server: MetricsServer
) -> None:
    observer_alive = [True]
    health.register("observer", lambda: (observer_alive[0], "inotify observer"))
    health.register("journal", lambda: (True, "writable"))

    status, content_type, body = get(server.url + "/healthz")
    assert (status, content_type) == (200, "application/json")
    doc = json.loads(body)
    assert doc["status"] == "ok"
    assert doc["probes"]["journal"] == {"ok": True, "detail": "writable", "critical": True, "failures": 0,
                                        "failing_for_s": 0.0, "duration_s": doc["probes"]["journal"]["duration_s"]}

    observer_alive[0] = False
    status, _, body = get(server.url + "/healthz")
    assert status == 503
    doc = json.loads(body)
    assert doc["status"] == "unhealthy"
    assert doc["probes"]["observer"]["ok"] is False and doc["probes"]["observer"]["failures"] == 1
    assert doc["probes"]["journal"]["ok"] is True


def test_healthz_stays_200_while_a_failure_does_not_last_or_cannot_be_cured_by_a_restart(metrics: Metrics) -> None:
    health = HealthCheck(failures_to_fail=3, failure_window_s=3600.0)
    health.register("journal_readable", lambda: (False, "waited behind an fsync"))
    health.register("journal", lambda: (False, "database or disk is full"), critical=False)
    srv = MetricsServer(metrics, health, "127.0.0.1", 0)
    srv.start()
    try:
        for _ in range(4):
            status, _, body = get(srv.url + "/healthz")
            assert status == 200
            doc = json.loads(body)
            assert doc["status"] == "degraded"
        assert doc["probes"]["journal_readable"]["failures"] == 4  # not over the window: no verdict yet
        assert doc["probes"]["journal"]["critical"] is False
    finally:
        srv.stop()


def test_unknown_paths_and_methods_are_refused(server: MetricsServer) -> None:
    assert get(server.url + "/nope")[0] == 404
    request = urllib.request.Request(server.url + "/metrics", data=b"x", method="POST")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, timeout=5)
    assert err.value.code == 405


def test_stop_releases_the_port(metrics: Metrics, health: HealthCheck) -> None:
    srv = MetricsServer(metrics, health, "127.0.0.1", 0)
    srv.start()
    port = srv.port
    srv.stop()
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))  # would raise EADDRINUSE if still held


def test_a_busy_port_gives_a_clear_error(metrics: Metrics, health: HealthCheck, server: MetricsServer) -> None:
    other = MetricsServer(metrics, health, "127.0.0.1", server.port)
    with pytest.raises(MetricsServerError, match=f"127.0.0.1:{server.port}"):
        other.start()


def test_non_loopback_addresses_need_explicit_consent(metrics: Metrics, health: HealthCheck) -> None:
    with pytest.raises(MetricsServerError, match="not a loopback address"):
        MetricsServer(metrics, health, "0.0.0.0", 0)
    MetricsServer(metrics, health, "0.0.0.0", 0, allow_non_loopback=True)  # constructing binds nothing
    with pytest.raises(MetricsServerError, match="between 0 and 65535"):
        MetricsServer(metrics, health, "127.0.0.1", 70000)


def test_ipv6_loopback_is_served(metrics: Metrics, health: HealthCheck) -> None:
    srv = MetricsServer(metrics, health, "::1", 0)
    srv.start()
    try:
        assert srv.url.startswith("http://[::1]:")
        assert get(srv.url + "/healthz")[0] == 200
    finally:
        srv.stop()


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda m: m.record_upload("w", 1, "multipart", 1.0), "upload method"),
        (lambda m: m.record_upload("w", -1, "direct", 1.0), "size_bytes"),
        (lambda m: m.record_upload("w", 1, "direct", 1.0, detect_to_commit_s=-2), "detect_to_commit_s"),
        (lambda m: m.record_retry(""), "reason"),
        (lambda m: m.record_lease_renewals("expired"), "lease renewal outcome"),
        (lambda m: m.record_lease_renewals("renewed", -1), "renewals"),
        (lambda m: m.set_leases_held(-1), "leases held"),
        (lambda m: m.record_takeovers(-2), "takeovers"),
    ],
)
def test_nonsense_values_are_rejected(metrics: Metrics, call, message: str) -> None:
    with pytest.raises(MetricsInputError, match=message):
        call(metrics)


def test_box_refusals_show_as_a_gauge_and_degrade_healthz_without_failing_it(
        metrics: Metrics, health: HealthCheck, server: MetricsServer) -> None:
    """The plumbing the circuit breaker drives: refuse/accept on BoxSideState, read at scrape time."""
    from syncd.service.daemon_state import BoxSideState

    changes: list[int] = []
    state = BoxSideState(on_change=lambda: changes.append(1))
    metrics.attach_box_state(lambda: {s: state.refusing(s) for s in ("credentials", "watch:inbox", "watch:scans")})
    health.register("journal", lambda: (True, "readable"))

    def refusing() -> dict[str, float]:
        return {dict(labels)["scope"]: v for (name, labels), v in scrape(server).items() if name == "syncd_box_refusing"}

    assert refusing() == {"credentials": 0, "watch:inbox": 0, "watch:scans": 0}
    state.refuse("watch:inbox", "403 access_denied_insufficient_permissions on folder 12")
    state.refuse("watch:inbox", "403 access_denied_insufficient_permissions on folder 12")  # no change
    assert refusing() == {"credentials": 0, "watch:inbox": 1, "watch:scans": 0}
    status, _, body = get(server.url + "/healthz")
    assert status == 200  # degraded is no reason for systemd to restart the daemon
    assert json.loads(body)["status"] == "degraded" and json.loads(body)["box_refusing"] == ["watch:inbox"]
    state.refuse("credentials", "401 after a refused token refresh")
    assert refusing() == {"credentials": 1, "watch:inbox": 1, "watch:scans": 1}  # credentials cover every watch
    state.accept("credentials")
    state.accept("watch:inbox")
    state.accept("watch:inbox")  # already accepted: no change
    assert refusing() == {"credentials": 0, "watch:inbox": 0, "watch:scans": 0}
    assert json.loads(get(server.url + "/healthz")[2])["status"] == "ok"
    assert len(changes) == 4
