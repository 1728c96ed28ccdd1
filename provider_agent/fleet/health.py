"""Probing many backends at once: ``poll_health`` and the model listings.

Every probe of a poll runs at the same time on a bounded thread pool, so a poll
takes about one probe timeout whatever the fleet's size: a backend that accepts the
connection and never answers holds one thread until its own deadline cuts it, not
the whole poll. ``Backend.health()`` never raises for network trouble, so one dead
backend cannot sink the poll.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import Callable, Dict, List, Optional, Sequence, TypeVar, Union

from ..backend import Backend, BackendError, BackendHealth, BackendModel
from ..backend._stopper import Stopper, under

__all__ = ["MAX_WORKERS", "list_all_models", "poll_health"]

log = logging.getLogger(__name__)

#: The most probes a poll runs at once. In a poll of more backends than this,
#: where more than this many hang, the backends left waiting for a thread are
#: reported down ("no answer within ...") when the poll's time is up.
MAX_WORKERS = 512

#: How long past the probes' own deadline a poll waits for a thread to report
#: (the deadline cuts the socket; the thread still needs the CPU to return).
_GRACE_S = 0.05

T = TypeVar("T")
R = TypeVar("R")


def fan_out(
    fn: Callable[[T, float], R],
    items: Sequence[T],
    *,
    timeout: float,
    max_workers: Optional[int] = None,
    stopper: Optional[Stopper] = None,
) -> List[Optional[R]]:
    """``fn(item, seconds_left)`` of every item at once; None for an item whose
    call had not returned within ``timeout`` seconds of this call. The budget
    starts now, not when a thread is free: starting hundreds of threads takes a
    good part of a second, so a call started late is told how little is left.
    When the time is up, or the caller is interrupted, the calls still under
    way are cut short (their results would be dropped), so that no thread is
    left holding a socket; ``stopper`` can cut them sooner. An exception ``fn``
    raises propagates: ``fn`` must turn the failures it expects into results."""
    if not items:
        return []
    deadline = time.monotonic() + timeout
    calls = Stopper()
    if stopper is not None:
        stopper.add(calls)

    def call(item: T) -> R:
        with under(calls):
            return fn(item, max(deadline - time.monotonic(), 0.001))

    workers = max(1, min(len(items), max_workers or MAX_WORKERS))
    pool = ThreadPoolExecutor(
        max_workers=workers, thread_name_prefix="provider-agent-poll"
    )
    try:
        futures = [pool.submit(call, item) for item in items]
        left = max(deadline - time.monotonic(), 0.0)
        done, _ = wait(futures, timeout=left, return_when=FIRST_EXCEPTION)
        # Only what answered in time: a call cut below is no answer.
        return [f.result() if f in done else None for f in futures]
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        calls.stop()
        if stopper is not None:
            stopper.discard(calls)


def _longest(backends: Sequence[Backend], timeout: Optional[float], attr: str) -> float:
    if timeout is None:
        timeout = max(float(getattr(b, attr)) for b in backends)
    return timeout


def _grace(timeout: float) -> float:
    return min(_GRACE_S + 0.05 * timeout, 0.5)


def poll_health(
    backends: Sequence[Backend],
    *,
    timeout: Optional[float] = None,
    max_workers: Optional[int] = None,
) -> Dict[str, BackendHealth]:
    """Probe every backend concurrently; their health keyed by backend id.

    ``timeout`` (s) bounds the poll, and so each probe; the default is each
    backend's own ``health_timeout``. A probe that has not reported by then is
    ``reachable=False``. A probe that starts late (hundreds of threads take a
    while to start) gets what is left of the poll. Backends sharing an id are
    probed once.
    """
    return _poll(backends, timeout, max_workers, None)


def _poll(
    backends: Sequence[Backend],
    timeout: Optional[float],
    max_workers: Optional[int],
    stopper: Optional[Stopper],
) -> Dict[str, BackendHealth]:
    unique = list({b.id: b for b in backends}.values())
    if not unique:
        return {}

    def probe(backend: Backend, left: float) -> BackendHealth:
        own = backend.health_timeout if timeout is None else timeout
        try:
            return backend.health(min(own, max(left - grace, 0.001)))
        except Exception as exc:  # noqa: BLE001 - a bug in one probe, not the poll's
            log.exception("%s: the health probe failed", backend.id)
            return BackendHealth(False, None, f"probe failed: {type(exc).__name__}")

    longest = _longest(unique, timeout, "health_timeout")
    grace = _grace(longest)
    results = fan_out(
        probe,
        unique,
        timeout=longest + grace,
        max_workers=max_workers,
        stopper=stopper,
    )
    health: Dict[str, BackendHealth] = {}
    for backend, result in zip(unique, results):
        if result is None:
            limit = timeout if timeout is not None else backend.health_timeout
            result = BackendHealth(False, None, f"no answer within {limit:g} s")
        health[backend.id] = result
    return health


def _listing(backend: Backend) -> Union[List[BackendModel], BackendError]:
    try:
        return backend.list_models()
    except BackendError as exc:
        log.info("%s: cannot list models: %s", backend.id, exc.message)
        return exc
    except Exception as exc:  # noqa: BLE001 - a bug in one listing, not the round's
        log.exception("%s: the model listing failed", backend.id)
        return BackendError(backend.id, f"listing failed: {type(exc).__name__}")


def list_all_models(
    backends: Sequence[Backend],
    *,
    max_workers: Optional[int] = None,
    stopper: Optional[Stopper] = None,
) -> Dict[str, Union[List[BackendModel], BackendError]]:
    """Every backend's models, listed concurrently, keyed by backend id: the
    list, or the ``BackendError`` that kept it from being had."""
    unique = list({b.id: b for b in backends}.values())
    if not unique:
        return {}
    longest = _longest(unique, None, "request_timeout")
    results = fan_out(
        lambda backend, left: _listing(backend),
        unique,
        timeout=longest + _grace(longest),
        max_workers=max_workers,
        stopper=stopper,
    )
    listings: Dict[str, Union[List[BackendModel], BackendError]] = {}
    for backend, result in zip(unique, results):
        if result is None:
            result = BackendError(backend.id, "the model listing did not finish")
        listings[backend.id] = result
    return listings
