"""The backend layer: six inference servers behind one blocking API.

Quick start::

    from provider_agent.backend import Job, LlamaCppBackend

    with LlamaCppBackend("http://127.0.0.1:8080") as backend:
        print(backend.health(), backend.list_models())
        job = Job.new("any", {"messages": [{"role": "user", "content": "Hi"}]})
        with backend.execute(job) as stream:
            for chunk in stream:      # the upstream SSE bytes, as they arrive
                print(chunk.decode(errors="replace"), end="")
        print(stream.result)          # tokens (advisory), timings, finish reason
        print(backend.complete(job).text)  # or just the reply's text

``BACKENDS`` maps each kind to its class; ``create_backend`` builds one by name.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Optional, Type

from .base import Backend
from .data import BackendHealth, BackendModel, Job, JobResult, Reply, WireFormat
from .errors import (
    BackendError,
    BackendTimeoutError,
    BadStatusError,
    JobCancelledError,
    MissingApiKeyError,
    ModelNotFoundError,
    ProtocolError,
    StreamError,
    TransportError,
    UnreachableError,
    UnsupportedWireFormatError,
)
from .llamacpp import LlamaCppBackend
from .lmstudio import LmStudioBackend
from .ollama import OllamaBackend
from .openrouter import OpenRouterBackend
from .remote import RemoteBackend
from .sink import CallbackSink, JobSink
from .stream import JobStream
from .text import TextDelta
from .venice import VeniceBackend
from .vllm import VllmBackend

__all__ = [
    "BACKENDS",
    "Backend",
    "BackendError",
    "BackendHealth",
    "BackendModel",
    "BackendTimeoutError",
    "BadStatusError",
    "CallbackSink",
    "Job",
    "JobCancelledError",
    "JobResult",
    "JobSink",
    "JobStream",
    "LlamaCppBackend",
    "LmStudioBackend",
    "MissingApiKeyError",
    "ModelNotFoundError",
    "OllamaBackend",
    "OpenRouterBackend",
    "ProtocolError",
    "RemoteBackend",
    "Reply",
    "StreamError",
    "TextDelta",
    "TransportError",
    "UnreachableError",
    "UnsupportedWireFormatError",
    "VeniceBackend",
    "VllmBackend",
    "WireFormat",
    "create_backend",
]

#: Every backend kind and the class that speaks to it.
BACKENDS: Dict[str, Type[Backend]] = {
    "vllm": VllmBackend,
    "llamacpp": LlamaCppBackend,
    "lmstudio": LmStudioBackend,
    "ollama": OllamaBackend,
    "openrouter": OpenRouterBackend,
    "venice": VeniceBackend,
}


def create_backend(
    kind: str,
    url: Optional[str] = None,
    api_key: Optional[str] = None,
    api_key_env: Optional[str] = None,
    **options: Any,
) -> Backend:
    """Build a backend by kind.

    ``url`` is the server's base URL (the API base URL for remote kinds); the key is
    ``api_key``, else read from ``api_key_env``, else (remote kinds) from the kind's
    usual variable. Raises ``ValueError`` for an unknown kind, listing the valid ones,
    and ``MissingApiKeyError`` when a named variable, or a needed key, is missing.
    """
    try:
        cls = BACKENDS[kind]
    except KeyError:
        valid = ", ".join(sorted(BACKENDS))
        raise ValueError(
            f"unknown backend kind {kind!r}; valid kinds: {valid}"
        ) from None
    if api_key is None and (api_key_env or cls.needs_key):
        name = api_key_env or cls.key_env_var or ""
        api_key = os.environ.get(name, "").strip() or None
        if api_key is None:
            raise MissingApiKeyError(
                kind, f"environment variable {name} is unset or blank"
            )
    if issubclass(cls, RemoteBackend):
        return cls(api_key or "", base_url=url, **options)
    if cls is OllamaBackend:
        return cls(url, **options)
    return cls(url, api_key, **options)
