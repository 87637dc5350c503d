"""SIGKILL in the middle of uploads: after a restart every listed file has its exact content."""

from __future__ import annotations

import hashlib
import os
import threading
import time

import requests

from tests.emulator.wire import chunked_upload, upload
from tests.support.emulator import EmulatorProcess


def test_kill_during_uploads_leaves_consistent_state(emulator_factory) -> None:
    box: EmulatorProcess = emulator_factory("--min-chunked-size", "1000", "--part-sizes", "*=4KiB")
    stop = threading.Event()
    sent: dict[str, str] = {}
    lock = threading.Lock()

    def uploader(worker: int) -> None:
        index = 0
        while not stop.is_set():
            data = os.urandom(20_000 + worker)
            name = f"w{worker}-{index}.bin"
            index += 1
            try:
                if index % 2:
                    upload(box, name, data)
                else:
                    chunked_upload(box, name, data)
            except (requests.ConnectionError, AssertionError, KeyError, ValueError):
                pass  # the emulator died under us: that is the point
            with lock:
                sent[name] = hashlib.sha1(data).hexdigest()

    threads = [threading.Thread(target=uploader, args=(worker,)) for worker in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    box.kill()
    stop.set()
    for thread in threads:
        thread.join(30)
    box.start()
    listed = box.folder_items("0")
    assert listed, "some uploads completed before the kill"
    for entry in listed:
        content = box.download(entry["id"])
        assert hashlib.sha1(content).hexdigest() == entry["sha1"] == sent[entry["name"]], entry["name"]
    # The emulator keeps working after the crash, names included.
    assert upload(box, "after-crash.bin", b"ok").status_code == 201
