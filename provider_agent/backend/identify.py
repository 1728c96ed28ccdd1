"""Telling which kind of local server listens at a URL, where it says so itself.

For a bare URL (``provider-agent scan --backend http://host:port``). Only
positive signs count (see ``_identity``): llama-server's ``Server: llama.cpp``
header, vLLM's empty ``/health`` from uvicorn, LM Studio's "Unexpected endpoint"
reply, Ollama's ``Ollama is running`` at ``/``, and a model listing whose every
card names its owner. A server that says nothing is not guessed at.
"""

from __future__ import annotations

import time
from typing import Optional

from ._identity import server_kind
from .errors import BackendError
from .llamacpp import LlamaCppBackend

__all__ = ["detect_kind"]

_BODY_LIMIT = 64 * 1024
#: The probes, in order: the first reply that shows a kind decides.
_PATHS = ("/health", "/", "/v1/models")


def detect_kind(url: str, timeout: float = 2.0) -> Optional[str]:
    """The kind of local server at ``url`` (``"llamacpp"``, ``"vllm"``,
    ``"lmstudio"`` or ``"ollama"``), or None when nothing there says. ``timeout``
    (s) bounds all the probes together. Raises ``ValueError`` for a URL that is
    not http(s), and the ``BackendError`` of the first probe when nothing
    answers it (``UnreachableError``, ``BackendTimeoutError``)."""
    deadline = time.monotonic() + timeout
    # Any local kind's transport will do: it only carries the GETs.
    with LlamaCppBackend(url) as probe:
        for path in _PATHS:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                status, body, _, headers = probe._fetch("GET", path, left, _BODY_LIMIT)
            except BackendError:
                if path == _PATHS[0]:
                    raise  # nothing answers there at all
                return None
            if path == "/" and body.startswith(b"Ollama is running"):
                return "ollama"
            kind = server_kind(status, headers, body)
            if kind is not None:
                return kind
    return None
