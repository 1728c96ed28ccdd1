"""Which backend runs a job, and what a failed attempt means: pure functions.

``choose`` orders the candidates for a job from a view of each backend (its models,
formats, health and load); ``fails_over`` and ``marks_down`` read a failed attempt.
None of them does I/O or keeps state, so each is tested with tables.

The rules:

- A candidate's current model list holds the job's model, it speaks the job's wire
  format natively, it is not full, and it is not marked down. When every backend
  that could take the job is marked down, they are tried anyway: the marks may be
  stale.
- Local engines come before remote APIs (a remote one costs money). Then the least
  loaded relative to its capacity; then kind priority (``KIND_PRIORITY``); then
  the faster probe.
- A job goes to the next candidate only when the attempt failed before a byte was
  relayed, in a way another backend may not share: unreachable, a connection reset
  or closed before any reply, a reply that is not an event stream, HTTP 5xx, 429,
  401 or 403, or "model not found" (the model list was stale). A 400 about the
  request, the deadline, a cancel, and anything after the first byte end the job.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import FrozenSet, List, Optional, Sequence, Tuple

from ..backend import (
    BadStatusError,
    ModelNotFoundError,
    ProtocolError,
    TransportError,
    UnreachableError,
    UnsupportedWireFormatError,
    WireFormat,
)
from .errors import FLEET, ModelNotLoadedError, OutOfCapacityError

__all__ = ["KIND_PRIORITY", "BackendView", "choose", "fails_over", "marks_down"]

#: Which kind lists a model, and breaks a tie between equally loaded backends.
KIND_PRIORITY: Tuple[str, ...] = (
    "vllm",
    "llamacpp",
    "lmstudio",
    "ollama",
    "venice",
    "openrouter",
)

_FAILOVER_STATUSES = frozenset({401, 403, 429})


@dataclass(frozen=True)
class BackendView:
    """What routing needs to know of one backend, at one moment."""

    backend_id: str
    kind: str
    native: bool
    formats: FrozenSet[WireFormat]
    models: FrozenSet[str]
    up: bool
    latency_ms: Optional[int] = None
    in_flight: int = 0
    limit: Optional[int] = None  # its own max_concurrent; None: the fleet's

    @property
    def full(self) -> bool:
        return self.limit is not None and self.in_flight >= self.limit


def kind_rank(kind: str) -> int:
    """A kind's place in ``KIND_PRIORITY`` (an unknown kind comes last)."""
    try:
        return KIND_PRIORITY.index(kind)
    except ValueError:
        return len(KIND_PRIORITY)


def choose(
    model_id: str,
    wire_format: WireFormat,
    views: Sequence[BackendView],
    *,
    fleet_limit: int,
) -> List[str]:
    """The ids of the backends to try for a job, best first.

    Raises ``ModelNotLoadedError`` when no backend serves the model,
    ``UnsupportedWireFormatError`` when none serving it speaks the format, and
    ``OutOfCapacityError`` when every one that could take it is full.
    """
    serving = [v for v in views if model_id in v.models]
    if not serving:
        raise ModelNotLoadedError(model_id)
    speaking = [v for v in serving if wire_format in v.formats]
    if not speaking:
        kinds = ", ".join(sorted({v.kind for v in serving}))
        raise UnsupportedWireFormatError(
            FLEET,
            f"no backend serving model {model_id!r} speaks the "
            f"{wire_format.value} wire format natively (it is served by: {kinds}; "
            "jobs are never transcoded)",
        )
    free = [v for v in speaking if not v.full]
    if not free:
        raise OutOfCapacityError(
            f"every backend serving model {model_id!r} is running as many jobs "
            "as it may",
            retry_after=1.0,
        )
    candidates = [v for v in free if v.up] or free
    return [
        v.backend_id for v in sorted(candidates, key=lambda v: _rank(v, fleet_limit))
    ]


def _rank(view: BackendView, fleet_limit: int) -> Tuple[bool, float, int, float]:
    capacity = view.limit or fleet_limit
    latency = math.inf if view.latency_ms is None else float(view.latency_ms)
    return (not view.native, view.in_flight / capacity, kind_rank(view.kind), latency)


def fails_over(error: BaseException) -> bool:
    """Whether a job whose attempt failed with ``error``, before any byte was
    relayed, may go to the next backend."""
    if isinstance(error, (ModelNotFoundError, UnreachableError, TransportError)):
        return True
    if isinstance(error, ProtocolError):
        return True  # a proxy's HTML page, a server that is not what it claims
    if isinstance(error, BadStatusError):
        return error.status >= 500 or error.status in _FAILOVER_STATUSES
    return False


def marks_down(error: BaseException) -> bool:
    """Whether ``error`` shows the backend itself is down (not the request, the
    deadline, a rate limit or a missing model)."""
    if isinstance(error, ModelNotFoundError):
        return False
    if isinstance(error, (UnreachableError, TransportError)):
        return True
    return isinstance(error, BadStatusError) and error.status >= 500
