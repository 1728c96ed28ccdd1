"""Checking a config against the servers it names: ``provider-agent config
validate --probe``.

Every backend is built (its key read) and probed at once; no job runs. Each
problem is one line ``<source>: <place>: <what is wrong>``, as the config's own
problems are.
"""

from __future__ import annotations

from typing import List

from ..backend import Backend, MissingApiKeyError
from ..fleet.config import BackendConfig, Config
from ..fleet.health import poll_health

__all__ = ["probe_problems"]


def probe_problems(config: Config) -> List[str]:
    """What keeps the config's backends from being used now: a key variable
    unset, a setting a backend refuses, a backend that does not answer."""
    problems = []
    built: List[tuple[BackendConfig, Backend]] = []
    for entry in config.backends:
        try:
            built.append((entry, entry.build()))
        except MissingApiKeyError as exc:
            field = "api_key_env" if entry.api_key_env else "kind"
            problems.append(f"{config.source}: {entry.place}.{field}: {exc.message}")
        except (TypeError, ValueError) as exc:
            problems.append(f"{config.source}: {entry.place}: {exc}")
    try:
        health = poll_health([backend for _, backend in built])
        for entry, backend in built:
            result = health[backend.id]
            if not result.reachable:
                field = "url" if entry.url else "kind"
                problems.append(
                    f"{config.source}: {entry.place}.{field}: "
                    f"{backend.url} does not answer: {result.last_error}"
                )
    finally:
        for _, backend in built:
            backend.close()
    return problems
