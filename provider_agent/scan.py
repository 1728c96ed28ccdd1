"""Probe many backends at once: health, then the models and version of the
healthy ones.

Both rounds run on the fleet's poll (``provider_agent.fleet.health``): every probe
at once, so a scan takes about one probe timeout whatever the number of backends.
``health()`` never raises for network trouble, so one dead backend cannot sink the
scan; a failed model listing is kept as that backend's ``error``, and a backend
that cannot even be built (``build_all``: a key variable unset) is a row with its
reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Optional, Sequence, Tuple, Union
from urllib.parse import urlsplit

from dataclasses_json import DataClassJsonMixin

from .backend import (
    BACKENDS,
    Backend,
    BackendError,
    BackendHealth,
    BackendModel,
    create_backend,
)
from .backend.version import server_version
from .fleet.config import BackendConfig
from .fleet.health import _listing, fan_out, poll_health

__all__ = [
    "ScanResult",
    "build_all",
    "close_all",
    "local_backends",
    "scan",
    "unbuilt",
]


@dataclass
class ScanResult(DataClassJsonMixin):
    """What one backend said when probed. ``version`` is what the server says
    it runs, where it has a route for that (None otherwise)."""

    kind: str
    id: str
    url: str
    health: BackendHealth
    models: List[BackendModel] = field(default_factory=list)
    error: Optional[str] = None
    version: Optional[str] = None


def unbuilt(kind: str, url: Optional[str], reason: str) -> ScanResult:
    """The row of a backend that could not be built: down, with its reason."""
    cls = BACKENDS[kind]
    try:
        where, backend_id = cls.base_url(url), cls.id_for(url)
    except ValueError:  # the URL itself is what was refused: show it as given
        where = url or cls.default_url
        backend_id = f"{kind}:{where}" if cls.native else kind
    return ScanResult(kind, backend_id, where, BackendHealth(False, None, reason))


Scannable = Union[Backend, ScanResult]


def build_all(
    entries: Sequence[BackendConfig], **overrides: Any
) -> List[Tuple[BackendConfig, Scannable]]:
    """Each entry's backend (its options updated with ``overrides``), or, when
    it cannot be built (a key variable unset, an option refused), its
    ``unbuilt`` row."""
    built: List[Tuple[BackendConfig, Scannable]] = []
    for entry in entries:
        options = {**entry.options, **overrides}
        try:
            backend: Scannable = create_backend(
                entry.kind, entry.url, api_key_env=entry.api_key_env, **options
            )
        except (BackendError, TypeError, ValueError) as exc:
            message = exc.message if isinstance(exc, BackendError) else str(exc)
            backend = unbuilt(entry.kind, entry.url, message)
        built.append((entry, backend))
    return built


def close_all(backends: Sequence[Scannable]) -> None:
    """Close every backend among ``backends`` (the rows need no closing)."""
    for backend in backends:
        if isinstance(backend, Backend):
            backend.close()


def local_backends(host: str = "127.0.0.1", **options: Any) -> List[Backend]:
    """One backend per local kind, each at its default port on ``host``.

    Raises ``ValueError`` when ``host`` cannot make a URL."""
    backends = []
    for cls in BACKENDS.values():
        if cls.native:
            port = urlsplit(cls.default_url).port
            name = f"[{host}]" if ":" in host else host  # an IPv6 literal
            backends.append(cls(f"http://{name}:{port}", **options))
    return backends


def scan(
    backends: Sequence[Scannable],
    *,
    with_models: bool = True,
    with_version: bool = False,
    max_workers: Optional[int] = None,
) -> List[ScanResult]:
    """Probe every backend concurrently; results come back in the given order.
    A ``ScanResult`` among ``backends`` (an ``unbuilt`` one) is kept as it is."""
    live = [b for b in backends if isinstance(b, Backend)]
    health = poll_health(live, max_workers=max_workers)
    healthy = [b for b in live if health[b.id].reachable]
    found = {}
    if healthy and (with_models or with_version):

        def ask(backend: Backend, left: float) -> Tuple[Any, Optional[str]]:
            listing = _listing(backend) if with_models else None
            version = server_version(backend) if with_version else None
            return listing, version

        budget = max(b.request_timeout + b.health_timeout for b in healthy)
        answers = fan_out(ask, healthy, timeout=budget, max_workers=max_workers)
        found = {b.id: answer for b, answer in zip(healthy, answers)}
    results = []
    for backend in backends:
        if isinstance(backend, ScanResult):
            results.append(backend)
            continue
        result = ScanResult(backend.kind, backend.id, backend.url, health[backend.id])
        answer = found.get(backend.id)
        listing, result.version = answer if answer is not None else (None, None)
        if isinstance(listing, list):
            result.models = listing
        elif isinstance(listing, BackendError):
            result.error = listing.message
        elif answer is None and backend in healthy and with_models:
            result.error = "the model listing did not finish"
        results.append(result)
    return results
