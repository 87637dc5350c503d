"""Keeping the journal bounded while the daemon runs (``retention`` in the configuration).

Once shortly after start-up and then every `PRUNE_INTERVAL_S`, one thread deletes the
history older than ``retention.history`` and forgets the rows of files uploaded longer
ago than ``retention.uploaded_rows`` whose source is gone (`Journal.prune_history`,
`Journal.prune_uploaded`: batches along indexes, short transactions). A source counts
as gone only when its watch is configured, its root is there (an unmounted drop folder
proves nothing) and nothing is at its path; a row is never forgotten while its
after-upload action waits.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

from syncd.config import Config
from syncd.journal import Journal, JournalError
from syncd.logs import get_logger

log = get_logger(__name__)

#: Seconds between two prunes.
PRUNE_INTERVAL_S = 3600.0
#: Seconds after start-up before the first prune (the start-up scans go first).
FIRST_PRUNE_AFTER_S = 60.0


def source_gone(config: Config) -> Callable[[str, str], bool]:
    """`gone(watch, relpath)`: True only when nothing is at the path below a watch root that is there."""
    roots = {w.name: w.path for w in config.watches}
    present: dict[str, bool] = {}

    def gone(watch: str, relpath: str) -> bool:
        root = roots.get(watch)
        if root is None:
            return False
        if watch not in present:
            present[watch] = root.is_dir()
        if not present[watch]:
            return False
        try:
            os.lstat(root / relpath)
        except (FileNotFoundError, NotADirectoryError):
            return True
        except OSError:
            return False
        return False

    return gone


class JournalUpkeep:
    """Prunes the journal to its retention, now (`prune`) or periodically (`start`)."""

    def __init__(self, journal: Journal, config: Callable[[], Config], *,
                 clock: Callable[[], float] = time.time) -> None:
        self._journal = journal
        self._config = config
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def prune(self) -> tuple[int, int]:
        """Prune once; returns (history lines deleted, rows forgotten)."""
        config = self._config()
        now = self._clock()
        history = rows = 0
        started = time.monotonic()
        if config.retention.history is not None:
            history = self._journal.prune_history(now - config.retention.history)
        if config.retention.uploaded_rows is not None:
            rows = self._journal.prune_uploaded(now - config.retention.uploaded_rows, source_gone(config))
        log.info("journal_pruned", history_deleted=history, rows_forgotten=rows,
                 duration_ms=round((time.monotonic() - started) * 1000))
        return history, rows

    def start(self, first_after: float = FIRST_PRUNE_AFTER_S, every: float = PRUNE_INTERVAL_S) -> None:
        """Prune `first_after` seconds from now, then every `every` seconds, until `stop`."""
        def loop() -> None:
            wait = first_after
            while not self._stop.wait(wait):
                try:
                    self.prune()
                except JournalError as exc:
                    log.warning("journal_prune_failed", reason=str(exc))
                wait = every

        self._thread = threading.Thread(target=loop, name="journal-upkeep", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
