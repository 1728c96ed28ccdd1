"""``error_code``: the stable job error code of any exception the package raises.

The codes are the original agent's, plus ours; a coordinator or a web client can
switch on them. A pure function of the exception, table-driven:

=============================  ===================================================
code                           raised for
=============================  ===================================================
``out_of_capacity``            ``OutOfCapacityError``; a backend's HTTP 429
``model_not_loaded``           ``ModelNotLoadedError``; ``ModelNotFoundError``
``backend_unreachable``        ``UnreachableError``, ``TransportError``; HTTP 502
                               and 503; every backend tried failed in different
                               ways
``backend_timeout``            ``BackendTimeoutError``; HTTP 504
``auth_rejected_by_backend``   ``MissingApiKeyError``; HTTP 401 and 403
``unsupported_format``         ``UnsupportedWireFormatError``
``cancelled``                  ``JobCancelledError``
``stream_error``               ``StreamError``
``internal``                   anything else (another status, a reply that cannot
                               be understood, a bad job, a bug)
=============================  ===================================================

``AllBackendsFailedError`` takes the code its attempts share, else
``backend_unreachable``.
"""

from __future__ import annotations

from typing import Dict, Tuple, Type

from ..backend import (
    BackendTimeoutError,
    BadStatusError,
    JobCancelledError,
    MissingApiKeyError,
    ModelNotFoundError,
    StreamError,
    TransportError,
    UnreachableError,
    UnsupportedWireFormatError,
)
from .errors import AllBackendsFailedError, ModelNotLoadedError, OutOfCapacityError

__all__ = ["CODES", "error_code"]

#: Every code ``error_code`` can return.
CODES = (
    "out_of_capacity",
    "model_not_loaded",
    "backend_unreachable",
    "backend_timeout",
    "auth_rejected_by_backend",
    "unsupported_format",
    "cancelled",
    "stream_error",
    "internal",
)

# Most specific first: ModelNotFoundError is a BadStatusError.
_BY_CLASS: Tuple[Tuple[Type[BaseException], str], ...] = (
    (OutOfCapacityError, "out_of_capacity"),
    (ModelNotLoadedError, "model_not_loaded"),
    (ModelNotFoundError, "model_not_loaded"),
    (UnreachableError, "backend_unreachable"),
    (TransportError, "backend_unreachable"),
    (BackendTimeoutError, "backend_timeout"),
    (MissingApiKeyError, "auth_rejected_by_backend"),
    (UnsupportedWireFormatError, "unsupported_format"),
    (JobCancelledError, "cancelled"),
    (StreamError, "stream_error"),
)

_BY_STATUS: Dict[int, str] = {
    401: "auth_rejected_by_backend",
    403: "auth_rejected_by_backend",
    429: "out_of_capacity",
    502: "backend_unreachable",
    503: "backend_unreachable",
    504: "backend_timeout",
}


def error_code(exc: BaseException) -> str:
    """The job error code for ``exc`` (one of ``CODES``)."""
    if isinstance(exc, AllBackendsFailedError):
        codes = {error_code(attempt) for attempt in exc.attempts}
        return codes.pop() if len(codes) == 1 else "backend_unreachable"
    for cls, code in _BY_CLASS:
        if isinstance(exc, cls):
            return code
    if isinstance(exc, BadStatusError):
        return _BY_STATUS.get(exc.status, "internal")
    return "internal"
