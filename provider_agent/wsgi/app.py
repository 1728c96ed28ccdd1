"""``Gateway``: a WSGI application serving a ``Fleet`` to OpenAI and Anthropic clients.

Routes (relative to where it is mounted)::

    POST /v1/chat/completions   an OpenAI chat request, streamed
    POST /v1/messages           an Anthropic messages request, streamed
    GET  /v1/models             the fleet's models, with their context windows
    GET  /health                the fleet's health; 200 when a backend is up, else 503

A request body becomes a ``Job`` in that route's wire format and runs on the fleet;
the upstream bytes are relayed verbatim as ``text/event-stream``. Errors before the
first byte are statuses and error bodies in the client's format (``replies``);
errors after it end the stream with an error event (``relay``). A body that is not
a JSON object, or is larger than ``max_body_bytes``, is refused before any backend
is touched. With an ``auth_token``, every request must carry it, as
``Authorization: Bearer <token>`` (as both official SDKs send their key) or as
``x-api-key: <token>`` (as older anthropic SDKs and curl users do).
"""

from __future__ import annotations

import functools
import hmac
import json
import logging
import os
import threading
import uuid
from typing import Any, Callable, Dict, Iterable, List, Optional, Set, Union

from ..backend import BackendError, WireFormat
from ..backend._secret import Secret
from ..backend.data import DEFAULT_DEADLINE_MS
from ..fleet import Config, Fleet
from .bodies import RequestError, job_from_body
from .relay import StreamBody
from .replies import ErrorReply, error_reply, gateway_error, status_line, status_of

__all__ = ["DEFAULT_MAX_BODY_BYTES", "STREAM_HEADERS", "Gateway", "make_app"]

log = logging.getLogger("provider_agent.wsgi")

#: The largest request body the gateway reads (8 MiB: a prompt with images).
DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024

StartResponse = Callable[..., Any]
Environ = Dict[str, Any]

_ROUTES = {
    "/v1/chat/completions": ("POST", WireFormat.OPENAI),
    "/v1/messages": ("POST", WireFormat.ANTHROPIC),
    "/v1/models": ("GET", None),
    "/health": ("GET", None),
}

#: The headers of a relayed stream's reply (a hand-written view sends them too).
STREAM_HEADERS = [
    ("Content-Type", "text/event-stream"),
    ("Cache-Control", "no-cache"),
    ("X-Accel-Buffering", "no"),  # nginx: pass each event on at once
]


class Gateway:
    """The WSGI application over ``fleet``.

    ``auth_token``: the token every request must carry (None: no check; then
    serve it on loopback only). ``max_body_bytes``: the largest body read.
    ``deadline_ms``: each job's deadline. ``close_fleet``: close the fleet with
    the gateway.
    """

    def __init__(
        self,
        fleet: Fleet,
        *,
        auth_token: Optional[str] = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        deadline_ms: int = DEFAULT_DEADLINE_MS,
        close_fleet: bool = False,
    ) -> None:
        if auth_token is not None and not auth_token.strip():
            raise ValueError("auth_token must not be empty")
        if max_body_bytes < 1:
            raise ValueError("max_body_bytes must be at least 1")
        if isinstance(deadline_ms, bool) or not isinstance(deadline_ms, int):
            raise TypeError("deadline_ms must be an int")
        if deadline_ms <= 0:
            raise ValueError("deadline_ms must be positive")
        self.fleet = fleet
        self.max_body_bytes = max_body_bytes
        self.deadline_ms = deadline_ms
        # Stripped as a header's value is: a token read from a file may end
        # with a newline, which no request could carry.
        self._token = Secret(auth_token.strip()) if auth_token is not None else None
        self._close_fleet = close_fleet
        # The jobs running through this gateway, from routing to their end.
        self._jobs: Set[uuid.UUID] = set()
        self._jobs_lock = threading.Lock()
        self._stopping = False

    @property
    def requires_auth(self) -> bool:
        return self._token is not None

    def cancel_streams(self) -> None:
        """Cancel every job running through this gateway, at any stage, and
        refuse new ones with a 503 (a server shutting down): a streaming
        client gets a ``cancelled`` error event, each engine stops."""
        with self._jobs_lock:
            self._stopping = True
            running = list(self._jobs)
        for job_id in running:
            self.fleet.cancel(job_id)

    def close(self) -> None:
        """Close the fleet, if the gateway owns it (``close_fleet``)."""
        if self._close_fleet:
            self.fleet.close()

    def __repr__(self) -> str:
        auth = "token required" if self._token is not None else "no token"
        return f"<Gateway over {self.fleet!r}, {auth}>"

    # -- WSGI -----------------------------------------------------------------

    def __call__(
        self, environ: Environ, start_response: StartResponse
    ) -> Iterable[bytes]:
        body = self._answer(environ, start_response)
        if environ.get("REQUEST_METHOD", "GET").upper() == "HEAD":
            return []  # the headers only (waitress does not strip a body)
        return body

    def _answer(
        self, environ: Environ, start_response: StartResponse
    ) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        method = environ.get("REQUEST_METHOD", "GET").upper()
        route = _ROUTES.get(path)
        wire_format = _format_of(path, environ)
        try:
            self._check_token(environ, wire_format)
            if route is None:
                raise RequestError(
                    gateway_error(
                        404, f"no route {path!r}", wire_format, code="not_found"
                    )
                )
            allowed, job_format = route
            if method != allowed and not (method == "HEAD" and allowed == "GET"):
                reply = gateway_error(
                    405,
                    f"{path} takes {allowed}, not {method}",
                    wire_format,
                    code="method_not_allowed",
                    headers=[("Allow", allowed)],
                )
                raise RequestError(reply)
            if job_format is not None:
                return self._job(environ, start_response, job_format)
            if path == "/health":
                return self._health(start_response)
            return self._models(environ, start_response)
        except RequestError as refused:
            return _send(start_response, refused.reply)
        except RuntimeError:
            if not self.fleet.closed:
                raise  # a bug: the server's 500
            # A request racing the server's shutdown.
            return _send(start_response, _shutting_down(wire_format))

    # -- routes ---------------------------------------------------------------

    def _job(
        self, environ: Environ, start_response: StartResponse, wire_format: WireFormat
    ) -> Iterable[bytes]:
        raw = self._read_body(environ, wire_format)
        job = job_from_body(raw, wire_format, deadline_ms=self.deadline_ms)
        with self._jobs_lock:
            if self._stopping:
                raise RequestError(_shutting_down(wire_format))
            self._jobs.add(job.job_id)
        forget = functools.partial(self._forget, job.job_id)
        try:
            stream = self.fleet.execute(job)
        except BackendError as exc:
            forget()
            status = status_of(exc)
            level = logging.WARNING if status >= 500 else logging.INFO
            log.log(level, "job %s (model %r): %s", job.job_id, job.model_id, exc)
            return _send(start_response, error_reply(exc, wire_format))
        except BaseException:
            forget()
            raise
        stream.add_release_callback(forget)
        headers = STREAM_HEADERS + [
            ("X-Provider-Agent-Job", str(job.job_id)),
            ("X-Provider-Agent-Backend", stream.backend_id),
        ]
        body_iter = StreamBody(stream, wire_format)
        try:
            start_response("200 OK", headers)
        except BaseException:
            body_iter.close()
            raise
        return body_iter

    def _forget(self, job_id: uuid.UUID) -> None:
        with self._jobs_lock:
            self._jobs.discard(job_id)

    def _models(
        self, environ: Environ, start_response: StartResponse
    ) -> Iterable[bytes]:
        self.fleet.start()
        models = self.fleet.discovery().models
        if "HTTP_ANTHROPIC_VERSION" in environ:
            data: List[Dict[str, Any]] = [
                {
                    "type": "model",
                    "id": m.model_id,
                    "display_name": m.model_id,
                    "created_at": "1970-01-01T00:00:00Z",
                    "context_window": m.context_window,
                }
                for m in models
            ]
            document: Dict[str, Any] = {
                "data": data,
                "has_more": False,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
            }
        else:
            document = {
                "object": "list",
                "data": [
                    {
                        "id": m.model_id,
                        "object": "model",
                        "created": 0,
                        "owned_by": m.backend,
                        "context_window": m.context_window,
                        "max_concurrent": m.max_concurrent,
                    }
                    for m in models
                ],
            }
        return _send_json(start_response, 200, document)

    def _health(self, start_response: StartResponse) -> Iterable[bytes]:
        fleet = self.fleet
        fleet.start()
        snapshot = fleet.snapshot()
        backends: Dict[str, Any] = {}
        for backend in fleet.backends:
            status = snapshot.get(backend.id)
            backends[backend.id] = {
                "kind": backend.kind,
                "up": status is not None and status.up,
                "latency_ms": status.health.latency_ms if status else None,
                "error": status.health.last_error if status else "not probed yet",
                "checked_at": status.checked_at if status else None,
                "models": len(status.model_ids) if status else 0,
                "in_flight": fleet.in_flight_of(backend.id),
            }
        up = sum(1 for b in backends.values() if b["up"])
        document = {
            "status": "ok" if up else "down",
            "backends_up": up,
            "in_flight": fleet.in_flight,
            "max_concurrent": fleet.max_concurrent,
            "pid": os.getpid(),
            "monitor_running": fleet.monitor.running,
            "backends": backends,
        }
        return _send_json(start_response, 200 if up else 503, document)

    # -- requests -------------------------------------------------------------

    def _check_token(self, environ: Environ, wire_format: WireFormat) -> None:
        if self._token is None:
            return
        given = environ.get("HTTP_AUTHORIZATION", "")
        scheme, _, token = given.partition(" ")
        if scheme.lower() == "bearer" and token:
            candidate = token.strip()
        else:
            candidate = environ.get("HTTP_X_API_KEY", "").strip()
        # Both sides as bytes (compare_digest of str refuses non-ASCII): a WSGI
        # header is the request's bytes read as latin-1; the token is UTF-8.
        if candidate and hmac.compare_digest(
            candidate.encode("latin-1", "replace"),
            self._token.reveal().encode("utf-8", "surrogateescape"),
        ):
            return
        what = "a wrong token" if candidate else "no token"
        raise RequestError(
            gateway_error(
                401,
                f"this gateway needs its token (Authorization: Bearer ...); "
                f"the request carried {what}",
                wire_format,
                code="unauthorized",
                headers=[("WWW-Authenticate", 'Bearer realm="provider-agent"')],
            )
        )

    def _read_body(self, environ: Environ, wire_format: WireFormat) -> bytes:
        limit = self.max_body_bytes
        too_large = RequestError(
            gateway_error(
                413,
                f"the request body is larger than this gateway's limit "
                f"of {limit} bytes",
                wire_format,
                code="body_too_large",
            )
        )
        stream = environ["wsgi.input"]
        length = environ.get("CONTENT_LENGTH") or ""
        if length:
            try:
                size = int(length)
            except ValueError:
                size = -1
            if size < 0:
                raise RequestError(
                    gateway_error(
                        400, "a bad Content-Length", wire_format, code="invalid_request"
                    )
                )
            if size > limit:
                raise too_large
            return bytes(stream.read(size))
        if environ.get("wsgi.input_terminated"):  # chunked, and the server ends it
            raw = bytes(stream.read(limit + 1))
            if len(raw) > limit:
                raise too_large
            return raw
        return b""


def _format_of(path: str, environ: Environ) -> WireFormat:
    """The format of the client's errors: Anthropic's for its route or SDK."""
    if path.startswith("/v1/messages") or "HTTP_ANTHROPIC_VERSION" in environ:
        return WireFormat.ANTHROPIC
    return WireFormat.OPENAI


def _shutting_down(wire_format: WireFormat) -> ErrorReply:
    return gateway_error(
        503, "the server is shutting down", wire_format, code="cancelled"
    )


def _send(start_response: StartResponse, reply: ErrorReply) -> List[bytes]:
    headers = reply.headers + [("Content-Length", str(len(reply.body)))]
    start_response(reply.status_line, headers)
    return [reply.body]


def _send_json(
    start_response: StartResponse, status: int, document: Dict[str, Any]
) -> List[bytes]:
    body = json.dumps(document).encode()
    start_response(
        status_line(status),
        [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
    )
    return [body]


def make_app(
    config: Union[Config, str, os.PathLike[str], None] = None,
    *,
    auth_token_env: Optional[str] = None,
    **options: Any,
) -> Gateway:
    """A gateway over ``Fleet.from_config(config)`` (by default the file that
    ``$PROVIDER_AGENT_CONFIG`` names, else ``./agent.toml``), closed with it.
    ``auth_token_env`` names the variable holding the token. For servers that
    take an application factory: ``gunicorn 'provider_agent.wsgi:make_app()'``.
    """
    if config is None:
        config = os.environ.get("PROVIDER_AGENT_CONFIG") or "agent.toml"
    token = None
    if auth_token_env is not None:
        token = os.environ.get(auth_token_env)
        if not token:
            raise ValueError(f"the variable {auth_token_env} holds no token")
    fleet = Fleet.from_config(config)
    return Gateway(fleet, auth_token=token, close_fleet=True, **options)
