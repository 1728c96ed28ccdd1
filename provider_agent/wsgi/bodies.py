"""A request's body as a ``Job``, or the reply that refuses it.

The gateway and a hand-written view check a body the same way: JSON, an object,
a ``"model"`` string, ``"stream": true``. A body that fails raises
``RequestError``, whose ``reply`` is the 400 in the client's format.
"""

from __future__ import annotations

import json

from ..backend import Job, WireFormat
from ..backend.data import DEFAULT_DEADLINE_MS
from .replies import ErrorReply, gateway_error

__all__ = ["RequestError", "job_from_body"]


class RequestError(Exception):
    """A request the gateway answers itself: ``reply`` is that answer."""

    def __init__(self, reply: ErrorReply) -> None:
        super().__init__(reply.message)
        self.reply = reply


def job_from_body(
    raw: bytes, wire_format: WireFormat, *, deadline_ms: int = DEFAULT_DEADLINE_MS
) -> Job:
    """The job a request body asks for, in ``wire_format``; raises
    ``RequestError`` (a 400 saying what is wrong) for a body that is not a JSON
    object with a ``"model"`` string and ``"stream": true``."""

    def bad(message: str, code: str = "invalid_request") -> RequestError:
        return RequestError(gateway_error(400, message, wire_format, code=code))

    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise bad(f"the request body is not JSON: {exc}", "invalid_json") from None
    except RecursionError:
        raise bad("the request body is nested too deeply", "invalid_json") from None
    if not isinstance(body, dict):
        raise bad("the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise bad('"model" must be a non-empty string')
    if body.get("stream") is not True:
        raise bad(
            'this gateway streams every reply: set "stream": true '
            "(the SDKs: stream=True)",
            "stream_required",
        )
    return Job.new(model, body, wire_format, deadline_ms=deadline_ms)
