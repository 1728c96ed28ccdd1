"""``Stopper``: one switch for many calls under way, such as a monitor's probes.

A health monitor that is stopped (or an interpreter that exits) must not wait for a
probe of a backend that accepted the connection and never answers. A thread that
runs calls ``under(stopper)`` has the watch of each of its probes, listings and
jobs registered there, and ``stop()`` cancels every one still running, and any
registered afterwards. A fleet runs each job's attempts under a stopper of the
job's own, so that cancelling it reaches the attempt at any stage.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator, Optional, Set, Union

from ._watch import Watch

_local = threading.local()


class Stopper:
    """Calls that ``stop()`` ends together. Thread-safe. A stopper may itself be
    added to another (``add``): stopping the outer one stops it too."""

    def __init__(self) -> None:
        self._watches: Set[Union[Watch, Stopper]] = set()
        self._lock = threading.Lock()
        self.stopped = False

    def add(self, watch: Union[Watch, Stopper]) -> None:
        with self._lock:
            if not self.stopped:
                self._watches.add(watch)
                return
        watch.cancel()

    def discard(self, watch: Union[Watch, Stopper]) -> None:
        with self._lock:
            self._watches.discard(watch)

    def stop(self) -> None:
        with self._lock:
            self.stopped = True
            watches, self._watches = self._watches, set()
        for watch in watches:
            watch.cancel()

    cancel = stop  # as one of another stopper's calls


@contextmanager
def under(stopper: Optional[Stopper]) -> Iterator[None]:
    """Register the calls this thread makes meanwhile with ``stopper``."""
    previous = getattr(_local, "stopper", None)
    _local.stopper = stopper
    try:
        yield
    finally:
        _local.stopper = previous


def current_stopper() -> Optional[Stopper]:
    """The stopper of the calling thread's calls, if any."""
    return getattr(_local, "stopper", None)
