"""Probe many backends at once: health, then models, on a thread pool.

``health()`` never raises for network trouble, so one dead backend cannot sink the
scan; a failed model listing is kept as that backend's ``error``.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, List, Optional, Sequence
from urllib.parse import urlsplit

from dataclasses_json import DataClassJsonMixin

from .backend import BACKENDS, Backend, BackendError, BackendHealth, BackendModel

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


def _probe(backend: Backend, with_models: bool) -> ScanResult:
    health = backend.health()
    result = ScanResult(backend.kind, backend.id, backend.url, health)
    if health.reachable and with_models:
        try:
            result.models = backend.list_models()
        except BackendError as exc:
            result.error = exc.message
    return result


def scan(
    backends: Sequence[Backend],
    *,
    with_models: bool = True,
    max_workers: Optional[int] = None,
) -> List[ScanResult]:
    """Probe every backend concurrently; results come back in the given order."""
    if not backends:
        return []
    workers = max_workers or min(len(backends), 16)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="scan") as pool:
        return list(pool.map(lambda b: _probe(b, with_models), backends))
