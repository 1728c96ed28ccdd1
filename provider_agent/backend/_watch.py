"""One call's deadline and cancellation, enforced by closing its socket.

``requests`` timeouts bound each socket operation, not a whole call: a server that
trickles a byte a second never trips them. A ``Watch`` therefore holds the socket the
call is using and, when the deadline passes or ``cancel()`` is called from any thread,
shuts it down. The blocked read in the calling thread returns or raises at once, and
the caller asks the watch what happened (``expired`` or ``cancelled``).

Deadlines are kept by one watchdog thread per process, a heap of deadlines woken by
a condition, rather than a timer thread per call: starting a thread costs a job more
than the rest of its overhead, and 256 running jobs would hold 256 of them.
"""

from __future__ import annotations

import heapq
import itertools
import math
import socket
import threading
import time
from typing import Callable, List, Optional, Tuple

from ._fork import renew_after_fork
from .errors import BackendError, BackendTimeoutError, JobCancelledError

EXPIRED = "expired"
CANCELLED = "cancelled"

#: A deadline counts as passed this early: a socket timeout cut to the deadline
#: may wake the caller a little before the watchdog fires.
EARLY = 0.002


class Watch:
    """Deadline and cancel switch for one call. Thread-safe."""

    def __init__(
        self,
        timeout_s: Optional[float],
        on_finish: Optional[Callable[[], None]] = None,
    ) -> None:
        self.started = time.monotonic()
        self._on_finish = on_finish
        self.deadline = None if timeout_s is None else self.started + timeout_s
        #: From when the deadline counts as passed (inf without one).
        self.due = math.inf if self.deadline is None else self.deadline - EARLY
        self.state: Optional[str] = None
        self._sock: Optional[socket.socket] = None
        self._lock = threading.Lock()
        self._watched = False  # whether the watchdog holds the deadline
        if self.deadline is not None:
            _watchdog.watch(self)

    @property
    def expired(self) -> bool:
        """The deadline has passed, whether or not the watchdog has fired yet (a
        socket timeout cut to the deadline may wake the caller first)."""
        if self.state is not None:
            return self.state == EXPIRED
        return time.monotonic() >= self.due

    @property
    def cancelled(self) -> bool:
        return self.state == CANCELLED

    def stop_error(self, backend: str) -> Optional[BackendError]:
        """The error for a call that was cancelled or ran past its deadline."""
        if self.cancelled:
            return JobCancelledError(backend, "job cancelled")
        if self.expired:
            return BackendTimeoutError(
                backend, f"deadline passed after {self.elapsed_ms()} ms"
            )
        return None

    def remaining(self) -> Optional[float]:
        """Seconds left before the deadline (never below a millisecond), or None."""
        if self.deadline is None:
            return None
        return max(self.deadline - time.monotonic(), 0.001)

    def elapsed_ms(self) -> int:
        return int((time.monotonic() - self.started) * 1000)

    def attach(self, sock: Optional[socket.socket]) -> None:
        """Watch ``sock``: it is the one to shut down if the call must stop."""
        with self._lock:
            self._sock = sock
            if self.state is not None:
                _shutdown(sock)

    def detach(self, sock: Optional[socket.socket]) -> None:
        """Forget ``sock`` (it went back to the pool): never shut it down."""
        with self._lock:
            if self._sock is sock:
                self._sock = None

    def fire(self, state: str = CANCELLED) -> None:
        """Stop the call: record why, then shut its socket down."""
        # Shut down under the lock: once detach() has returned, the socket may
        # belong to another call, and must not be touched.
        with self._lock:
            if self.state is not None:
                return
            self.state = state
            _shutdown(self._sock)

    def cancel(self) -> None:
        self.fire(CANCELLED)

    def finish(self) -> None:
        """The call is over: drop its deadline and forget the socket."""
        if self._watched:
            _watchdog.forget(self)
        with self._lock:
            self._sock = None
            on_finish, self._on_finish = self._on_finish, None
        if on_finish is not None:
            on_finish()


class _Watchdog:
    """Fires the deadlines of all the process's watches from one daemon thread,
    started with the first deadline. Finished watches are dropped from the heap
    in bulk once they are half of it, so a heap of five-minute deadlines of
    finished jobs does not grow with the job rate."""

    def __init__(self) -> None:
        self.reset()

    def _after_fork(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Start afresh; also in a forked child, which has no watchdog thread and
        must not fire its parent's deadlines."""
        self._wake = threading.Condition(threading.Lock())
        self._heap: List[Tuple[float, int, Watch]] = []
        self._order = itertools.count()  # never compares two watches
        self._forgotten = 0
        self._thread: Optional[threading.Thread] = None

    def watch(self, watch: Watch) -> None:
        assert watch.deadline is not None
        entry = (watch.deadline, next(self._order), watch)
        with self._wake:
            watch._watched = True
            heapq.heappush(self._heap, entry)
            if self._thread is None:
                thread = threading.Thread(
                    target=self._run, name="provider-agent-watchdog", daemon=True
                )
                thread.start()
                self._thread = thread
            elif self._heap[0] is entry:
                self._wake.notify()

    def forget(self, watch: Watch) -> None:
        with self._wake:
            if not watch._watched:
                return
            watch._watched = False
            self._forgotten += 1
            if self._forgotten > 64 and 2 * self._forgotten > len(self._heap):
                self._heap = [entry for entry in self._heap if entry[2]._watched]
                heapq.heapify(self._heap)
                self._forgotten = 0

    def _run(self) -> None:
        while True:
            with self._wake:
                due = self._due()
                while not due:
                    heap = self._heap
                    self._wake.wait(heap[0][0] - time.monotonic() if heap else None)
                    due = self._due()
            for watch in due:
                watch.fire(EXPIRED)

    def _due(self) -> List[Watch]:
        """Take the watches whose deadline has come off the heap (lock held)."""
        due = []
        heap, now = self._heap, time.monotonic()
        while heap and (heap[0][0] <= now or not heap[0][2]._watched):
            _, _, watch = heapq.heappop(heap)
            if watch._watched:
                watch._watched = False
                due.append(watch)
            else:
                self._forgotten -= 1
        return due


_watchdog = _Watchdog()
renew_after_fork(_watchdog)


def _shutdown(sock: Optional[socket.socket]) -> None:
    if sock is None:
        return
    try:
        # The base class's method, so that a TLS socket is cut at the TCP level
        # instead of starting a TLS close handshake from a second thread.
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass  # already closed or never connected: nothing left to stop
