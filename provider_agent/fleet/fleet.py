"""``Fleet``: many backends behind one object, for a script or a web app.

A job is routed to a backend that serves its model and speaks its format (see
``routing``), within the fleet's capacity; if that backend fails before relaying a
byte, the job goes to the next candidate inside the same deadline. The fleet's own
rejections (no backend for the model, no capacity, no backend speaking the format)
are raised before any network I/O. A job's slot is held from routing until its
stream ends, fails, is closed, cancelled or dropped, and released exactly once.

The health monitor starts with the first job (or ``capabilities()``), never at
construction; a fleet built before ``os.fork()`` works in the child, with its own
monitor thread and its own connections.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
import uuid
import weakref
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

from ..backend import (
    Backend,
    BackendError,
    BackendTimeoutError,
    Job,
    JobCancelledError,
    JobResult,
    JobStream,
    ModelNotFoundError,
    Reply,
    WireFormat,
)
from ..backend._closing import Closing
from ..backend._fork import renew_after_fork
from ..backend._stopper import Stopper, under
from ..backend.sink import SinkLike, sender
from .capacity import ALL, CapacityStore, LocalCapacity, Slot
from .config import DEFAULT_MAX_CONCURRENT, Config, PricingConfig, load_config
from .discovery import Discovery, build_discovery
from .errors import FLEET, AllBackendsFailedError, OutOfCapacityError
from .member import Member, members_from_config
from .monitor import DEFAULT_INTERVAL, BackendStatus, HealthMonitor
from .routing import BackendView, choose, fails_over, marks_down

__all__ = ["Fleet"]

log = logging.getLogger(__name__)


class _Run:
    """One job in the fleet, from routing to the end of its stream."""

    def __init__(self, job: Job, slot: Slot) -> None:
        self.job = job
        self.order: List[str] = []
        self.slot = slot
        self.lock = threading.Lock()
        self.cancelled = False
        self.stopper = Stopper()  # stopped by cancel(): reaches any attempt
        self.stream: Optional[weakref.ReferenceType[JobStream]] = None


class Fleet(Closing):
    """Routes jobs over ``backends`` (``Backend`` or ``Member`` objects).

    ``max_concurrent`` bounds the jobs running at once; a ``Member`` may bound its
    backend's too. ``pricing`` and ``max_tokens_per_minute`` only shape the
    capabilities message. ``health_interval`` and ``health_timeout`` (s) drive the
    monitor. ``capacity`` is where the counts live (this process by default).
    Backends the fleet built (``from_config``) are closed with it; backends
    handed in stay the caller's. Thread-safe; a context manager.
    """

    def __init__(
        self,
        backends: Sequence[Union[Backend, Member]],
        *,
        max_concurrent: int = DEFAULT_MAX_CONCURRENT,
        pricing: Optional[PricingConfig] = None,
        max_tokens_per_minute: Optional[int] = None,
        health_interval: float = DEFAULT_INTERVAL,
        health_timeout: Optional[float] = None,
        capacity: Optional[CapacityStore] = None,
        close_backends: bool = False,
    ) -> None:
        if not isinstance(max_concurrent, int) or isinstance(max_concurrent, bool):
            raise TypeError("max_concurrent must be an int")
        if max_concurrent < 1:
            raise ValueError("max_concurrent must be at least 1")
        members = [b if isinstance(b, Member) else Member(b) for b in backends]
        self._members: Dict[str, Member] = {}
        for member in members:
            if member.id in self._members:
                raise ValueError(f"two backends with the id {member.id!r}")
            self._members[member.id] = member
        self._formats = {
            m.id: frozenset(f for f in WireFormat if m.backend.speaks(f))
            for m in members
        }
        self.max_concurrent = max_concurrent
        self.pricing = pricing
        self.max_tokens_per_minute = max_tokens_per_minute
        self.monitor = HealthMonitor(
            [m.backend for m in members],
            interval=health_interval,
            timeout=health_timeout,
        )
        self._capacity = capacity if capacity is not None else LocalCapacity()
        self._close_backends = close_backends
        self._closed = False
        self._refreshed = False
        self._init_threading()
        renew_after_fork(self)

    @classmethod
    def from_config(
        cls, config: Union[Config, str, os.PathLike[str]], **options: Any
    ) -> Fleet:
        """A fleet of the backends an ``agent.toml`` (or a ``Config``) names, with
        its limits and prices. A backend whose key variable is unset is left out
        with a warning. Raises ``ConfigError``."""
        if not isinstance(config, Config):
            config = load_config(config)
        options.setdefault("max_concurrent", config.limits.max_concurrent)
        options.setdefault("max_tokens_per_minute", config.limits.max_tokens_per_minute)
        options.setdefault("pricing", config.pricing)
        return cls(members_from_config(config), close_backends=True, **options)

    def _init_threading(self) -> None:
        # Re-entrant: a stream dropped without close() frees its slot from a
        # finaliser, which the garbage collector may run in a thread that
        # holds this lock.
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._refreshing = threading.Lock()
        self._jobs: Dict[uuid.UUID, _Run] = {}
        self._pool: Optional[ThreadPoolExecutor] = None

    def _after_fork(self) -> None:
        # None of the parent's jobs runs here, and no thread of its pool exists.
        self._init_threading()

    # -- what the fleet knows ---------------------------------------------------

    @property
    def backends(self) -> List[Backend]:
        return [m.backend for m in self._members.values()]

    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called: the fleet takes no more jobs."""
        return self._closed

    @property
    def in_flight(self) -> int:
        """Jobs holding a slot now."""
        return self._capacity.count(ALL)

    def in_flight_of(self, backend_id: str) -> int:
        """Jobs running on one backend now."""
        return self._capacity.count(backend_id)

    def snapshot(self) -> Mapping[str, BackendStatus]:
        """Every backend's latest status, as the monitor last saw it."""
        return self.monitor.snapshot()

    def refresh(self) -> Discovery:
        """Probe every backend and list their models now; the new discovery."""
        self._check_open()
        with self._refreshing:
            self.monitor.refresh()
            self._refreshed = True
        return self.discovery()

    def start(self) -> Fleet:
        """Discover the backends (once) and start the health monitor, which the
        first job would otherwise do; for a server that wants its fleet warm
        before the first request. Returns the fleet."""
        self._ready()
        return self

    def discovery(self) -> Discovery:
        """What the monitor's latest snapshot shows the fleet serving."""
        return build_discovery(
            list(self._members.values()),
            self.monitor.snapshot(),
            pricing=self.pricing,
            max_concurrent=self.max_concurrent,
            max_tokens_per_minute=self.max_tokens_per_minute,
        )

    def capabilities(self) -> Dict[str, Any]:
        """The latest discovery's capabilities message (discovering first, if
        nothing has been yet)."""
        self._ready()
        return self.discovery().to_capabilities()

    # -- running jobs -----------------------------------------------------------

    def execute(self, job: Job) -> JobStream:
        """Route ``job`` and return its stream once a backend has answered.

        Raises ``ModelNotLoadedError``, ``OutOfCapacityError`` or
        ``UnsupportedWireFormatError`` before any network I/O;
        ``AllBackendsFailedError`` when every candidate failed before relaying a
        byte; and the backend's error when the failure allows no failover (a 400
        about the request, the deadline, a cancel). ``stream.backend_id`` names
        the backend that serves it.
        """
        run = self._register(job)
        try:
            self._admit(run)
            return self._open(run)
        except BaseException:
            self._finish(run)
            raise

    def run(self, job: Job, sink: SinkLike) -> JobResult:
        """Run ``job``, pushing each chunk into ``sink`` as it is read."""
        send = sender(sink)  # a bad sink fails here, before any request
        return self.execute(job).send_to(send)

    def complete(self, job: Job) -> Reply:
        """Run ``job`` and return its whole reply (text, reasoning, result), for
        a caller who wants no stream; ``"stream": false`` in its body is fine.
        Raises as ``execute()`` and iterating its stream do."""
        with self.execute(job.without_stream_flag()) as stream:
            return stream.reply()

    def submit(self, job: Job, sink: SinkLike) -> Future[JobResult]:
        """Run ``job`` on the fleet's thread pool, pushing each chunk into ``sink``
        from there. The rejections are raised here, at once; any other failure is
        the future's exception."""
        send = sender(sink)
        run = self._register(job)
        try:
            self._admit(run)
            future = self._executor().submit(self._drive, run, send)
        except BaseException:
            self._finish(run)
            raise
        # A future cancelled before it ran never reaches _drive.
        future.add_done_callback(lambda f: self._finish(run) if f.cancelled() else None)
        return future

    def cancel(self, job_id: uuid.UUID) -> bool:
        """Cancel a job from any thread, at any stage: routing, connecting,
        waiting for headers or streaming. Its upstream connection is closed and
        its slot freed; its thread gets ``JobCancelledError``. Whether such a
        job was running. ``job_id`` may be the UUID or its string."""
        if not isinstance(job_id, uuid.UUID):
            job_id = uuid.UUID(str(job_id))
        with self._lock:
            run = self._jobs.get(job_id)
        if run is None:
            return False
        with run.lock:
            run.cancelled = True
            stream = run.stream() if run.stream is not None else None
        run.stopper.stop()  # the attempt under way, or one about to start
        if stream is not None:
            stream.cancel()  # and an idle stream lets go of its slot now
        return True

    def close(self, timeout: Optional[float] = 10.0) -> None:
        """Stop the monitor, cancel every running job and wait (at most
        ``timeout`` s) for them to let go; then close the backends the fleet
        built."""
        with self._lock:
            self._closed = True
            runs = list(self._jobs.copy().values())
        self.monitor.stop()
        for run in runs:
            self.cancel(run.job.job_id)
        with self._changed:
            self._changed.wait_for(lambda: not self._jobs, timeout)
        pool, self._pool = self._pool, None
        if pool is not None:
            # Every job has let go of its connection and slot; a thread still
            # inside a sink of the caller's is the caller's to wait for.
            pool.shutdown(wait=False)
        if self._close_backends:
            for backend in self.backends:
                backend.close()

    def __repr__(self) -> str:
        return (
            f"<Fleet {len(self._members)} backends, "
            f"{self.in_flight}/{self.max_concurrent} in flight>"
        )

    # -- the machinery ----------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the fleet is closed")

    def _ready(self) -> None:
        """Discover once before the first job, then keep the monitor running."""
        self._check_open()
        if not self._refreshed:
            with self._refreshing:
                if not self._refreshed:
                    self.monitor.refresh()
                    self._refreshed = True
        with self._lock:  # never started again once close() has stopped it
            self._check_open()
            self.monitor.start()

    def _views(self) -> List[BackendView]:
        snapshot = self.monitor.snapshot()
        views = []
        for member in self._members.values():
            status = snapshot.get(member.id)
            backend = member.backend
            views.append(
                BackendView(
                    member.id,
                    backend.kind,
                    backend.native,
                    self._formats[member.id],
                    member.serves(status),
                    status is not None and status.up,
                    status.health.latency_ms if status is not None else None,
                    self._capacity.count(member.id),
                    member.max_concurrent,
                )
            )
        return views

    def _register(self, job: Job) -> _Run:
        """Make the job known, and so cancellable, before anything else."""
        run = _Run(job, Slot(self._capacity))
        with self._lock:
            self._check_open()
            if job.job_id in self._jobs:
                raise ValueError(f"job {job.job_id} is already running in this fleet")
            self._jobs[job.job_id] = run
        return run

    def _admit(self, run: _Run) -> None:
        """Route the job and take its fleet slot; no network I/O (but the first
        discovery). The caller forgets the run if this raises."""
        self._ready()
        job = run.job
        if run.cancelled:
            raise JobCancelledError(FLEET, "job cancelled")
        run.order = choose(
            job.model_id, job.format, self._views(), fleet_limit=self.max_concurrent
        )
        if not run.slot.take_fleet(self.max_concurrent):
            raise OutOfCapacityError(
                f"the fleet is running {self.max_concurrent} jobs, its limit",
                retry_after=1.0,
            )

    def _open(self, run: _Run) -> JobStream:
        """Try the candidates in order until one answers; its stream."""
        job = run.job
        deadline = time.monotonic() + job.deadline_ms / 1000
        attempts: List[BackendError] = []
        for backend_id in run.order:
            left_ms = int((deadline - time.monotonic()) * 1000)
            if left_ms <= 0:
                raise BackendTimeoutError(
                    FLEET,
                    f"deadline passed after {job.deadline_ms} ms "
                    f"and {len(attempts)} failed attempts",
                )
            member = self._members[backend_id]
            if not run.slot.take_backend(backend_id, member.max_concurrent):
                continue  # filled up since routing
            if run.cancelled:
                raise JobCancelledError(FLEET, "job cancelled")
            try:
                with under(run.stopper):
                    stream = member.backend.execute(replace(job, deadline_ms=left_ms))
            except BackendError as exc:
                run.slot.leave_backend()
                self._learn(member, job, exc)
                if run.cancelled or not fails_over(exc):
                    raise
                log.info("job %s: %s; trying the next backend", job.job_id, exc)
                # Without its traceback: that holds this frame, whose locals
                # hold the stream returned below, and a dropped stream would
                # then wait for the cycle collector to free its slot.
                attempts.append(exc.with_traceback(None))
                continue
            with run.lock:
                run.stream = weakref.ref(stream)
                cancelled = run.cancelled
            stream.add_release_callback(functools.partial(self._finish, run))
            if cancelled:
                stream.close()
                raise JobCancelledError(member.id, "job cancelled")
            return stream
        if not attempts:
            raise OutOfCapacityError(
                f"every backend serving model {job.model_id!r} filled up",
                retry_after=1.0,
            )
        raise AllBackendsFailedError(job.model_id, attempts)

    def _learn(self, member: Member, job: Job, error: BackendError) -> None:
        """What a failed attempt says about its backend (passive health)."""
        if isinstance(error, ModelNotFoundError):
            self.monitor.forget_model(member.id, job.model_id)
        elif marks_down(error):
            self.monitor.mark_down(member.id, f"a job failed: {error.message}")

    def _finish(self, run: _Run) -> None:
        """The job let go: its slot back (once), and forget it."""
        run.slot.release()
        with self._lock:
            if self._jobs.get(run.job.job_id) is run:
                del self._jobs[run.job.job_id]
                self._changed.notify_all()

    def _drive(self, run: _Run, sink: Any) -> JobResult:
        try:
            stream = self._open(run)
        except BaseException:
            self._finish(run)
            raise
        return stream.send_to(sink)

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            self._check_open()
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    max_workers=self.max_concurrent,
                    thread_name_prefix="provider-agent-job",
                )
            return self._pool
