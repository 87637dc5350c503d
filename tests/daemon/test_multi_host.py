"""Several hosts on one drop folder (issue 16's acceptance, docs/MULTI_HOST.md section 10):
real `syncd run` processes, each with its own host id, config, watch of the same folder
(polling, as on a network mount) and log, one real PostgreSQL journal (`lease: 3s`: the
production code with shorter timings), the real emulator over HTTP. Box is read back
through the emulator's API (bench.verifier), never through the journal.

What is asserted is behaviour: what Box holds (each file once, its SHA-1, one version),
the journal's counts, the emulator's request counters, the hosts' log events. Never
durations: the takeover time is a figure of bench/multi_host.py.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from syncd import __version__
from syncd.testing.tcp_proxy import TcpProxy
from tests.daemon.daemon_process import CHUNKED_MIN, local_files, run_syncd, wait_for_box, wait_until
from tests.daemon.drops import Drop, move_directory_in, random_bytes, write_file, write_then_rename
from tests.support.emulator import EmulatorProcess
from tests.support.multi_host import HostGroup
from tests.support.notify import NotifySocket
from tests.support.postgres import PgDatabase

MIB = 1024 * 1024
KILLS = int(os.environ.get("SYNCD_MULTI_HOST_KILLS", "20"))
SEED = int(os.environ.get("SYNCD_MULTI_HOST_SEED", "16"))
#: How the partition test cuts a host off: `blackhole` (nothing passes; the suite's) or `reset`.
PARTITION = os.environ.get("SYNCD_MULTI_HOST_PARTITION", "blackhole")
#: A chunked upload the emulator slows down (2 MiB parts at 2 MiB/s per connection: about a
#: second a part), so that a host can be killed or cut off in its middle: 12 parts.
SLOW_PARTS = ("--part-sizes", "*=2MiB", "--bandwidth", str(2 * MIB))
SLOW_SIZE = CHUNKED_MIN + 4 * MIB


@pytest.fixture
def make_group(tmp_path: Path, emulator_factory: Callable[..., EmulatorProcess],
               pg_database: PgDatabase) -> Iterator[Callable[..., HostGroup]]:
    """A HostGroup on a fresh emulator (started with the given arguments) and this test's
    database; every host still running at the end is SIGKILLed."""
    groups: list[HostGroup] = []

    def make(*emulator_args: str, **options: Any) -> HostGroup:
        group = HostGroup(tmp_path / f"group-{len(groups)}", emulator_factory(*emulator_args), pg_database,
                          **options)
        groups.append(group)
        return group

    yield make
    for group in groups:
        group.kill()


def small_drops(rng: random.Random, prefix: str, count: int) -> list[Drop]:
    return [Drop(f"{prefix}/f{i:03}.dat", random_bytes(rng, rng.choice([0, 10, 4096, 60_000]))) for i in range(count)]


def part_requests(emulator: EmulatorProcess) -> int:
    """Part uploads the emulator received, whatever it answered."""
    return sum(emulator.stats()["requests"].get("sessions.upload_part", {}).values())


def report_line(name: str, counts: dict[str, int], **more: Any) -> None:
    """The verifier's counts on the test's output (pytest -s, or the captured output of a failure)."""
    print(f"{name}: verifier {json.dumps(counts)}" + "".join(f", {k} {v}" for k, v in more.items()))


# ------------------------------------------------------------------ two hosts, SIGKILLs


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_two_hosts_one_folder_sigkilled_at_random_lose_and_duplicate_nothing(make_group) -> None:
    """300 files (4 chunked) arrive while one of two hosts, chosen by a seeded draw, is SIGKILLed
    20 times and restarted 0.5-2 s later (half the time killed again before it is ready): rows of
    a dead host are recovered by its restart or taken over by the other, and in the end Box holds
    every file once with its SHA-1 and one version, and the journal says 300 uploaded."""
    rng = random.Random(SEED)
    # Latency and a bandwidth cap keep uploads in flight long enough for kills to land in them.
    group = make_group("--part-sizes", "*=2MiB", "--bandwidth", "6000000", "--latency-ms", "150",
                       "--seed", str(SEED))
    a, b = group.add("a"), group.add("b")
    group.start()

    # 300 files: 98 small and 2 chunked at once, then 10 more before every kill (2 of them chunked).
    chunked = iter(Drop(f"big/chunked{i}.bin", random_bytes(rng, CHUNKED_MIN + rng.randint(1, 6) * 250_000))
                   for i in range(4))
    for drop in small_drops(rng, "first", 98) + [next(chunked), next(chunked)]:
        write_then_rename(group.inbox, drop)
    for kill in range(KILLS):
        batch = small_drops(rng, f"wave{kill:02}", 9 if kill in (5, 13) else 10)
        if kill in (5, 13):
            batch.append(next(chunked))
        for drop in batch:
            # Half the files are written in place (the settle decides), half renamed in whole.
            if rng.random() < 0.5:
                write_then_rename(group.inbox, drop)
            else:
                write_file(group.inbox / drop.relpath, drop.data)
        time.sleep(rng.uniform(0.3, 1.5))
        victim = rng.choice([a, b])
        victim.daemon.kill()
        time.sleep(rng.uniform(0.5, 2.0))
        # Half the restarts are killed again before they are ready (start-up, recovery, takeover).
        victim.daemon.start(wait_ready=kill % 2 == 1)

    expected = local_files(group.inbox)
    assert len(expected) == 300
    for host in (a, b):
        if not host.daemon.running():
            host.daemon.start()
    group.emulator.faults(latency_ms=0)  # the checks below read every file and its versions
    wait_for_box(group.emulator, expected, timeout=180)
    wait_until(lambda: group.status()["counts"]["uploaded"] == 300, timeout=60, interval=1.0,
               message=lambda: f"journal not settled (seed {SEED}): {group.status()['counts']}\n{group.tails()}")
    report = group.verify()
    report_line("two hosts, 20 SIGKILLs", report.counts(), box_files=report.box_files,
                local_files=report.local_files, committed_by={h.host_id: len(h.committed()) for h in (a, b)})
    assert report.clean() and report.box_files == 300, (report.to_dict(), group.tails())
    counts = {state: n for state, n in group.status()["counts"].items() if n}
    assert counts == {"uploaded": 300}, counts
    # The kills interrupted uploads: some were recovered at a restart or taken over by the other host.
    resumed = sum(len(h.events(name)) for h in (a, b)
                  for name in ("reconciling_interrupted_uploads", "claim_taken_over"))
    assert resumed >= 3, f"only {resumed} recoveries or takeovers in {KILLS} kills (seed {SEED})"
    assert a.daemon.stop() == 0 and b.daemon.stop() == 0
    assert not group.password_leaks()


# ------------------------------------------------------------------ takeover


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_killed_hosts_chunked_upload_is_finished_by_the_other_sending_only_what_box_lacks(make_group) -> None:
    """The host uploading a slowed chunked file is SIGKILLed after its 3rd acknowledged part; once
    its lease lapses the other host takes the row over, resumes the same Box session and sends
    only the parts the dead host had no answer for (Box's part counter), then commits once."""
    group = make_group(*SLOW_PARTS)
    for host_id in ("a", "b"):
        group.add(host_id)
    group.start()
    path = "big/take-1.mov"
    write_then_rename(group.inbox, Drop(path, random_bytes(random.Random(1), SLOW_SIZE)))

    dead, (heir,) = group.uploading(path, parts=3)
    dead.daemon.kill()
    acknowledged = len(dead.events("part_uploaded", path=path))
    total_parts = dead.events("upload_session_created", path=path)[0]["total_parts"]
    taken = heir.daemon.wait_for_event("claim_taken_over", timeout=60)
    # The heir reconciles with Box before it sends anything: parts counted from here are its own.
    before = part_requests(group.emulator)
    committed = heir.daemon.wait_for_event("upload_committed", timeout=120, where=lambda e: e["path"] == path)
    sent_by_heir = part_requests(group.emulator) - before

    report = group.verify()
    stats = group.emulator.stats()["requests"]
    report_line("takeover", report.counts(), parts=total_parts, acknowledged_to_the_dead=acknowledged,
                sent_by_the_heir=sent_by_heir)
    assert report.clean() and report.box_files == 1, (report.to_dict(), group.tails())
    assert taken["from_host"] == dead.host_id and committed["file_row"] == taken["file_row"]
    # It resumed the dead host's session: one session, one commit, and only the parts the dead
    # host had no answer for (those Box lacked, and at most part_concurrency in flight at the kill).
    assert sum(stats["sessions.create"].values()) == 1 and stats["sessions.commit"].get("201") == 1, stats
    assert 1 <= sent_by_heir <= total_parts - acknowledged, (sent_by_heir, total_parts, acknowledged)
    assert not dead.committed()


# ------------------------------------------------------------------ partition


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_host_cut_off_postgresql_stops_claiming_is_taken_over_and_rejoins(
        make_group, pg_database: PgDatabase, tcp_proxy_factory: Callable[..., TcpProxy], tmp_path: Path) -> None:
    """The host uploading a chunked file is cut off PostgreSQL (its proxy blackholed; reset with
    SYNCD_MULTI_HOST_PARTITION=reset): it says so (log, /healthz, STATUS=), stops its upload
    before the commit and claims nothing; the other host takes the row over and commits it, and
    ingests what arrives meanwhile. Healed, the cut host finds the journal again and claims new
    files; Box holds every file once."""
    rng = random.Random(3)
    group = make_group(*SLOW_PARTS)
    notify = {}
    for host_id in ("a", "b"):
        notify[host_id] = NotifySocket(tmp_path / f"notify-{host_id}")
        group.add(host_id, proxy=tcp_proxy_factory(pg_database.cluster),
                  env={"NOTIFY_SOCKET": str(notify[host_id].path)})
    try:
        group.start()
        path = "big/partitioned.mov"
        write_then_rename(group.inbox, Drop(path, random_bytes(rng, SLOW_SIZE)))
        cut, (other,) = group.uploading(path, parts=2)
        assert cut.proxy is not None
        getattr(cut.proxy, PARTITION)()  # blackhole() or reset()

        cut.daemon.wait_for_event("journal_unavailable", timeout=30)
        during = small_drops(rng, "during", 5)
        for drop in during:
            write_then_rename(group.inbox, drop)
        taken = other.daemon.wait_for_event("claim_taken_over", timeout=60)
        assert taken["from_host"] == cut.host_id
        other.daemon.wait_for_event("upload_committed", timeout=120, where=lambda e: e["path"] == path)
        wait_for_box(group.emulator, {p: s for p, s in local_files(group.inbox).items() if p.startswith("during/")},
                     timeout=60)
        # Cut off, it says so (the operator's three views) and it stopped its job before the commit.
        assert "journal unreachable" in cut.get("/healthz").text
        notify[cut.host_id].wait_for("STATUS=degraded: journal unreachable", timeout=30)
        assert cut.events("claim_lost", path=path), cut.daemon.tail()
        assert not cut.committed(), "a host without the journal committed"

        cut.proxy.heal()
        cut.daemon.wait_for_event("journal_available", timeout=60)
        wait_until(lambda: "journal unreachable" not in cut.get("/healthz").text, timeout=30,
                   message=lambda: cut.get("/healthz").text)
        # It rejoined: with the other host stopped (cleanly), what arrives now is its to claim.
        assert other.daemon.stop() == 0
        after = small_drops(rng, "after", 5)
        for drop in after:
            write_then_rename(group.inbox, drop)
        wait_for_box(group.emulator, local_files(group.inbox), timeout=60, daemon=cut.daemon)
        assert {d.relpath for d in after} <= set(cut.committed())
        wait_until(lambda: group.status()["counts"]["uploaded"] == 11, timeout=30, interval=1.0,
                   message=lambda: f"{group.status()['counts']}\n{group.tails()}")
        report = group.verify()
        report_line("partition", report.counts(), committed_by={h.host_id: len(h.committed())
                                                                for h in group.hosts.values()})
        assert report.clean() and report.box_files == 11, (report.to_dict(), group.tails())
        assert cut.daemon.stop() == 0
        assert not group.password_leaks()
    finally:
        for socket in notify.values():
            socket.close()


# ------------------------------------------------------------------ one rate budget


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_two_hosts_share_one_box_upload_budget_and_get_no_429(make_group, tmp_path: Path) -> None:
    """Box's limit (240 uploads a minute) enforced by the emulator's own 60 s window; each host is
    configured for 230 a minute, as one alone would be. 300 files at once: without a shared
    window the two would send up to 460 in the first minute. (Lasts a little over a minute:
    the window has to turn over once.)"""
    group = make_group("--upload-rate-limit", "240", box={"uploads_per_minute": 230})
    a, b = group.add("a"), group.add("b")
    group.start()
    move_directory_in(group.inbox, tmp_path / "staging", "burst", small_drops(random.Random(4), "burst", 300))

    expected = local_files(group.inbox)
    wait_for_box(group.emulator, expected, timeout=200)
    stats = group.emulator.stats()["requests"]
    refused = {endpoint: codes["429"] for endpoint, codes in stats.items() if codes.get("429")}
    report = group.verify()
    report_line("rate budget", report.counts(), uploads_201=stats["files.upload"].get("201"), answers_429=refused,
                committed_by={h.host_id: len(h.committed()) for h in (a, b)})
    assert refused == {}
    assert stats["files.upload"].get("201") == 300
    assert report.clean() and report.box_files == 300, report.to_dict()
    assert a.committed() and b.committed(), "one host did all the work: the budget was not shared"


# ------------------------------------------------------------------ operations


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_status_lists_every_host_and_a_dead_one_as_lost_metrics_carry_the_host_no_password_anywhere(
        make_group) -> None:
    """`syncd status --json` lists both hosts (running, this version), every syncd metric carries
    its host's label; a SIGKILLed host shows `lost` once its heartbeat is older than the lease and
    `status --check` warns; a clean stop shows `stopped`; the password is in no output."""
    group = make_group()
    a, b = group.add("a"), group.add("b")
    group.start()
    for drop in small_drops(random.Random(5), "ops", 10):
        write_then_rename(group.inbox, drop)
    wait_for_box(group.emulator, local_files(group.inbox), timeout=60)

    hosts = {h["host_id"]: h for h in group.status()["hosts"]}
    assert set(hosts) == {"a", "b"}
    for host in hosts.values():
        assert host["state"] == "running" and not host["lost"] and host["version"] == __version__, host
    metrics = {h.host_id: h.get("/metrics").text for h in (a, b)}
    for host_id, text in metrics.items():
        samples = [line for line in text.splitlines() if line.startswith("syncd_")]
        assert samples and all(f'host="{host_id}"' in line for line in samples), (
            [line for line in samples if f'host="{host_id}"' not in line][:5])

    b.daemon.kill()
    wait_until(lambda: {h["host_id"]: h["lost"] for h in group.status()["hosts"]} == {"a": False, "b": True},
               timeout=30, interval=0.5, message=lambda: json.dumps(group.status()["hosts"]))
    check = run_syncd("status", "--config", str(a.config), "--check")
    assert check.returncode == 1, (check.returncode, check.stdout)  # WARNING: a registered host is lost
    outputs = {"status --json": json.dumps(group.status()), "status --check": check.stdout + check.stderr,
               **{f"metrics of {k}": v for k, v in metrics.items()}, "healthz of a": a.get("/healthz").text}
    assert a.daemon.stop() == 0
    assert {h["host_id"]: h["state"] for h in group.status()["hosts"]}["a"] == "stopped"
    assert not group.password_leaks(outputs)
