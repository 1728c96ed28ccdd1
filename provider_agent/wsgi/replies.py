"""Errors as HTTP replies and SSE events, in the wire format of the client's request.

A client of the gateway (or of a hand-written view) uses the official OpenAI or
Anthropic SDK, which raises its usual classes only for the status and error body
it knows. This module is the one table from the package's errors to those:

==============================  ======  =============================================
error (``error_code``)          status  notes
==============================  ======  =============================================
``model_not_loaded``            404     no backend serves the model
``out_of_capacity``             429     with ``Retry-After``
``backend_unreachable``         503     every backend tried was down
``backend_timeout``             504     the job's deadline passed
``unsupported_format``          400     no backend serving the model speaks it
``cancelled``                   503     the server is shutting down
an upstream 4xx                 same    about the request: its status and message
anything else                   502     another upstream status, a bad reply, a bug
==============================  ======  =============================================

Every error reply also says its code in the ``X-Provider-Agent-Error`` header.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from ..backend import BadStatusError, ModelNotFoundError, WireFormat
from ..fleet.codes import error_code
from ..fleet.errors import OutOfCapacityError

__all__ = [
    "ErrorReply",
    "STATUS_BY_CODE",
    "error_event",
    "error_reply",
    "gateway_error",
    "status_line",
    "status_of",
]

#: The HTTP status of each job error code, for an error before the first byte.
STATUS_BY_CODE: Dict[str, int] = {
    "model_not_loaded": 404,
    "out_of_capacity": 429,
    "backend_unreachable": 503,
    "backend_timeout": 504,
    "unsupported_format": 400,
    "cancelled": 503,
}

#: Upstream statuses that are the gateway's trouble, not the request's.
_NOT_THE_REQUESTS = frozenset({401, 403, 429})

_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}

_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    504: "timeout_error",
}


@dataclass(frozen=True)
class ErrorReply:
    """An error as an HTTP reply: ``status``, ``headers`` (no Content-Length,
    which a framework or WSGI server sets) and the JSON ``body``."""

    status: int
    code: str
    message: str
    body: bytes
    headers: List[Tuple[str, str]]

    @property
    def status_line(self) -> str:
        return status_line(self.status)


def status_line(status: int) -> str:
    """``"404 Not Found"``: a WSGI status line."""
    return f"{status} {_REASONS.get(status, 'Error')}"


def status_of(exc: BaseException) -> int:
    """The HTTP status a client should get for ``exc``, raised before the first
    byte of a reply (see the table above)."""
    if _about_the_request(exc):
        assert isinstance(exc, BadStatusError)
        return exc.status
    return STATUS_BY_CODE.get(error_code(exc), 502)


def error_reply(exc: BaseException, wire_format: WireFormat) -> ErrorReply:
    """The reply for ``exc`` in ``wire_format``'s error shape."""
    status = status_of(exc)
    if _about_the_request(exc):
        assert isinstance(exc, BadStatusError)
        message = _upstream_message(exc) or str(exc)
    else:
        message = str(exc)
    headers = []
    if status == 429:
        retry = exc.retry_after if isinstance(exc, OutOfCapacityError) else None
        headers.append(("Retry-After", str(max(1, math.ceil(retry or 1)))))
    return gateway_error(
        status, message, wire_format, code=error_code(exc), headers=headers
    )


def gateway_error(
    status: int,
    message: str,
    wire_format: WireFormat,
    *,
    code: str,
    headers: Optional[List[Tuple[str, str]]] = None,
) -> ErrorReply:
    """A reply of the gateway's own (a bad body, a missing token) with ``status``
    and ``message``, in ``wire_format``'s error shape; ``code`` goes in the
    OpenAI body and the ``X-Provider-Agent-Error`` header."""
    body = json.dumps(_error_object(status, message, wire_format, code)).encode()
    all_headers = [
        ("Content-Type", "application/json"),
        ("X-Provider-Agent-Error", code),
    ]
    return ErrorReply(status, code, message, body, all_headers + list(headers or []))


def error_event(exc: BaseException, wire_format: WireFormat) -> bytes:
    """An SSE event that ends a stream which failed after its first byte, in
    the shape the client's SDK raises on: OpenAI's ``data: {"error": ...}``,
    Anthropic's ``event: error``."""
    status = 502 if _about_the_request(exc) else status_of(exc)
    payload = json.dumps(
        _error_object(status, str(exc), wire_format, error_code(exc)),
        separators=(",", ":"),
    )
    if wire_format is WireFormat.ANTHROPIC:
        return f"event: error\ndata: {payload}\n\n".encode()
    return f"data: {payload}\n\n".encode()


def _error_object(
    status: int, message: str, wire_format: WireFormat, code: str
) -> Dict[str, Any]:
    if wire_format is WireFormat.ANTHROPIC:
        kind = _ANTHROPIC_TYPES.get(status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": message}}
    if status == 401:
        kind = "authentication_error"
    elif status == 429:
        kind = "rate_limit_error"
    elif status >= 500:
        kind = "server_error"
    else:
        kind = "invalid_request_error"
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _about_the_request(exc: BaseException) -> bool:
    """An upstream 4xx that says the request was wrong (not a missing model,
    nor the gateway's own key or capacity): the client should see it as is."""
    return (
        isinstance(exc, BadStatusError)
        and not isinstance(exc, ModelNotFoundError)
        and 400 <= exc.status < 500
        and exc.status not in _NOT_THE_REQUESTS
    )


def _upstream_message(exc: BadStatusError) -> Optional[str]:
    """The message in an upstream error body (``{"error": {"message": ...}}``,
    ``{"error": "..."}``, ``{"message": ...}`` or ``{"detail": ...}``)."""
    try:
        body = json.loads(exc.body)
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    error = body.get("error")
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])
    for value in (error, body.get("message"), body.get("detail")):
        if isinstance(value, str) and value:
            return value
    return None
