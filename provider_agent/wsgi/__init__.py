"""The web layer: a ``Fleet`` behind OpenAI- and Anthropic-compatible routes.

``Gateway`` is a plain WSGI application (any WSGI server runs it; Flask and Django
apps can dispatch to it); ``job_from_body`` checks a request body as the gateway
does; ``StreamBody`` relays a job's stream as a WSGI body, for
a hand-written view; ``error_reply`` and ``error_event`` turn the package's errors
into the statuses, bodies and SSE events the official SDKs understand; ``serve``
runs a gateway under waitress (``pip install 'provider-agent[serve]'``). For a
server that takes an application factory: ``gunicorn 'provider_agent.wsgi:make_app()'``.
"""

from __future__ import annotations

from .app import DEFAULT_MAX_BODY_BYTES, STREAM_HEADERS, Gateway, make_app
from .bodies import RequestError, job_from_body
from .relay import StreamBody
from .replies import (
    STATUS_BY_CODE,
    ErrorReply,
    error_event,
    error_reply,
    gateway_error,
    status_of,
)
from .serve import MissingExtraError, is_loopback, make_server, serve

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "STATUS_BY_CODE",
    "STREAM_HEADERS",
    "ErrorReply",
    "Gateway",
    "MissingExtraError",
    "RequestError",
    "StreamBody",
    "error_event",
    "error_reply",
    "gateway_error",
    "is_loopback",
    "job_from_body",
    "make_app",
    "make_server",
    "serve",
    "status_of",
]
