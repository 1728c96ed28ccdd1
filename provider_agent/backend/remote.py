"""``RemoteBackend``: a hosted API reached with the operator's own key.

Its ``id`` is the bare kind, its models are not ``native``, a key is required, and
``from_env`` reads the key from an environment variable. Proxy variables apply.
"""

from __future__ import annotations

import os
from typing import Any, Optional, Type, TypeVar

from .base import Backend
from .errors import MissingApiKeyError

R = TypeVar("R", bound="RemoteBackend")


class RemoteBackend(Backend):
    """A hosted API reached with the operator's own key (``native`` is False)."""

    native = False
    needs_key = True

    def __init__(
        self, api_key: str, base_url: Optional[str] = None, **options: Any
    ) -> None:
        if not isinstance(api_key, str) or not api_key.strip():
            raise MissingApiKeyError(self.kind, "an API key is required")
        super().__init__(base_url, api_key, **options)

    @classmethod
    def from_env(cls: Type[R], env_var: Optional[str] = None, **options: Any) -> R:
        """Build with the key in ``env_var`` (default: the kind's usual variable).

        Raises ``MissingApiKeyError`` when the variable is unset or blank.
        """
        name = env_var or cls.key_env_var
        value = os.environ.get(name or "", "").strip()
        if not value:
            raise MissingApiKeyError(
                cls.kind, f"environment variable {name} is unset or blank"
            )
        return cls(value, **options)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(api_key=<redacted>, base_url={self.url!r})"
