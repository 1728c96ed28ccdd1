"""The fleet layer: many backends behind one object.

``config`` reads ``agent.toml``: which backends to build, their prices and limits.
The fleet imports the backend layer (``provider_agent.backend``), never the reverse.
"""

from __future__ import annotations

from .config import (
    BackendConfig,
    Config,
    ConfigError,
    LimitsConfig,
    ModelPrice,
    PricingConfig,
    load_config,
)

__all__ = [
    "BackendConfig",
    "Config",
    "ConfigError",
    "LimitsConfig",
    "ModelPrice",
    "PricingConfig",
    "load_config",
]
