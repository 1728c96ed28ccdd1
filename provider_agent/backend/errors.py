"""Errors raised at the backend boundary.

Every error names the backend it came from (``error.backend``, the backend's ``id``)
and starts its message with it. Nothing from ``requests`` or ``urllib3`` escapes the
package: transport failures are translated in one place (``_transport.translate``) and
chained with ``raise ... from``.

The tree::

    BackendError
    ├── UnreachableError            refused, unknown host, connect timeout
    ├── BadStatusError              a non-2xx reply (.status, .body truncated)
    │   └── ModelNotFoundError      404 or the backend's "no such model" (.model_id)
    ├── MissingApiKeyError          no key where the backend needs one
    ├── BackendTimeoutError         deadline or idle read (also a TimeoutError)
    ├── TransportError              any other network failure before the stream
    ├── ProtocolError               a reply that cannot be understood (JSON, HTML)
    ├── UnsupportedWireFormatError  the backend does not speak the job's format
    ├── JobCancelledError           the job was cancelled
    └── StreamError                 the stream failed after bytes were relayed
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple, Type

__all__ = [
    "BackendError",
    "UnreachableError",
    "BadStatusError",
    "ModelNotFoundError",
    "MissingApiKeyError",
    "BackendTimeoutError",
    "TransportError",
    "ProtocolError",
    "UnsupportedWireFormatError",
    "JobCancelledError",
    "StreamError",
]

#: How much of an error body an exception keeps.
MAX_ERROR_BODY = 4096


class BackendError(Exception):
    """Base class of every error raised by a backend."""

    def __init__(self, backend: str, message: str) -> None:
        super().__init__(f"{backend}: {message}")
        self.backend = backend
        self.message = message

    def __reduce__(self) -> Tuple[Any, ...]:
        # Subclasses take different arguments; rebuild from the state instead,
        # so errors cross process boundaries (multiprocessing, pickle).
        return (_rebuild, (type(self), self.args, self.__dict__.copy()))


def _rebuild(
    cls: Type[BackendError], args: Tuple[Any, ...], state: Dict[str, Any]
) -> BackendError:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


class UnreachableError(BackendError):
    """The backend could not be reached: refused, unknown host, connect timeout."""


class BadStatusError(BackendError):
    """The backend answered with a status that is not a success.

    ``status`` is the HTTP status; ``body`` the start of the reply, decoded leniently
    and cut to ``MAX_ERROR_BODY`` characters.
    """

    def __init__(
        self, backend: str, status: int, body: str = "", message: Optional[str] = None
    ) -> None:
        self.status = status
        self.body = body[:MAX_ERROR_BODY]
        super().__init__(backend, message or f"HTTP {status}")


class ModelNotFoundError(BadStatusError):
    """The backend does not serve the requested model."""

    def __init__(
        self,
        backend: str,
        model_id: str,
        status: int = 404,
        body: str = "",
        message: Optional[str] = None,
    ) -> None:
        self.model_id = model_id
        super().__init__(
            backend, status, body, message or f"model {model_id!r} not found"
        )


class MissingApiKeyError(BackendError):
    """The backend needs an API key and none was given."""


class BackendTimeoutError(BackendError, TimeoutError):
    """The job's deadline passed, or the backend went silent for too long."""


class TransportError(BackendError):
    """The connection failed in a way not covered by a more specific error."""


class ProtocolError(BackendError):
    """The backend's reply could not be understood (the trait's serialisation error)."""

    def __init__(self, backend: str, message: str, body: str = "") -> None:
        self.body = body[:MAX_ERROR_BODY]
        super().__init__(backend, message)


class UnsupportedWireFormatError(BackendError):
    """The job's wire format is not one this backend speaks natively."""


class JobCancelledError(BackendError):
    """The job was cancelled while it ran."""


class StreamError(BackendError):
    """The stream failed after some of it was relayed.

    Raised once every byte read before the failure has been handed over: for an
    in-band error event, or when the upstream closes before the stream's terminator.
    ``bytes_relayed`` counts what the caller already has; ``in_band`` is true when
    the upstream's own error event is among those bytes (a relay need not add one).
    """

    def __init__(
        self,
        backend: str,
        message: str,
        bytes_relayed: int = 0,
        *,
        in_band: bool = False,
    ) -> None:
        self.bytes_relayed = bytes_relayed
        self.in_band = in_band
        super().__init__(backend, message)
