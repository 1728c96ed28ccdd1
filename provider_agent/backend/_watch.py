"""One call's deadline and cancellation, enforced by closing its socket.

``requests`` timeouts bound each socket operation, not a whole call: a server that
trickles a byte a second never trips them. A ``Watch`` therefore holds the socket the
call is using and, when the deadline passes or ``cancel()`` is called from any thread,
shuts it down. The blocked read in the calling thread returns or raises at once, and
the caller asks the watch what happened (``expired`` or ``cancelled``).
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Callable, Optional

from .errors import BackendError, BackendTimeoutError, JobCancelledError

EXPIRED = "expired"
CANCELLED = "cancelled"


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
        self.state: Optional[str] = None
        self._sock: Optional[socket.socket] = None
        self._lock = threading.Lock()
        self._timer: Optional[threading.Timer] = None
        if timeout_s is not None:
            self._timer = threading.Timer(max(timeout_s, 0.0), self.fire, (EXPIRED,))
            self._timer.daemon = True
            self._timer.start()

    @property
    def expired(self) -> bool:
        """The deadline has passed, whether or not the timer has fired yet (a
        socket timeout cut to the deadline may wake the caller first)."""
        if self.state is not None:
            return self.state == EXPIRED
        return self.deadline is not None and time.monotonic() >= self.deadline - 0.002

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
        """The call is over: stop the timer and forget the socket."""
        if self._timer is not None:
            self._timer.cancel()
        with self._lock:
            self._sock = None
            on_finish, self._on_finish = self._on_finish, None
        if on_finish is not None:
            on_finish()


def _shutdown(sock: Optional[socket.socket]) -> None:
    if sock is None:
        return
    try:
        # The base class's method, so that a TLS socket is cut at the TCP level
        # instead of starting a TLS close handshake from a second thread.
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass  # already closed or never connected: nothing left to stop
