"""Any registered backend against a scripted server: how to build it, and
where it sends what. Remote kinds get a key and the ``/api/v1`` base path."""

from __future__ import annotations

from typing import Any, List

from provider_agent.backend import BACKENDS, Backend, RemoteBackend


def _prefix(kind: str) -> str:
    return "/api/v1" if issubclass(BACKENDS[kind], RemoteBackend) else ""


def make_backend(kind: str, url: str, **options: Any) -> Backend:
    cls = BACKENDS[kind]
    if issubclass(cls, RemoteBackend):
        return cls("sk-test", base_url=url + "/api/v1", **options)
    return cls(url, **options)


def chat_path(kind: str) -> str:
    return _prefix(kind) + BACKENDS[kind].chat_path


def listing_paths(kind: str) -> List[str]:
    """Every path list_models may try (LM Studio falls back through three)."""
    if kind == "lmstudio":
        return ["/api/v1/models", "/api/v0/models", "/v1/models"]
    return [_prefix(kind) + BACKENDS[kind].models_path]


def health_path(kind: str) -> str:
    return _prefix(kind) + BACKENDS[kind].health_path
