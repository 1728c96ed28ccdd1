"""Asking a server its version, where it has a route that says it.

- llama-server: ``GET /props``, ``build_info`` (``"b6123-abc1234"``);
- vLLM: ``GET /version``, ``{"version": "0.32.0"}``;
- Ollama: ``GET /api/version``, ``{"version": "0.33.0"}``.

LM Studio and the remote APIs have no such route. The question is defensive: a
server that does not answer, answers something else or is of another kind gives
None, never an exception, so a scan cannot fail on it.
"""

from __future__ import annotations

import json
import logging
from typing import Dict, Optional, Tuple

from .base import Backend
from .errors import BackendError

__all__ = ["VERSION_ROUTES", "server_version"]

log = logging.getLogger(__name__)

#: Per kind: the route that says the version, and the key it says it under.
VERSION_ROUTES: Dict[str, Tuple[str, str]] = {
    "llamacpp": ("/props", "build_info"),
    "vllm": ("/version", "version"),
    "ollama": ("/api/version", "version"),
}
#: The most of a reply read: llama-server's ``/props`` carries its chat template.
_BODY_LIMIT = 256 * 1024
_MAX_LENGTH = 64


def server_version(backend: Backend, timeout: Optional[float] = None) -> Optional[str]:
    """The version ``backend``'s server says it runs, or None when it has no
    route for it or does not say. ``timeout`` (s) bounds the question; the
    default is the backend's ``health_timeout``. Never raises ``BackendError``."""
    route = VERSION_ROUTES.get(backend.kind)
    if route is None:
        return None
    path, key = route
    budget = backend.health_timeout if timeout is None else timeout
    try:
        status, body, _, _ = backend._fetch("GET", path, budget, _BODY_LIMIT)
    except BackendError as exc:
        log.debug("%s: no version: %s", backend.id, exc.message)
        return None
    if not 200 <= status < 300:
        return None
    try:
        payload = json.loads(body)
    except ValueError:
        return None
    value = payload.get(key) if isinstance(payload, dict) else None
    if not isinstance(value, str) or not value.strip():
        return None
    return value.strip()[:_MAX_LENGTH]
