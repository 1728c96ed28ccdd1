"""Discovery: what the fleet serves now, as the coordinator's capabilities message.

``discover(config)`` probes every configured backend concurrently, lists the models
of the healthy ones concurrently, keeps each backend's allow-list, resolves prices
(a model whose resolved price is zero is dropped) and lists each model once, under
the highest-priority kind that serves it. An unreachable backend is left out and
logged, never fatal: with none healthy the message is still valid, with no models.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from .. import __version__
from .config import Config, PricingConfig, load_config
from .member import Member, members_from_config
from .monitor import BackendStatus, HealthMonitor
from .routing import kind_rank

__all__ = ["DiscoveredModel", "Discovery", "build_discovery", "discover"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DiscoveredModel:
    """One model as the capabilities message lists it.

    ``backend`` is the kind that lists it, ``backend_id`` that backend;
    ``max_concurrent`` how many of its jobs the fleet could run at once;
    ``context_window`` that backend's window (the smallest another serving
    backend reports, where it reports none).
    """

    model_id: str
    input_per_1m: Optional[int]
    output_per_1m: Optional[int]
    max_concurrent: int
    backend: str
    backend_id: str
    context_window: Optional[int]

    def to_message(self) -> Dict[str, Any]:
        entry: Dict[str, Any] = {
            "model_id": self.model_id,
            "input_per_1m": self.input_per_1m,
            "output_per_1m": self.output_per_1m,
            "max_concurrent": self.max_concurrent,
            "backend": self.backend,
        }
        if self.context_window is not None:
            entry["context_window"] = self.context_window
        return entry


@dataclass(frozen=True)
class Discovery:
    """The outcome of one discovery: the models, and each backend's status."""

    models: Tuple[DiscoveredModel, ...]
    statuses: Mapping[str, BackendStatus]
    max_concurrent_total: int
    max_tokens_per_minute: Optional[int] = None

    @property
    def healthy(self) -> List[str]:
        """The ids of the backends that answered their probe."""
        return [i for i, s in self.statuses.items() if s.up]

    def to_capabilities(self) -> Dict[str, Any]:
        """The capabilities message, exactly as the original agent sends it."""
        return {
            "type": "capabilities",
            "models": [m.to_message() for m in self.models],
            "limits": {
                "max_concurrent_total": self.max_concurrent_total,
                "max_tokens_per_minute": self.max_tokens_per_minute,
            },
            "metadata": {"agent_version": __version__},
        }


def build_discovery(
    members: Sequence[Member],
    statuses: Mapping[str, BackendStatus],
    *,
    pricing: Optional[PricingConfig],
    max_concurrent: int,
    max_tokens_per_minute: Optional[int] = None,
) -> Discovery:
    """The discovery that ``statuses`` show for ``members``: a pure function."""
    offers: Dict[str, List[Tuple[Member, Optional[int]]]] = {}
    for member in members:
        status = statuses.get(member.id)
        if status is None or not status.up or status.models is None:
            continue
        allowed = member.serves(status)
        for model in status.models:
            if model.model_id in allowed:
                offers.setdefault(model.model_id, []).append(
                    (member, model.context_window)
                )
    models = []
    for model_id in sorted(offers):
        price = pricing.resolve(model_id) if pricing is not None else None
        if price is not None and price.is_zero:
            log.info("model %r left out: its price resolves to zero", model_id)
            continue
        serving = sorted(offers[model_id], key=lambda o: kind_rank(o[0].backend.kind))
        lister, window = serving[0]
        if window is None:
            known = [w for _, w in serving if w is not None]
            window = min(known) if known else None
        slots = sum(m.max_concurrent or max_concurrent for m, _ in serving)
        models.append(
            DiscoveredModel(
                model_id,
                price.input_per_1m if price else None,
                price.output_per_1m if price else None,
                min(max_concurrent, slots),
                lister.backend.kind,
                lister.id,
                window,
            )
        )
    return Discovery(
        tuple(models), dict(statuses), max_concurrent, max_tokens_per_minute
    )


def discover(config: Union[Config, str, os.PathLike[str]]) -> Discovery:
    """Discover what the configured backends serve now (see the module docstring).

    ``config`` is a ``Config`` or the path of an ``agent.toml``. Raises
    ``ConfigError`` for a config that cannot be used; never for a backend.
    """
    if not isinstance(config, Config):
        config = load_config(config)
    members = members_from_config(config)
    try:
        statuses = HealthMonitor([m.backend for m in members]).refresh()
        for backend_id, status in statuses.items():
            if not status.up:
                log.warning("%s left out: %s", backend_id, status.health.last_error)
        return build_discovery(
            members,
            statuses,
            pricing=config.pricing,
            max_concurrent=config.limits.max_concurrent,
            max_tokens_per_minute=config.limits.max_tokens_per_minute,
        )
    finally:
        for member in members:
            member.backend.close()
