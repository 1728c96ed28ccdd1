"""``HealthMonitor``: a background thread that keeps every backend's latest health.

The monitor's state is one immutable snapshot (backend id to ``BackendStatus``),
replaced in a single assignment, so any thread reads a consistent view without a
lock. A backend that fails is probed again sooner than the interval, on a capped
exponential backoff; one that recovers, or whose listing is old, has its models
listed again. A job that finds a backend dead says so (``mark_down``) and the
monitor takes it as a failed probe at once.

The thread starts on first use, never at import or construction; it is a daemon
holding only a weak reference to its monitor, so it never keeps the interpreter
from exiting, and a forked child starts its own when it first needs one.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from dataclasses import dataclass, replace
from functools import cached_property
from types import MappingProxyType, TracebackType
from typing import (
    Dict,
    FrozenSet,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Type,
)

from ..backend import Backend, BackendError, BackendHealth, BackendModel
from ..backend._fork import renew_after_fork
from ..backend._stopper import Stopper
from .health import _poll, list_all_models

__all__ = ["BackendStatus", "HealthMonitor"]

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 30.0
#: How often a healthy backend's models are listed again.
DEFAULT_MODELS_INTERVAL = 300.0
#: The first re-probe of a failed backend; each further failure doubles it, up
#: to the interval.
BACKOFF_START = 1.0


@dataclass(frozen=True)
class BackendStatus:
    """What the monitor knows of one backend.

    ``checked_at`` is the wall-clock time (``time.time()``) of the latest probe;
    ``models`` the latest listing (None until one succeeded), minus any model a
    job found missing since (those are in ``missing``); ``failures`` counts
    failed probes and job reports of the backend down, in a row.
    """

    backend_id: str
    health: BackendHealth
    checked_at: float
    models: Optional[Tuple[BackendModel, ...]] = None
    models_error: Optional[str] = None
    listed_at: Optional[float] = None
    failures: int = 0
    #: Models a job found missing since the latest listing.
    missing: FrozenSet[str] = frozenset()

    @property
    def up(self) -> bool:
        return self.health.reachable

    @cached_property
    def model_ids(self) -> FrozenSet[str]:
        # Read by routing on every job; a remote API lists hundreds of models.
        return frozenset(m.model_id for m in self.models or ())


def backoff(failures: int, interval: float) -> float:
    """Seconds until a backend that failed ``failures`` times in a row is
    probed again."""
    if failures <= 0:
        return interval
    return min(interval, BACKOFF_START * float(2 ** min(failures - 1, 30)))


class HealthMonitor:
    """Probes ``backends`` every ``interval`` seconds on a background thread.

    ``timeout`` (s) bounds each probe (default: each backend's
    ``health_timeout``). ``start()``/``stop()`` or a ``with`` block run the
    thread; ``refresh()`` probes everything now, in the calling thread;
    ``snapshot()`` is the latest view, safe from any thread.
    """

    def __init__(
        self,
        backends: Sequence[Backend],
        *,
        interval: float = DEFAULT_INTERVAL,
        timeout: Optional[float] = None,
        models_interval: float = DEFAULT_MODELS_INTERVAL,
        list_models: bool = True,
    ) -> None:
        if interval <= 0 or models_interval <= 0:
            raise ValueError("the intervals must be positive")
        if timeout is not None and timeout <= 0:
            raise ValueError("the probe timeout must be positive")
        self.backends: Tuple[Backend, ...] = tuple({b.id: b for b in backends}.values())
        self.interval = interval
        self.timeout = timeout
        self.models_interval = models_interval
        self.list_models = list_models
        self._snapshot: Mapping[str, BackendStatus] = MappingProxyType({})
        self._due: Dict[str, float] = {}
        self._marked: Dict[str, float] = {}  # monotonic time of a job's report
        self._relist: set[str] = set()
        self._rounds = 0
        self._init_threading()
        renew_after_fork(self)

    def _init_threading(self) -> None:
        self._lock = threading.Lock()  # guards updates; readers need none
        self._probing = threading.Lock()  # one round at a time
        self._round_done = threading.Condition(self._lock)
        # Each thread gets its own event: a thread whose event is no longer
        # the monitor's has been stopped, even if another one was started.
        self._wake = threading.Event()
        self._stopper = Stopper()  # the thread's probes under way
        self._thread: Optional[threading.Thread] = None
        self._restart = False

    def _after_fork(self) -> None:
        # The parent's thread does not exist here; the child's first use of
        # the snapshot starts its own, if the parent's was running.
        running = self._thread is not None
        self._init_threading()
        self._restart = running

    # -- reading --------------------------------------------------------------

    def snapshot(self) -> Mapping[str, BackendStatus]:
        """Backend id to its latest status (only backends probed so far)."""
        if self._restart:
            self.start()
        return self._snapshot

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    # -- the thread -----------------------------------------------------------

    def start(self) -> HealthMonitor:
        """Start the background thread (again after a fork); a no-op when it runs,
        or once the interpreter is exiting."""
        with self._lock:
            self._restart = False
            if _exiting or (self._thread is not None and self._thread.is_alive()):
                return self
            self._wake = threading.Event()
            self._stopper = Stopper()
            _running.add(self)
            thread = threading.Thread(
                target=_loop,
                args=(weakref.ref(self), self._wake),
                name="provider-agent-health",
                daemon=True,
            )
            self._thread = thread
        thread.start()
        return self

    def stop(self, timeout: Optional[float] = None) -> None:
        """Stop the thread, cutting its probes under way short, and wait for it
        (at most ``timeout`` s)."""
        with self._lock:
            self._restart = False
            thread, self._thread = self._thread, None
            wake, self._wake = self._wake, threading.Event()
            stopper = self._stopper
        stopper.stop()
        wake.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def __enter__(self) -> HealthMonitor:
        return self.start()

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.stop()

    def wait_for_round(self, timeout: Optional[float] = None) -> bool:
        """Wait until the next round of probes has finished; whether it did."""
        with self._round_done:
            target = self._rounds + 1
            return self._round_done.wait_for(lambda: self._rounds >= target, timeout)

    # -- probing --------------------------------------------------------------

    def refresh(self) -> Mapping[str, BackendStatus]:
        """Probe every backend now (and list the models of the healthy ones),
        in the calling thread; the new snapshot."""
        self._round(list(self.backends), None, relist_all=True)
        return self._snapshot

    def _tick(self, wake: threading.Event) -> float:
        """Probe the backends that are due; seconds until the next one is."""
        now = time.monotonic()
        due = [b for b in self.backends if self._due.get(b.id, 0.0) <= now]
        if due:
            self._round(due, wake)
        with self._lock:
            upcoming = min(self._due.values(), default=now + self.interval)
        return max(upcoming - time.monotonic(), 0.01)

    def _round(
        self,
        backends: List[Backend],
        wake: Optional[threading.Event],
        relist_all: bool = False,
    ) -> None:
        """Probe ``backends`` and commit what they said; for the thread (its
        ``wake``), nothing is committed once the monitor was stopped."""
        stopper = self._stopper if wake is not None else None
        with self._probing:
            started = time.monotonic()
            health = _poll(backends, self.timeout, None, stopper)
            now = time.time()
            old = self._snapshot
            relist = [
                b
                for b in backends
                if health[b.id].reachable
                and self.list_models
                and (relist_all or self._needs_listing(old.get(b.id), now, b.id))
            ]
            listings = list_all_models(relist, stopper=stopper) if relist else {}
            with self._lock:
                if wake is not None and wake is not self._wake:
                    return  # stopped meanwhile: its probes were cut short
                new = dict(self._snapshot)
                for backend in backends:
                    current = new.get(backend.id)
                    if self._marked.get(backend.id, -1.0) > started:
                        continue  # a job marked it down meanwhile: that is newer
                    new[backend.id] = self._updated(
                        current,
                        backend.id,
                        health[backend.id],
                        now,
                        listings.get(backend.id),
                    )
                self._commit(new)
                self._rounds += 1
                self._round_done.notify_all()

    def _needs_listing(
        self, status: Optional[BackendStatus], now: float, backend_id: str
    ) -> bool:
        if status is None or status.models is None or not status.up:
            return True  # never listed, or just recovered
        if backend_id in self._relist:
            return True
        return (
            status.listed_at is None or now - status.listed_at >= self.models_interval
        )

    def _updated(
        self,
        status: Optional[BackendStatus],
        backend_id: str,
        health: BackendHealth,
        now: float,
        listing: Optional[object],
    ) -> BackendStatus:
        failures = 0 if health.reachable else (status.failures if status else 0) + 1
        if status is None:
            status = BackendStatus(backend_id, health, now)
        if status.up and not health.reachable:
            log.warning("%s is down: %s", backend_id, health.last_error)
        elif not status.up and health.reachable and status.failures:
            log.info("%s is up again", backend_id)
        status = replace(status, health=health, checked_at=now, failures=failures)
        if isinstance(listing, list):
            self._relist.discard(backend_id)
            status = replace(
                status,
                models=tuple(listing),
                models_error=None,
                listed_at=now,
                missing=frozenset(),
            )
        elif isinstance(listing, BackendError):
            status = replace(status, models_error=listing.message, listed_at=now)
        self._due[backend_id] = time.monotonic() + backoff(failures, self.interval)
        return status

    def _commit(self, statuses: Dict[str, BackendStatus]) -> None:
        # One assignment: a reader sees the old snapshot or the new, whole.
        self._snapshot = MappingProxyType(statuses)

    # -- what jobs report -----------------------------------------------------

    def mark_down(self, backend_id: str, reason: str) -> None:
        """A job found the backend dead: take it as a failed probe now, and
        probe it again on the backoff."""
        with self._lock:
            old = self._snapshot.get(backend_id)
            failures = (old.failures if old else 0) + 1
            health = BackendHealth(False, None, reason)
            now = time.time()
            status = (
                replace(old, health=health, checked_at=now, failures=failures)
                if old
                else BackendStatus(backend_id, health, now, failures=failures)
            )
            if old is None or old.up:
                log.warning("%s marked down by a job: %s", backend_id, reason)
            new = dict(self._snapshot)
            new[backend_id] = status
            self._commit(new)
            now_mono = time.monotonic()
            self._marked[backend_id] = now_mono
            # Never later than it was due: jobs reporting often must not keep
            # pushing the probe that would see the backend recover.
            self._due[backend_id] = min(
                self._due.get(backend_id, now_mono),
                now_mono + backoff(failures, self.interval),
            )
        self._wake.set()

    def forget_model(self, backend_id: str, model_id: str) -> None:
        """A job found ``model_id`` missing on the backend: leave it out of the
        backend's models until its next listing, which comes at its next probe."""
        with self._lock:
            old = self._snapshot.get(backend_id)
            if old is None:
                return
            kept = tuple(m for m in old.models or () if m.model_id != model_id)
            new = dict(self._snapshot)
            new[backend_id] = replace(
                old,
                models=kept if old.models is not None else None,
                missing=old.missing | {model_id},
            )
            self._commit(new)
            self._relist.add(backend_id)
            self._due[backend_id] = min(
                self._due.get(backend_id, 0.0), time.monotonic() + BACKOFF_START
            )
        self._wake.set()

    def __repr__(self) -> str:
        up = sum(1 for s in self._snapshot.values() if s.up)
        state = "running" if self.running else "stopped"
        return f"<HealthMonitor {state} {up}/{len(self.backends)} up>"


#: Monitors whose thread was started, for the exit hook below.
_running: weakref.WeakSet[HealthMonitor] = weakref.WeakSet()
#: Set by the exit hook: from then on no monitor starts (the pools refuse work).
_exiting = False


def _at_exit() -> None:
    """Stop every monitor and cut its probes under way: the interpreter joins the
    poll's worker threads at exit, and a backend that never answers would hold
    it for a whole probe timeout."""
    global _exiting
    _exiting = True
    for monitor in list(_running):
        monitor.stop(timeout=0)


# threading's exit hooks run before it joins the pools' workers (concurrent
# .futures registers its join the same way, earlier, so it runs later);
# atexit's would run only after that join.
getattr(threading, "_register_atexit", atexit.register)(_at_exit)


def _loop(ref: weakref.ReferenceType[HealthMonitor], wake: threading.Event) -> None:
    while True:
        monitor = ref()
        if monitor is None or monitor._wake is not wake:
            return  # dropped, or stopped
        wake.clear()
        try:
            delay = monitor._tick(wake)
        except Exception:  # noqa: BLE001 - the monitor must outlive a bad round
            if monitor._wake is not wake:
                return  # stopped under way (at exit, the pools refuse work)
            log.exception("health round failed")
            delay = monitor.interval
        del monitor  # hold no reference while asleep
        wake.wait(delay)
