"""Run inside a private mount namespace (``unshare --mount``): start a real systemd-journald,
log through syncd.logs with format journald, and print what ``journalctl -o json`` reads back.

tmpfs is mounted over /run (and /var/log/journal) first, so the journald started here
has its own sockets and journal files and the machine's logs are neither read nor touched.
Usage: SYNCD_PROBE_SECRET=... python journald_probe.py SCENARIO EXPECTED_ENTRIES, where SCENARIO
is `events` (events of every kind, a traceback, a library record), `box_retry` (a request to
a real emulator that Box answers 429 and that is sent again; the secret is the emulator's token),
`undecodable` (file names that are not UTF-8 in fields and in the message) or `unit_instance`
(logging as syncd@archive does, with its SYSLOG_IDENTIFIER). Entries are read back with
``journalctl -t`` and the identifier syncd logs with.
The secret comes from the environment: journald records the command line as _CMDLINE.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

JOURNALD = "/lib/systemd/systemd-journald"
SOCKET = Path("/run/systemd/journal/socket")


def _mount_private_dirs() -> None:
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", "/run"], check=True)
    if Path("/var/log/journal").is_dir():
        subprocess.run(["mount", "-t", "tmpfs", "tmpfs", "/var/log/journal"], check=True)


def _start_journald() -> subprocess.Popen[bytes]:
    journald = subprocess.Popen([JOURNALD], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, env={"PATH": os.environ.get("PATH", "")})
    deadline = time.monotonic() + 10
    while not SOCKET.exists():
        if journald.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"systemd-journald did not come up (exit {journald.poll()})")
        time.sleep(0.02)
    return journald


def _configure_for_journald(level: str, secret: str) -> None:
    from syncd import logs

    # Make auto-detection pick journald the way systemd would: stderr is "the journal stream".
    info = os.fstat(sys.stderr.fileno())
    os.environ["JOURNAL_STREAM"] = f"{info.st_dev}:{info.st_ino}"
    chosen = logs.configure_logging("auto", level)
    assert chosen == "journald", chosen
    logs.register_secret(secret)


def _log_events(secret: str) -> None:
    from syncd import logs

    _configure_for_journald("debug", secret)
    log = logs.get_logger("syncd.probe")
    log.info("upload committed", path="/srv/in/a b.pdf", size=1234, sha1="ab" * 20, file_id="42",
             duration_ms=17.5, nested={"token": secret, "note": f"has {secret} inside"})
    try:
        raise RuntimeError(f"refresh failed with {secret}")
    except RuntimeError:
        log.exception("upload failed", attempt=3, error_code="invalid_grant")
    logging.getLogger("urllib3.connectionpool").debug('"POST /oauth2/token?refresh_token=%s HTTP/1.1" 200', secret)


def _log_box_retry(secret: str) -> None:
    import tempfile

    from test_box_events import retried_request  # beside this script, so first on sys.path

    from syncd.emulator.harness import EmulatorProcess

    with tempfile.TemporaryDirectory() as data, EmulatorProcess(Path(data), token=secret) as emulator:
        _configure_for_journald("info", secret)
        retried_request(emulator)


def _log_undecodable_names(secret: str) -> None:
    from syncd import logs

    _configure_for_journald("info", secret)
    log = logs.get_logger("syncd.probe")
    name = os.fsdecode(b"caf\xe9.txt")  # a Latin-1 file name: surrogate escapes once decoded
    log.info("file_ready", path=name, nested={"paths": [name]})
    log.warning(f"cannot read {name}")


def _log_as_a_unit_instance(secret: str) -> None:
    from syncd import logs

    # What syncd@archive.service sets (Environment=SYNCD_SYSLOG_IDENTIFIER=syncd-%i).
    os.environ["SYNCD_SYSLOG_IDENTIFIER"] = "syncd-archive"
    _configure_for_journald("info", secret)
    logs.get_logger("syncd.pipeline.ingest").info("upload_committed", watch="archive", path="a.pdf", size=3)
    logs.get_logger("syncd.pipeline.ingest").info("upload_committed", watch="archive", path="b.pdf", size=4)
    logging.getLogger("urllib3.connectionpool").warning("Connection pool is full, discarding connection")


SCENARIOS = {"events": _log_events, "box_retry": _log_box_retry, "undecodable": _log_undecodable_names,
             "unit_instance": _log_as_a_unit_instance}


def _read_back(expected: int) -> list[str]:
    from syncd import logs

    deadline = time.monotonic() + 10
    lines: list[str] = []
    while time.monotonic() < deadline:
        result = subprocess.run(["journalctl", "-o", "json", "--no-pager", "-t", logs.syslog_identifier()],
                                capture_output=True, text=True)
        lines = [line for line in result.stdout.splitlines() if line.strip()]
        if len(lines) >= expected:
            break
        time.sleep(0.05)
    return lines


def main() -> None:
    secret, scenario, expected = os.environ.pop("SYNCD_PROBE_SECRET"), SCENARIOS[sys.argv[1]], int(sys.argv[2])
    _mount_private_dirs()
    journald = _start_journald()
    try:
        scenario(secret)
        for line in _read_back(expected):
            print(line)
    finally:
        journald.terminate()
        journald.wait(timeout=10)


if __name__ == "__main__":
    main()
