"""The upload itself: a file pushed to Box by the least a chunked-upload client must do.

The floor the head-to-head benchmark (``bench/versus_rclone.py``) sets beside a large
file's upload time. Box's protocol needs, per file: one request creating the session,
every part with its SHA-1 in a ``Digest`` header (so a part is hashed before it is sent),
and a commit carrying the whole file's SHA-1. This client does exactly that and nothing
else: one read pass over the file (each part read once, hashed for its own digest and for
the whole-file digest, then handed to a sender), ``parallel`` parts in flight on
keep-alive connections, no journal, no retries, no progress reporting. The time runs from
the session request to the commit's answer.
"""

from __future__ import annotations

import base64
import concurrent.futures
import hashlib
import threading
import time
from pathlib import Path
from typing import Any

from bench.emulator_throughput import ChunkedUploadResult, authorized_session, check_answer, commit_session


def upload_file(upload_url: str, token: str, path: Path, folder_id: str, *, parallel: int = 4) -> ChunkedUploadResult:
    """Upload `path` into `folder_id` through an upload session with `parallel` parts in flight.

    At most `parallel` + 1 parts are held in memory: the reader waits for a free sender.
    """
    size = path.stat().st_size
    control = authorized_session(token)
    local = threading.local()
    slots = threading.BoundedSemaphore(parallel + 1)
    started = time.perf_counter()
    session = check_answer(control.post(f"{upload_url}/files/upload_sessions",
                                        json={"folder_id": folder_id, "file_size": size, "file_name": path.name},
                                        timeout=60), (201,), "create session")
    part_size = int(session["part_size"])
    endpoint = session["session_endpoints"]["upload_part"]

    def send(offset: int, body: bytes, digest: str) -> dict[str, Any]:
        try:
            http = getattr(local, "http", None) or authorized_session(token)
            local.http = http
            headers = {"Digest": f"sha={digest}", "Content-Range": f"bytes {offset}-{offset + len(body) - 1}/{size}",
                       "Content-Type": "application/octet-stream"}
            return check_answer(http.put(endpoint, data=body, headers=headers, timeout=300), (200,),
                                f"part at {offset}")["part"]
        finally:
            slots.release()

    whole = hashlib.sha1()
    futures = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=parallel) as senders, open(path, "rb") as source:
        for offset in range(0, size, part_size):
            slots.acquire()
            body = source.read(part_size)
            whole.update(body)
            digest = base64.b64encode(hashlib.sha1(body).digest()).decode()
            futures.append(senders.submit(send, offset, body, digest))
        parts = [future.result() for future in futures]
    committed = commit_session(control, session["session_endpoints"]["commit"], parts,
                               base64.b64encode(whole.digest()).decode())
    seconds = time.perf_counter() - started
    entry = committed["entries"][0]
    return ChunkedUploadResult(size, part_size, len(parts), seconds, str(entry["id"]), str(entry["sha1"]))
