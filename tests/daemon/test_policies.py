"""Per-watch policies through the real daemon: conflict (version, skip, rename,
fail) against files already in Box, a file changed after upload (a new
version), and after_upload delete and move (only once Box has the bytes)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import requests

from tests.daemon.daemon_process import (
    Watch, box_files, config_data, history_json, status_json, wait_until, write_config,
)
from tests.daemon.drops import write_file

OLD = b"the copy someone put in Box by hand\n"
NEW = b"the copy dropped into the watched folder\n"


def _sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def _create_folder(emulator, name: str) -> str:
    response = requests.post(f"{emulator.api_url}/folders", json={"name": name, "parent": {"id": "0"}},
                             headers={"Authorization": f"Bearer {emulator.token}"}, timeout=30)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def _upload(emulator, folder_id: str, name: str, data: bytes) -> str:
    response = requests.post(f"{emulator.upload_url}/files/content",
                             headers={"Authorization": f"Bearer {emulator.token}"},
                             files={"attributes": (None, json.dumps({"name": name, "parent": {"id": folder_id}})),
                                    "file": (name, data)}, timeout=30)
    assert response.status_code == 201, response.text
    return response.json()["entries"][0]["id"]


def test_conflict_policies_changed_files_and_after_upload_actions(tmp_path: Path, emulator, daemon_factory):
    policies = ("version", "skip", "rename", "fail")
    folders = {policy: _create_folder(emulator, policy) for policy in policies + ("delete", "move")}
    existing = {policy: _upload(emulator, folders[policy], "report.txt", OLD) for policy in policies}
    roots = {name: tmp_path / "drop" / name for name in folders}
    archive = tmp_path / "archive"
    watches = [Watch(roots[p], folder_id=folders[p], options={"conflict": p}) for p in policies]
    watches.append(Watch(roots["delete"], folder_id=folders["delete"], options={"after_upload": "delete"}))
    watches.append(Watch(roots["move"], folder_id=folders["move"],
                         options={"after_upload": "move", "archive_dir": str(archive)}))
    for root in roots.values():
        root.mkdir(parents=True)
    config = write_config(tmp_path / "syncd.yaml", config_data(
        emulator, tmp_path / "var" / "journal.db", watches, readiness={"settle": "300ms"}))
    daemon = daemon_factory(config).start()

    for policy in policies:
        write_file(roots[policy] / "report.txt", NEW)
    write_file(roots["version"] / "notes.txt", b"first draft")
    write_file(roots["delete"] / "sub/invoice.pdf", b"pay me")
    write_file(roots["move"] / "scans/page1.tif", b"scanned")

    def parked() -> dict[str, dict]:
        return {f["watch"]: f for f in status_json(config)["recent_failures"]}

    wait_until(lambda: "fail" in parked(), timeout=30, interval=0.5, message=lambda: daemon.tail())
    fail = parked()["fail"]
    assert fail["state"] == "failed"
    assert "already has a file named 'report.txt'" in fail["reason"] and "conflict policy is 'fail'" in fail["reason"]

    def box(policy: str) -> dict[str, dict]:
        return box_files(emulator, folders[policy])

    wait_until(lambda: box("version")["report.txt"]["sha1"] == _sha1(NEW) and "report (1).txt" in box("rename")
               and "sub/invoice.pdf" in box("delete") and "scans/page1.tif" in box("move")
               and "notes.txt" in box("version"), timeout=30, interval=0.5, message=lambda: daemon.tail())

    # version: the Box file got our bytes as its second version, same file id.
    version = box("version")["report.txt"]
    assert version["id"] == existing["version"] and len(emulator.file_versions(version["id"])) == 1
    # skip: Box's copy untouched, the file parked as skipped with the reason.
    assert box("skip") == {"report.txt": box("skip")["report.txt"]}
    assert box("skip")["report.txt"]["sha1"] == _sha1(OLD)
    counts = status_json(config)["counts"]
    assert counts["skipped"] == 1 and counts["failed"] == 1
    skipped = [h for h in history_json(config, "skip:report.txt") if h["event"] == "skipped"]
    assert skipped and f"named 'report.txt' (id {existing['skip']})" in skipped[0]["detail"]
    # rename: both, ours under a suffixed name.
    renamed = box("rename")
    assert renamed["report.txt"]["sha1"] == _sha1(OLD) and renamed["report (1).txt"]["sha1"] == _sha1(NEW)
    # fail: Box's copy untouched.
    assert {p: e["sha1"] for p, e in box("fail").items()} == {"report.txt": _sha1(OLD)}

    # delete and move happen only after the upload was verified.
    wait_until(lambda: not (roots["delete"] / "sub/invoice.pdf").exists(), timeout=10, message=lambda: daemon.tail())
    assert box("delete")["sub/invoice.pdf"]["sha1"] == _sha1(b"pay me")
    archived = list(archive.glob("*/*/*/scans/page1.tif"))  # the default template: {date:%Y/%m/%d}/{relpath}
    assert len(archived) == 1 and archived[0].read_bytes() == b"scanned"
    assert not (roots["move"] / "scans/page1.tif").exists()

    # A file changed after its upload goes up again as a new version of the same Box file.
    first = box("version")["notes.txt"]
    write_file(roots["version"] / "notes.txt", b"second draft, longer")
    wait_until(lambda: box("version")["notes.txt"]["sha1"] == _sha1(b"second draft, longer"), timeout=30,
               interval=0.5, message=lambda: daemon.tail())
    assert box("version")["notes.txt"]["id"] == first["id"]
    assert len(emulator.file_versions(first["id"])) == 1
    assert daemon.running()
    assert daemon.stop() == 0
