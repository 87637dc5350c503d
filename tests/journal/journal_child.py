"""A separate process that uses a journal, for the tests about processes.

Usage: python -m tests.journal.journal_child MODE JOURNAL_PATH
  hold   open as daemon, print "locked", keep the lock until stdin closes
  try    open as daemon; print "opened", or "locked-by PID" and exit 3
  churn  open as daemon and write without pause (observe, claim, hash, sessions,
         parts, outcomes) until killed; print "ready", then "tick N" after each round
"""

from __future__ import annotations

import itertools
import os
import sys

from syncd.journal import Journal, JournalLocked, PartRecord, SessionRecord


def hold(path: str) -> int:
    with Journal.open(path, role="daemon"):
        print("locked", flush=True)
        sys.stdin.read()
    return 0


def try_open(path: str) -> int:
    try:
        with Journal.open(path, role="daemon"):
            print("opened", flush=True)
            return 0
    except JournalLocked as exc:
        print(f"locked-by {exc.pid}", flush=True)
        return 3


def churn(path: str) -> int:
    journal = Journal.open(path, role="daemon")
    journal.recover_interrupted()
    print("ready", flush=True)
    prefix = f"p{os.getpid()}"
    for n in itertools.count():
        now = 1000.0 + n
        journal.observe("inbox", f"{prefix}/f{n}.bin", 30, n, n, now)
        if n % 3 == 0:  # a changed file: back to pending
            journal.observe("inbox", f"{prefix}/f{n // 2}.bin", 31, n, n, now)
        claimed = journal.claim_next(now)
        if claimed is None:
            continue
        claim = journal.claimed(claimed)
        claim.record_sha1(f"{n % 16:x}" * 40)
        claim.save_session(SessionRecord(f"S{n}", 8, 4, 31, now + 3600))
        for offset in (0, 8, 16):
            claim.add_part(PartRecord(f"{offset:08X}", offset, 8, "ab" * 20))
        if n % 5 == 0:
            claim.schedule_retry("503 from Box", "unavailable", now + 1)
        elif n % 7 == 0:
            claim.mark_failed("too many attempts", "retries_exhausted")
        else:
            claim.mark_uploaded(str(claimed.id), f"v{n}", "1", f"{n % 16:x}" * 40, now)
        if n % 11 == 0:
            journal.remove("inbox", f"{prefix}/f{n // 3}.bin", "deleted locally")
        if n < 50:  # enough for the parent to know writing is under way; then no pipe to fill
            print(f"tick {n}", flush=True)
    return 0


def main(argv: list[str]) -> int:
    mode, path = argv
    return {"hold": hold, "try": try_open, "churn": churn}[mode](path)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
