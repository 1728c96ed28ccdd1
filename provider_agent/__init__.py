"""provider_agent: one blocking API over local and remote LLM inference backends.

The backend layer lives in ``provider_agent.backend`` (one server); the fleet layer
in ``provider_agent.fleet`` (many servers behind one object, from an ``agent.toml``);
the ``provider-agent`` command (``provider_agent.cli``) fronts both. The names below
are importable from here; each is loaded on first use, so ``import provider_agent``
(or ``provider_agent.backend``) pays for neither layer it does not use, imports no
click and starts no thread.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any, List

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "AllBackendsFailedError",
    "Backend",
    "BackendError",
    "BackendHealth",
    "BackendModel",
    "BackendStatus",
    "CapacityStore",
    "Config",
    "ConfigError",
    "Discovery",
    "Fleet",
    "FleetError",
    "HealthMonitor",
    "Job",
    "JobResult",
    "JobStream",
    "Member",
    "ModelNotLoadedError",
    "OutOfCapacityError",
    "Reply",
    "WireFormat",
    "__version__",
    "create_backend",
    "discover",
    "error_code",
    "load_config",
    "poll_health",
]

_BACKEND_NAMES = frozenset(
    {
        "Backend",
        "BackendError",
        "BackendHealth",
        "BackendModel",
        "Job",
        "JobResult",
        "JobStream",
        "Reply",
        "WireFormat",
        "create_backend",
    }
)

if TYPE_CHECKING:
    from .backend import (
        Backend,
        BackendError,
        BackendHealth,
        BackendModel,
        Job,
        JobResult,
        JobStream,
        Reply,
        WireFormat,
        create_backend,
    )
    from .fleet import (
        AllBackendsFailedError,
        BackendStatus,
        CapacityStore,
        Config,
        ConfigError,
        Discovery,
        Fleet,
        FleetError,
        HealthMonitor,
        Member,
        ModelNotLoadedError,
        OutOfCapacityError,
        discover,
        error_code,
        load_config,
        poll_health,
    )


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    layer = ".backend" if name in _BACKEND_NAMES else ".fleet"
    value = getattr(importlib.import_module(layer, __name__), name)
    globals()[name] = value  # found once; later lookups skip this function
    return value


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(__all__))
