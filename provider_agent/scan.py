"""Probe many backends at once: health, then the models of the healthy ones.

Both rounds run on the fleet's poll (``provider_agent.fleet.health``): every probe
at once, so a scan takes about one probe timeout whatever the number of backends.
``health()`` never raises for network trouble, so one dead backend cannot sink the
scan; a failed model listing is kept as that backend's ``error``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Optional, Sequence
from urllib.parse import urlsplit

from dataclasses_json import DataClassJsonMixin

from .backend import BACKENDS, Backend, BackendHealth, BackendModel
from .fleet.health import list_all_models, poll_health

__all__ = ["ScanResult", "local_backends", "scan"]


@dataclass
class ScanResult(DataClassJsonMixin):
    """What one backend said when probed."""

    kind: str
    id: str
    url: str
    health: BackendHealth
    models: List[BackendModel] = field(default_factory=list)
    error: Optional[str] = None


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
    backends: Sequence[Backend],
    *,
    with_models: bool = True,
    max_workers: Optional[int] = None,
) -> List[ScanResult]:
    """Probe every backend concurrently; results come back in the given order."""
    health = poll_health(backends, max_workers=max_workers)
    healthy = [b for b in backends if health[b.id].reachable]
    listings = list_all_models(healthy, max_workers=max_workers) if with_models else {}
    results = []
    for backend in backends:
        result = ScanResult(backend.kind, backend.id, backend.url, health[backend.id])
        listing = listings.get(backend.id)
        if isinstance(listing, list):
            result.models = listing
        elif listing is not None:
            result.error = listing.message
        results.append(result)
    return results
