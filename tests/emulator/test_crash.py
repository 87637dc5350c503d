"""SIGKILL in the middle of uploads: after a restart every acknowledged upload is there with
its exact content, and nothing is listed that was not at least sent."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from dataclasses import dataclass

import requests

from tests.emulator.wire import commit, create_session, put_part, upload
from tests.support.emulator import EmulatorProcess

ACKNOWLEDGED_BEFORE_KILL = 12  # kill only once this many uploads were answered 201


@dataclass(frozen=True)
class Acknowledged:
    file_id: str
    sha1: str


def direct(box: EmulatorProcess, name: str, data: bytes) -> dict | None:
    """Direct upload; Box's entry when it answered 201, else None."""
    reply = upload(box, name, data)
    return reply.json()["entries"][0] if reply.status_code == 201 else None


def chunked(box: EmulatorProcess, name: str, data: bytes) -> dict | None:
    """Session, parts, commit; Box's entry when the commit was answered 201, else None."""
    created = create_session(box, name, len(data))
    if created.status_code != 201:
        return None
    session = created.json()
    parts = []
    for offset in range(0, len(data), session["part_size"]):
        reply = put_part(box, session, data[offset:offset + session["part_size"]], offset, len(data))
        if reply.status_code != 200:
            return None
        parts.append(reply.json()["part"])
    committed = commit(box, session, parts, data)
    return committed.json()["entries"][0] if committed.status_code == 201 else None


def test_kill_during_uploads_keeps_every_acknowledged_upload(emulator_factory) -> None:
    box: EmulatorProcess = emulator_factory("--min-chunked-size", "1000", "--part-sizes", "*=4KiB")
    stop = threading.Event()
    acknowledged: dict[str, Acknowledged] = {}  # answered 201: must survive
    unanswered: dict[str, str] = {}  # sent, no 201 seen (the kill came first): may or may not be there
    wrong: list[dict] = []
    lock = threading.Lock()

    def uploader(worker: int) -> None:
        index = 0
        while not stop.is_set():
            data = os.urandom(20_000 + worker)
            name = f"w{worker}-{index}.bin"
            sha1 = hashlib.sha1(data).hexdigest()
            send = direct if index % 2 else chunked
            index += 1
            with lock:
                unanswered[name] = sha1  # until the answer is in hand
            try:
                entry = send(box, name, data)
            except requests.ConnectionError:
                continue  # the emulator died under us: that is the point
            if entry is None:
                continue
            with lock:
                if (entry["name"], entry["sha1"]) != (name, sha1):
                    wrong.append(entry)  # asserted below (an assert in a thread fails nothing)
                del unanswered[name]
                acknowledged[name] = Acknowledged(entry["id"], sha1)

    threads = [threading.Thread(target=uploader, args=(worker,)) for worker in range(4)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    while len(acknowledged) < ACKNOWLEDGED_BEFORE_KILL and time.monotonic() < deadline:
        time.sleep(0.01)
    box.kill()  # uploads are in flight in all four threads
    stop.set()
    for thread in threads:
        thread.join(30)
    assert not any(thread.is_alive() for thread in threads)
    assert len(acknowledged) >= ACKNOWLEDGED_BEFORE_KILL, len(acknowledged)
    assert wrong == []

    box.start()
    listed = {entry["name"]: entry for entry in box.folder_items("0")}
    # Every upload Box acknowledged survived, under its id, with its exact content.
    missing = sorted(set(acknowledged) - set(listed))
    assert not missing, f"{len(missing)} acknowledged uploads lost in the crash: {missing[:5]}"
    for name, ack in acknowledged.items():
        assert listed[name]["id"] == ack.file_id and listed[name]["sha1"] == ack.sha1, name
        assert hashlib.sha1(box.download(ack.file_id)).hexdigest() == ack.sha1, name
    # Anything else listed was in flight at the kill, and is whole (its commit was durable
    # before the answer was lost), never a partial file or one nobody sent.
    for name in set(listed) - set(acknowledged):
        assert name in unanswered, name
        assert listed[name]["sha1"] == unanswered[name], name
        assert hashlib.sha1(box.download(listed[name]["id"])).hexdigest() == unanswered[name], name
    # The emulator keeps working after the crash, names included.
    assert upload(box, "after-crash.bin", b"ok").status_code == 201
