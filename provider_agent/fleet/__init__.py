"""The fleet layer: many backends behind one object.

``config`` reads ``agent.toml``; ``health`` probes many backends at once and
``monitor`` keeps their latest health on a background thread; ``discovery`` turns
that into the capabilities message; ``routing`` (pure functions) picks a backend for
a job; ``capacity`` counts what runs; ``fleet`` puts them together in ``Fleet``;
``codes`` gives every error its job error code. The fleet imports the backend layer
(``provider_agent.backend``), never the reverse.
"""

from __future__ import annotations

from .capacity import CapacityStore, LocalCapacity
from .codes import CODES, error_code
from .config import (
    BackendConfig,
    Config,
    ConfigError,
    LimitsConfig,
    ModelPrice,
    PricingConfig,
    load_config,
)
from .discovery import DiscoveredModel, Discovery, discover
from .errors import (
    AllBackendsFailedError,
    FleetError,
    ModelNotLoadedError,
    OutOfCapacityError,
)
from .fleet import Fleet
from .health import list_all_models, poll_health
from .member import Member
from .monitor import BackendStatus, HealthMonitor
from .routing import KIND_PRIORITY

__all__ = [
    "AllBackendsFailedError",
    "BackendConfig",
    "BackendStatus",
    "CODES",
    "CapacityStore",
    "Config",
    "ConfigError",
    "DiscoveredModel",
    "Discovery",
    "Fleet",
    "FleetError",
    "HealthMonitor",
    "KIND_PRIORITY",
    "LimitsConfig",
    "LocalCapacity",
    "Member",
    "ModelNotLoadedError",
    "ModelPrice",
    "OutOfCapacityError",
    "PricingConfig",
    "discover",
    "error_code",
    "list_all_models",
    "load_config",
    "poll_health",
]
