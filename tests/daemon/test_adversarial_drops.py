"""Issue 10 acceptance: a drop folder as a hostile world fills it, against a real daemon process,
the real emulator and real files.

* one burst of 50 ordinary files plus every hostile form of entry (names, links, special
  files, hard links, modes, writers that append, hold the file open or rename it): each
  ordinary file in Box once with its SHA-1, each other entry in Box under its documented
  name or parked with a reason in `syncd status --json`, nothing from outside the root;
* a thread swapping files between a regular file and a link to a secret outside the root
  thousands of times: the secret never reaches Box, the files that end regular do, whole;
* a writer that pauses three times the settle time with the file open: one version in Box,
  the complete file, also when the source is deleted after upload.

The daemon runs as root here, and root reads a `chmod 000` file anyway. The burst's daemon
is therefore started without CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH (as test_bad_inputs.py
does): it stays uid 0 and keeps CAP_LEASE, but permission bits apply to it as they do to
the unprivileged `syncd` user of the systemd unit, so mode 000 means "cannot be read".
"""

from __future__ import annotations

import errno
import hashlib
import os
import random
import socket
import threading
import time
import unicodedata
from pathlib import Path

import pytest
import requests

from bench.verifier import BoxReader, compare, sha1_of
from syncd.pipeline.names import collision_name, display_path
from tests.daemon.daemon_process import (
    Watch, box_files, config_data, local_files, status_json, wait_until, write_config,
)

WITHOUT_DAC_OVERRIDE = ("setpriv", "--bounding-set=-dac_override,-dac_read_search") if os.geteuid() == 0 else ()
SETTLE = 0.4
SECRET = b"the OAuth token store, which must never leave this machine\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def every_version_sha1(emulator) -> dict[str, list[str]]:
    """Box path -> SHA-1 of the current version and every past one."""
    reader = BoxReader(emulator.api_url, emulator.token)
    try:
        return {f.relpath: [f.sha1, *(reader.version_sha1s(f.file_id) if f.past_versions else [])]
                for f in reader.walk("0")}
    finally:
        reader.close()


def parked(config: Path) -> dict[str, tuple[str, str]]:
    """Display path -> (state, reason) of every parked file in `syncd status --json`."""
    return {f["path"]: (f["state"], f["reason"]) for f in status_json(config)["recent_failures"]}


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_hostile_burst_ends_with_every_entry_in_box_or_parked_with_a_reason(tmp_path: Path, emulator,
                                                                              daemon_factory) -> None:
    rng = random.Random(10)
    inbox, outside = tmp_path / "inbox", tmp_path / "outside"
    inbox.mkdir()
    outside.mkdir()
    (outside / "secret.txt").write_bytes(SECRET)
    port = free_port()
    config = write_config(tmp_path / "syncd.yaml", config_data(
        emulator, tmp_path / "var" / "journal.db",
        [Watch(inbox, name="inbox", options={"invalid_names": "sanitize", "name_collisions": "rename"})],
        readiness={"settle": f"{int(SETTLE * 1000)}ms", "closed_settle": "150ms"},
        retry={"max_attempts": 3, "initial_backoff": "200ms", "max_backoff": "500ms"},
        metrics={"listen": f"127.0.0.1:{port}"}))
    daemon = daemon_factory(config, prefix=WITHOUT_DAC_OVERRIDE).start()

    def put(name: str | bytes, data: bytes) -> Path:
        path = inbox / os.fsdecode(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    # ---- the burst
    ordinary = {f"ordinary-{n:02d}.bin": rng.randbytes(rng.randrange(1, 20_000)) for n in range(50)}
    for name, data in ordinary.items():
        put(name, data)
    nfc = unicodedata.normalize("NFC", "résumé.txt")
    nfd = unicodedata.normalize("NFD", "résumé.txt")
    hostile = {
        b"caf\xe9-latin1.txt": b"written by an old scanner",  # Latin-1: not UTF-8
        b"bad-\xff\xfe-bytes.txt": b"invalid UTF-8 bytes",
        nfc: b"NFC spelling",
        nfd: b"NFD spelling, as macOS writes it",
        "n" * 251 + ".txt": b"a name of 255 bytes",
        "d" * 150 + "/" + "f" * 145 + ".txt": b"a relative path of 300 bytes",
        "trailing space.txt ": b"trailing space",
        "trailing-dot.": b"trailing dot",
        "back\\slash.txt": b"a backslash",
        "Report.pdf": b"upper-case report",
        "report.pdf": b"lower-case report",
        "empty.txt": b"",
    }
    for name, data in hostile.items():
        put(name, data)
    assert len(("d" * 150 + "/" + "f" * 145 + ".txt").encode()) == 300
    assert len(("n" * 251 + ".txt").encode()) == 255
    with pytest.raises(OSError) as too_long:
        put("x" * 296 + ".txt", b"a name of 300 bytes")
    assert too_long.value.errno == errno.ENAMETOOLONG  # Linux refuses it: no such entry can exist
    os.mkfifo(inbox / "pipe")
    server = socket.socket(socket.AF_UNIX)
    server.bind(os.fspath(inbox / "socket"))
    (inbox / "link-outside.txt").symlink_to(outside / "secret.txt")
    (inbox / "link-inside.txt").symlink_to("ordinary-00.bin")
    (inbox / "dangling-link").symlink_to(tmp_path / "nowhere")
    (inbox / "loop-a").symlink_to("loop-b")
    (inbox / "loop-b").symlink_to("loop-a")
    os.link(inbox / "ordinary-01.bin", inbox / "hardlink.bin")
    put("locked.bin", b"mode 000").chmod(0)

    def appender() -> None:
        with open(inbox / "growing.log", "ab") as log:  # a logger keeps its file open
            for line in range(20):
                log.write(b"line %d\n" % line)
                log.flush()
                time.sleep(0.5)

    def holder() -> None:
        with open(inbox / "held-open.bin", "wb") as held:  # open for writing, nothing written yet
            time.sleep(3 * SETTLE)
            held.write(b"completed after a long pause")

    def renamer() -> None:
        put("renamed-1.dat", b"renamed twice while settling")
        time.sleep(SETTLE / 4)
        os.rename(inbox / "renamed-1.dat", inbox / "renamed-2.dat")
        time.sleep(SETTLE / 4)
        os.rename(inbox / "renamed-2.dat", inbox / "renamed-3.dat")

    writers = [threading.Thread(target=target) for target in (appender, holder, renamer)]
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()

    # ---- what must end in Box, under the documented names
    expected: dict[str, bytes] = {**ordinary}
    expected.update({
        "café-latin1.txt": hostile[b"caf\xe9-latin1.txt"],  # the invalid bytes read as Windows-1252
        "bad-ÿþ-bytes.txt": hostile[b"bad-\xff\xfe-bytes.txt"],
        "n" * 251 + ".txt": hostile["n" * 251 + ".txt"],
        "d" * 150 + "/" + "f" * 145 + ".txt": hostile["d" * 150 + "/" + "f" * 145 + ".txt"],
        "trailing space.txt": hostile["trailing space.txt "],  # Box refuses a trailing space: dropped
        "trailing-dot.": hostile["trailing-dot."],  # Box takes a trailing dot
        "back_slash.txt": hostile["back\\slash.txt"],  # Box refuses a backslash: "_"
        "empty.txt": b"",
        "hardlink.bin": ordinary["ordinary-01.bin"],
        "growing.log": b"".join(b"line %d\n" % n for n in range(20)),
        "held-open.bin": b"completed after a long pause",
        "renamed-3.dat": b"renamed twice while settling",
    })
    # Two local names that are one Box name: whichever is claimed first keeps its name, the other is
    # renamed "NAME (collision 1).EXT" (name_collisions: rename).
    pairs = [(nfc, nfd), ("Report.pdf", "report.pdf")]
    expected_sha1 = {path: hashlib.sha1(data).hexdigest() for path, data in expected.items()}

    def pairs_settled(held: dict[str, str]) -> bool:
        """Each pair is in Box as one of its two documented outcomes, each name with its own content."""
        for first, second in pairs:
            outcomes = ({first: hostile[first], collision_name(second, 1): hostile[second]},
                        {second: hostile[second], collision_name(first, 1): hostile[first]})
            if not any(all(held.get(name) == hashlib.sha1(data).hexdigest() for name, data in outcome.items())
                       for outcome in outcomes):
                return False
        return True

    def settled() -> bool:
        held = {path: shas[0] for path, shas in every_version_sha1(emulator).items()}
        in_box = all(held.get(path) == sha1 for path, sha1 in expected_sha1.items()) and pairs_settled(held)
        return in_box and len(parked(config)) == 8

    wait_until(settled, timeout=120, interval=1.0,
               message=lambda: f"Box holds {sorted(every_version_sha1(emulator))}\nparked {parked(config)}\n"
                               f"{daemon.tail()}")

    # ---- the end state
    versions = every_version_sha1(emulator)
    secret_sha1 = sha1_of(outside / "secret.txt")
    assert not [path for path, shas in versions.items() if secret_sha1 in shas], "the secret reached Box"
    pair_names = {name for first, second in pairs for name in (first, second, collision_name(first, 1),
                                                               collision_name(second, 1))}
    assert set(versions) - set(expected) <= pair_names, sorted(set(versions) - set(expected))
    for path, shas in versions.items():
        assert len(shas) == 1, f"{path}: {len(shas)} versions in Box, expected one"
    assert pairs_settled({path: shas[0] for path, shas in versions.items()})
    # The ordinary files, by the verifier that the chaos runs use: each once, with its SHA-1.
    reader = BoxReader(emulator.api_url, emulator.token)
    try:
        walked = [f for f in reader.walk("0") if f.relpath in ordinary]
    finally:
        reader.close()
    ordinary_local = {path: sha1 for path, sha1 in local_files(inbox).items() if path in ordinary}
    assert len(ordinary_local) == 50
    assert compare(ordinary_local, walked).clean()

    # Parked with a reason a person can act on, in `syncd status --json`.
    link = "symbolic links are not followed"
    assert parked(config) == {
        "pipe": ("quarantined", "is a FIFO (named pipe)"),
        "socket": ("quarantined", "is a UNIX socket"),
        "link-outside.txt": ("quarantined", link),
        "link-inside.txt": ("quarantined", link),
        "dangling-link": ("quarantined", link),
        "loop-a": ("quarantined", link),
        "loop-b": ("quarantined", link),
        "locked.bin": ("failed", "gave up after 3 attempts: locked.bin: permission denied"),
    }
    # Every entry of the folder is one of those checked above: in Box under its name, or parked.
    in_box = set(ordinary) | {"hardlink.bin", "growing.log", "held-open.bin", "renamed-3.dat"} | {
        display_path(os.fsdecode(name)).split("/")[0] for name in hostile}
    entries = {display_path(os.fsdecode(entry.name)) for entry in os.scandir(os.fsencode(inbox))}
    assert entries == in_box | set(parked(config)), entries ^ (in_box | set(parked(config)))
    assert not in_box & set(parked(config))

    status = status_json(config)
    assert status["in_flight"] == [] and status["counts"]["pending"] == 0 and status["counts"]["uploading"] == 0
    assert status["counts"]["failed"] == 1 and status["counts"]["quarantined"] == 7
    health = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
    assert health.status_code == 200, health.text
    assert daemon.running()
    assert not daemon.events("intake_entry_refused") and not daemon.events("ingest_crashed")
    server.close()
    assert daemon.stop() == 0


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_files_swapped_with_links_to_a_secret_thousands_of_times_never_leak_it(tmp_path: Path, emulator,
                                                                               daemon_factory) -> None:
    inbox, outside = tmp_path / "inbox", tmp_path / "outside"
    inbox.mkdir()
    outside.mkdir()
    secret = outside / "secret.txt"
    secret.write_bytes(SECRET)
    config = write_config(tmp_path / "syncd.yaml", config_data(
        emulator, tmp_path / "var" / "journal.db", [Watch(inbox, name="inbox")], workers=3,
        readiness={"settle": "200ms", "closed_settle": "50ms"}))
    daemon = daemon_factory(config).start()
    names = [f"swap-{n}.txt" for n in range(6)]
    rng = random.Random(4)
    swaps = 0
    version = 0
    written: set[str] = set()  # SHA-1 of every content a regular file had

    def make_regular(name: str) -> None:
        nonlocal version
        version += 1
        staging = inbox / f".{name}.{version}.tmp"  # excluded by default; renamed over the link
        content = f"{name} version {version}\n".encode()
        staging.write_bytes(content)
        written.add(hashlib.sha1(content).hexdigest())
        os.rename(staging, inbox / name)

    def make_link(name: str) -> None:
        staging = inbox / f".{name}.link.tmp"
        staging.symlink_to(secret)
        os.rename(staging, inbox / name)

    for name in names:
        make_regular(name)
    deadline = time.monotonic() + 15
    while swaps < 3000 or time.monotonic() < deadline:
        name = rng.choice(names)
        (make_link if not (inbox / name).is_symlink() else make_regular)(name)
        swaps += 1
        if rng.random() < 0.01:
            time.sleep(rng.choice((0.05, 0.2, 0.3)))  # now and then long enough for a claim to start
    for name in names[:4]:  # end: four regular files, two links
        if (inbox / name).is_symlink():
            make_regular(name)
    for name in names[4:]:
        if not (inbox / name).is_symlink():
            make_link(name)
    final = {name: sha1_of(inbox / name) for name in names[:4]}

    # A file a worker found changed again and again waits longer each time it comes back (up to
    # the readiness recheck cap, 60 s), so the last content of a busy name may come a minute late.
    wait_until(lambda: all(every_version_sha1(emulator).get(n, [None])[0] == s for n, s in final.items()),
               timeout=180, interval=1.0, message=lambda: f"{every_version_sha1(emulator)}\n{daemon.tail()}")
    versions = every_version_sha1(emulator)
    secret_sha1 = sha1_of(secret)
    assert not [p for p, shas in versions.items() if secret_sha1 in shas], "the secret reached Box"
    assert set(versions) <= set(names)
    for name, shas in versions.items():
        assert set(shas) <= written, f"{name}: a version that no regular file ever held"
    assert swaps >= 3000
    # The two that end as links: parked with the reason, or (an earlier regular state uploaded) in Box.
    wait_until(lambda: all(n in parked(config) or n in versions for n in names[4:]), timeout=30,
               message=lambda: str(parked(config)))
    assert daemon.running()
    assert daemon.stop() == 0


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("after_upload", ["keep", "delete"])
def test_a_writer_pausing_with_the_file_open_gets_one_complete_version(tmp_path: Path, emulator, daemon_factory,
                                                                       after_upload: str) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    config = write_config(tmp_path / "syncd.yaml", config_data(
        emulator, tmp_path / "var" / "journal.db",
        [Watch(inbox, name="inbox", options={"after_upload": after_upload})],
        readiness={"settle": f"{int(SETTLE * 1000)}ms", "closed_settle": "150ms"}))
    daemon = daemon_factory(config).start()
    data = random.Random(9).randbytes(300_000)
    path = inbox / "scan.pdf"
    with open(path, "wb") as writer:
        writer.write(data[:150_000])
        writer.flush()
        time.sleep(3 * SETTLE)  # quiet far longer than settle, with the file still open
        assert box_files(emulator) == {}, "uploaded while the writer still had it open"
        writer.write(data[150_000:])
    wait_until(lambda: "scan.pdf" in box_files(emulator), timeout=30, message=daemon.tail)
    entry = box_files(emulator)["scan.pdf"]
    assert emulator.download(entry["id"]) == data  # every byte the writer wrote
    assert emulator.file_versions(entry["id"]) == []  # one version: no partial one before it
    if after_upload == "delete":
        wait_until(lambda: not path.exists(), timeout=15, message=daemon.tail)
    else:
        assert path.read_bytes() == data
    assert [e["path"] for e in daemon.events("upload_committed")] == ["scan.pdf"]
    assert daemon.stop() == 0
