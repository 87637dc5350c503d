"""What a real ingestion logs is what docs/LOGS.md (syncd.logs.EVENTS/FIELDS) says.

A real daemon against the real emulator, JSON logs at debug level: a request Box answers
429 once, small files (one in a sub-folder, one whose name is not UTF-8 and is renamed for
Box), a chunked upload, delete after upload, a SIGHUP reload and a stop. Every line of
its log is then compared with the table: each syncd event is documented and carries only
its documented fields, `path` is the display form of the relative path, loggers are named
after modules, library records come through the same chain, and the key events appear.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
from collections import Counter
from pathlib import Path

import yaml

from syncd import logs
from tests.daemon.daemon_process import CHUNKED_MIN, Watch, config_data, wait_until, write_config

# Events this ingestion must emit (docs/LOGS.md promises them; dashboards and tests read them).
KEY_EVENTS = {
    "daemon_started", "box_request_retrying", "box_connected", "watch_started", "scan_finished", "file_detected",
    "file_ready", "upload_started", "box_name_mapped", "upload_session_created", "part_uploaded",
    "upload_committed", "source_deleted", "config_reloaded", "daemon_stopping", "daemon_stopped",
}


def test_an_ingestion_logs_only_documented_events_and_fields(tmp_path: Path, emulator, daemon_factory) -> None:
    inbox = tmp_path / "inbox"
    (inbox / "sub").mkdir(parents=True)
    data = config_data(emulator, tmp_path / "var" / "journal.db",
                       [Watch(inbox, name="inbox", options={"after_upload": "delete", "invalid_names": "sanitize"})],
                       logging={"format": "json", "level": "debug"})
    config = write_config(tmp_path / "syncd.yaml", data)
    # The start-up check of the credentials is answered 429 once, then sent again.
    emulator.faults(reject_next={"count": 1, "status": 429, "retry_after": 0, "endpoint": "users.me"})
    daemon = daemon_factory(config).start()

    drops = {"a.txt": b"alpha", "sub/b.bin": os.urandom(3000), "big.bin": os.urandom(CHUNKED_MIN + 1)}
    for name, content in drops.items():
        (inbox / name).write_bytes(content)
    (inbox / os.fsdecode(b"caf\xe9.txt")).write_bytes(b"a Latin-1 name")  # not UTF-8
    shown = {*drops, "caf\\xe9.txt"}  # what `path` must say: the relative path, display form

    def committed() -> set[str]:
        return {e["path"] for e in daemon.events("upload_committed")}

    wait_until(lambda: committed() == shown, timeout=90, message=lambda: f"committed {committed()}\n{daemon.tail()}")
    wait_until(lambda: len(daemon.events("source_deleted")) == len(shown), timeout=30, message=daemon.tail)
    data["retry"]["max_attempts"] = 9
    config.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    daemon.signal(signal.SIGHUP)
    daemon.wait_for_event("config_reloaded", timeout=30)
    assert daemon.stop() == 0

    lines = [line for line in daemon.log_text().splitlines() if line.strip()]
    entries = [json.loads(line) for line in lines]  # every line is a JSON event, libraries' too
    ours = [e for e in entries if e["logger"].split(".")[0] == "syncd"]
    libraries = [e for e in entries if e not in ours]

    undocumented = sorted({e["event"] for e in ours} - set(logs.EVENTS))
    assert undocumented == [], f"events not in syncd.logs.EVENTS: {undocumented}"
    extra = {(e["event"], key) for e in ours for key in e
             if key not in logs.ENVELOPE and key not in logs.EVENTS[e["event"]].fields}
    assert extra == set(), f"fields not documented for their event: {sorted(extra)}"
    missing = KEY_EVENTS - {e["event"] for e in ours}
    assert missing == set(), f"key events not logged: {sorted(missing)}"

    for entry in entries:
        assert list(entry)[:4] == ["timestamp", "level", "logger", "event"]
    assert {e["logger"] for e in ours} >= {"syncd.pipeline.ingest", "syncd.pipeline.intake", "syncd.service.daemon",
                                           "syncd.box.transport"}
    for name in {e["logger"] for e in ours}:
        assert importlib.util.find_spec(name) is not None, f"logger {name} is no module"
    # Library records (urllib3 at debug) went through the same chain: same envelope, redacted.
    assert any(e["logger"].startswith("urllib3") for e in libraries)
    assert emulator.token not in "\n".join(lines)

    # `path` is the watch-relative display path, on every event that has one.
    assert {e["path"] for e in ours if "path" in e} == shown
    for event in ("file_ready", "upload_started", "upload_committed", "source_deleted"):
        carried = [e for e in ours if e["event"] == event]
        assert {e["path"] for e in carried} == shown, event
        assert all(e["watch"] == "inbox" for e in carried), event
    # The fields bound to an upload attempt's and an after-upload action's logger are on their events.
    for event in ("upload_started", "upload_committed", "source_deleted"):
        assert all(isinstance(e["file_row"], int) for e in ours if e["event"] == event), event
    assert all(isinstance(e["attempt"], int) for e in ours if e["event"] in ("upload_started", "upload_committed"))
    assert all(e["action"] == "delete" for e in ours if e["event"] == "source_deleted")

    # The chunked upload: one part_uploaded per part the session has, on the attempt's logger.
    [session] = [e for e in ours if e["event"] == "upload_session_created"]
    parts = [e for e in ours if e["event"] == "part_uploaded"]
    assert session["path"] == "big.bin" and len(parts) == session["total_parts"] >= 2
    assert Counter(e["path"] for e in parts) == {"big.bin": session["total_parts"]}
    assert sum(e["size"] for e in parts) == CHUNKED_MIN + 1
    [retry] = [e for e in ours if e["event"] == "box_request_retrying" and e.get("status") == 429]
    assert (retry["error_code"], retry["attempt"]) == ("rate_limit_exceeded", 1)
    assert retry["url"] == f"{emulator.api_url}/users/me" and retry["request_id"]
    mapped = [e for e in ours if e["event"] == "box_name_mapped"]  # once per attempt
    assert mapped and all(e["path"] == "caf\\xe9.txt" and "\\x" not in e["box_path"] for e in mapped)
