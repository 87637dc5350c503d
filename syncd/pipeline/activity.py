"""Pipeline activity: a counter of the moments work moves between stages, and a way to wait for one.

`syncd once` exits the moment nothing is in flight or due. Each stage can say whether it
holds work (intake's queue, readiness, the workers, the journal's due rows), but work
moves between them on other threads, so a look at one stage after another can miss a
file in transit (looked at readiness before it was handed on, at the workers after one
finished with it). The stages therefore call :meth:`PipelineActivity.moved` whenever
work enters a stage or a stage may have emptied: a nomination queued, a claim begun,
a job or an intake round finished, an after-upload action done. A look at every stage
taken between two reads of :attr:`generation` that agree saw one instant: nothing
moved meanwhile. And whoever waits (:meth:`wait`) is woken by the very move that may
have emptied the pipeline, rather than by a polling tick.
"""

from __future__ import annotations

import threading


class PipelineActivity:
    """A generation counter bumped by every move of work between pipeline stages; thread-safe.

    The condition's lock is re-entrant: `moved` may be called from a signal handler
    running on a thread that is inside `wait`.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition(threading.RLock())
        self._generation = 0

    @property
    def generation(self) -> int:
        """How many moves so far; equal before and after a look: nothing moved during it."""
        with self._changed:
            return self._generation

    def moved(self) -> None:
        """Work entered a stage, or a stage may have emptied: count it and wake the waiters."""
        with self._changed:
            self._generation += 1
            self._changed.notify_all()

    def wait(self, seen: int, timeout: float) -> bool:
        """Wait until something moves after generation `seen` was read, or `timeout` seconds;
        True when something moved."""
        with self._changed:
            return self._changed.wait_for(lambda: self._generation != seen, max(0.0, timeout))
