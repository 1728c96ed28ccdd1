"""An API key that never shows itself, and the scrubbing of what a server echoes.

A server may quote the key back (an error body, an in-band error event, a broken
chunk header); whatever text leaves the package passes through ``redact`` or
``scrub`` first, so the key appears in no message, body or log line.
"""

from __future__ import annotations

from typing import Any, Optional, Tuple, TypeVar

from .errors import BackendError

REDACTED = "<redacted>"

E = TypeVar("E", bound=BackendError)


class Secret:
    """Holds a key; its repr and str are ``<redacted>``."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return REDACTED

    __str__ = __repr__

    def __reduce__(self) -> Tuple[Any, ...]:
        raise TypeError("an API key is not pickled")


def redact(text: Optional[str], secret: Optional[Secret]) -> Optional[str]:
    """``text`` with every occurrence of the secret replaced."""
    if text and secret is not None and secret.reveal() in text:
        return text.replace(secret.reveal(), REDACTED)
    return text


def scrub(error: E, secret: Optional[Secret]) -> E:
    """Redact the secret from every text the error carries, in place."""
    if secret is None:
        return error
    for name, value in list(vars(error).items()):
        if isinstance(value, str):
            setattr(error, name, redact(value, secret))
    error.args = tuple(
        redact(arg, secret) if isinstance(arg, str) else arg for arg in error.args
    )
    return error


def mentions(exc: BaseException, secret: Optional[Secret]) -> bool:
    """Whether ``exc`` or anything chained to it quotes the secret."""
    if secret is None:
        return False
    value = secret.reveal()
    seen = set()
    current: Optional[BaseException] = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if value in str(current) or value in repr(current.args):
            return True
        current = current.__cause__ or current.__context__
    return False
