"""``Member``: a backend in a fleet, with what the operator says of it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import FrozenSet, List, Optional

from ..backend import Backend
from .config import Config
from .monitor import BackendStatus

__all__ = ["Member"]


@dataclass(frozen=True)
class Member:
    """``backend`` with its allow-list of model ids (None: every model it
    lists) and its own ``max_concurrent`` (None: only the fleet's limit)."""

    backend: Backend
    models: Optional[FrozenSet[str]] = None
    max_concurrent: Optional[int] = None

    def __post_init__(self) -> None:
        limit = self.max_concurrent
        if limit is not None and (
            not isinstance(limit, int) or isinstance(limit, bool) or limit < 1
        ):
            raise ValueError(f"{self.backend.id}: max_concurrent must be an int >= 1")

    @property
    def id(self) -> str:
        return self.backend.id

    def serves(self, status: Optional[BackendStatus]) -> FrozenSet[str]:
        """The models a job may be sent here for: its latest listing within
        the allow-list; the allow-list alone before any listing succeeded."""
        if status is None:
            return self.models or frozenset()
        if status.models is None:
            return (self.models or frozenset()) - status.missing
        listed = status.model_ids
        return listed if self.models is None else listed & self.models


def members_from_config(config: Config) -> List[Member]:
    """A member for each backend the config names and can build (one whose key
    variable is unset is left out, with a warning)."""
    return [
        Member(
            backend,
            frozenset(entry.models) if entry.models is not None else None,
            entry.max_concurrent,
        )
        for entry, backend in config.build_backends()
    ]
