"""Error mapping: every lower-level exception becomes a BackendError.

Part one feeds ``_transport.translate`` every exception class ``requests`` defines,
plus the urllib3, http.client and socket errors that can surface under it (in the
spirit of httpx's ``test_httpcore_all_exceptions_mapped``). Part two drives real HTTP
failures through the public API of every registered backend.
"""

from __future__ import annotations

import http.client
import inspect
import socket
import time
import traceback
import zlib
from typing import Any, Callable, Dict, Iterator, List, Tuple, Type

import pytest
import requests.exceptions as rex
import urllib3.exceptions as u3

from provider_agent.backend import (
    BACKENDS,
    Backend,
    BackendError,
    BackendTimeoutError,
    BadStatusError,
    Job,
    JobCancelledError,
    ModelNotFoundError,
    ProtocolError,
    RemoteBackend,
    StreamError,
    TransportError,
    UnreachableError,
)
from provider_agent.backend._transport import translate
from provider_agent.backend._watch import Watch

from .kinds import chat_path, health_path, listing_paths, make_backend
from .server import Reply, ScriptedServer

KINDS = sorted(BACKENDS)
BACKEND_ID = "vllm:http://127.0.0.1:9"
ONE_MB = 1024 * 1024


# -- part one: the translation table ------------------------------------------

#: What each class defined in requests.exceptions must become. A new class in a
#: future requests release fails test_every_requests_exception_is_in_the_table.
REQUESTS_TABLE: Dict[str, Type[BackendError]] = {
    "RequestException": TransportError,
    "InvalidJSONError": TransportError,
    # The reply could not be parsed: the trait's Serde error.
    "JSONDecodeError": ProtocolError,
    "HTTPError": TransportError,
    "ConnectionError": TransportError,
    "ProxyError": UnreachableError,
    "SSLError": TransportError,
    "Timeout": BackendTimeoutError,
    "ConnectTimeout": UnreachableError,
    "ReadTimeout": BackendTimeoutError,
    "URLRequired": TransportError,
    "TooManyRedirects": TransportError,
    "MissingSchema": TransportError,
    "InvalidSchema": TransportError,
    "InvalidURL": TransportError,
    "InvalidHeader": TransportError,
    "InvalidProxyURL": TransportError,
    "ChunkedEncodingError": TransportError,
    "ContentDecodingError": ProtocolError,
    "StreamConsumedError": TransportError,
    "RetryError": TransportError,
    "UnrewindableBodyError": TransportError,
}


def _requests_classes() -> List[type]:
    """Every exception class defined in requests.exceptions (warnings are not
    failures and are left out)."""
    return [
        cls
        for _, cls in inspect.getmembers(rex, inspect.isclass)
        if cls.__module__ == rex.__name__
        and issubclass(cls, BaseException)
        and not issubclass(cls, Warning)
    ]


def _instantiate(cls: type) -> BaseException:
    if issubclass(cls, rex.JSONDecodeError):
        return cls("Expecting value", "<html>", 0)
    exc: BaseException = cls("boom")
    return exc


def _refused() -> u3.NewConnectionError:
    return u3.NewConnectionError(
        None,  # type: ignore[arg-type]
        "Failed to establish a new connection: [Errno 111] Connection refused",
    )


def _no_such_host() -> u3.NameResolutionError:
    return u3.NameResolutionError(
        "nosuch.invalid",
        None,  # type: ignore[arg-type]
        socket.gaierror(-2, "Name or service not known"),
    )


def _retries(reason: Exception) -> u3.MaxRetryError:
    return u3.MaxRetryError(None, "/v1/models", reason)  # type: ignore[arg-type]


# (id, factory, expected): the forms requests' adapter really raises, and the
# lower-level errors a read of the raw body can raise.
WRAPPED: List[Tuple[str, Callable[[], BaseException], Type[BackendError]]] = [
    ("refused", lambda: rex.ConnectionError(_retries(_refused())), UnreachableError),
    ("dns", lambda: rex.ConnectionError(_retries(_no_such_host())), UnreachableError),
    (
        "connect-timeout",
        lambda: rex.ConnectTimeout(
            _retries(u3.ConnectTimeoutError(None, "connect timed out"))
        ),
        UnreachableError,
    ),
    (
        "read-timeout",
        lambda: rex.ReadTimeout(u3.ReadTimeoutError(None, "/", "Read timed out.")),
        BackendTimeoutError,
    ),
    (
        "aborted-reset",
        lambda: rex.ConnectionError(
            u3.ProtocolError("Connection aborted.", ConnectionResetError(104, "reset"))
        ),
        TransportError,
    ),
    (
        "aborted-remote-disconnected",
        lambda: rex.ConnectionError(
            u3.ProtocolError(
                "Connection aborted.",
                http.client.RemoteDisconnected("closed without response"),
            )
        ),
        TransportError,
    ),
    (
        "chunked-cut",
        lambda: rex.ChunkedEncodingError(
            u3.ProtocolError("Response ended prematurely")
        ),
        TransportError,
    ),
    (
        "urllib3-read-timeout",
        lambda: u3.ReadTimeoutError(None, "/", "Read timed out."),  # type: ignore
        BackendTimeoutError,
    ),
    (
        "urllib3-protocol",
        lambda: u3.ProtocolError("Connection broken", ConnectionResetError()),
        TransportError,
    ),
    ("urllib3-incomplete-read", lambda: u3.IncompleteRead(5, 10), TransportError),
    ("urllib3-ssl", lambda: u3.SSLError("bad handshake"), TransportError),
    (
        "urllib3-decode",
        lambda: u3.DecodeError("failed to decode gzip", zlib.error("bad header")),
        ProtocolError,
    ),
    (
        "http-incomplete-read",
        lambda: http.client.IncompleteRead(b"part", 10),
        TransportError,
    ),
    (
        "http-remote-disconnected",
        lambda: http.client.RemoteDisconnected("closed without response"),
        TransportError,
    ),
    ("socket-timeout", lambda: socket.timeout("timed out"), BackendTimeoutError),
    (
        "connection-reset",
        lambda: ConnectionResetError(104, "Connection reset by peer"),
        TransportError,
    ),
    ("oserror", lambda: OSError(5, "Input/output error"), TransportError),
]

#: Failures of the connection itself (not timeouts, not undecodable bodies).
CONNECTION_FAILURES = [
    case
    for case in WRAPPED
    if case[0]
    in (
        "aborted-reset",
        "aborted-remote-disconnected",
        "chunked-cut",
        "urllib3-protocol",
        "urllib3-incomplete-read",
        "http-incomplete-read",
        "http-remote-disconnected",
        "connection-reset",
        "oserror",
    )
]


def _assert_translated(
    result: Any, expected: Type[BackendError], backend: str = BACKEND_ID
) -> None:
    assert type(result) is expected, f"{type(result).__name__} != {expected.__name__}"
    assert result.backend == backend
    assert str(result).startswith(backend + ": ")
    for cls in type(result).__mro__:
        assert cls.__module__.split(".")[0] not in ("requests", "urllib3")
    # urllib3's "<HTTPConnection object at 0x...>: " prefix is noise, not a message.
    assert "object at 0x" not in str(result)


def test_every_requests_exception_is_in_the_table() -> None:
    names = {cls.__name__ for cls in _requests_classes()}
    assert names == set(REQUESTS_TABLE)


@pytest.mark.parametrize("cls", _requests_classes(), ids=lambda c: c.__name__)
def test_requests_exception_mapped(cls: type) -> None:
    result = translate(_instantiate(cls), BACKEND_ID)
    _assert_translated(result, REQUESTS_TABLE[cls.__name__])


@pytest.mark.parametrize(
    "make, expected", [c[1:] for c in WRAPPED], ids=[c[0] for c in WRAPPED]
)
def test_lower_level_exception_mapped(
    make: Callable[[], BaseException], expected: Type[BackendError]
) -> None:
    _assert_translated(translate(make(), BACKEND_ID), expected)


def test_backend_error_passes_through_unchanged() -> None:
    error = UnreachableError(BACKEND_ID, "cannot connect")
    assert translate(error, BACKEND_ID) is error


def _all_samples() -> List[BaseException]:
    return [_instantiate(c) for c in _requests_classes()] + [m() for _, m, _ in WRAPPED]


def test_cancelled_watch_wins_over_the_exception() -> None:
    watch = Watch(None)
    watch.cancel()
    for exc in _all_samples():
        _assert_translated(translate(exc, BACKEND_ID, watch), JobCancelledError)
        _assert_translated(translate(exc, BACKEND_ID, watch, 42), JobCancelledError)


def test_expired_watch_wins_over_the_exception() -> None:
    watch = Watch(0.01)
    give_up = time.monotonic() + 2
    while not watch.expired and time.monotonic() < give_up:
        time.sleep(0.005)
    assert watch.expired
    for exc in _all_samples():
        _assert_translated(translate(exc, BACKEND_ID, watch), BackendTimeoutError)
        _assert_translated(translate(exc, BACKEND_ID, watch, 42), BackendTimeoutError)


def test_live_watch_does_not_change_the_mapping() -> None:
    watch = Watch(60)
    try:
        for _, make, expected in WRAPPED:
            _assert_translated(translate(make(), BACKEND_ID, watch), expected)
    finally:
        watch.finish()


@pytest.mark.parametrize(
    "make", [c[1] for c in CONNECTION_FAILURES], ids=[c[0] for c in CONNECTION_FAILURES]
)
def test_connection_failure_after_relayed_bytes_is_stream_error(
    make: Callable[[], BaseException],
) -> None:
    result = translate(make(), BACKEND_ID, None, 42)
    _assert_translated(result, StreamError)
    assert result.bytes_relayed == 42  # type: ignore[attr-defined]
    # Before the stream started (None) or with nothing relayed, it stays transport.
    _assert_translated(translate(make(), BACKEND_ID, None, 0), TransportError)
    _assert_translated(translate(make(), BACKEND_ID, None, None), TransportError)


def test_timeout_after_relayed_bytes_stays_a_timeout() -> None:
    exc = rex.ReadTimeout(u3.ReadTimeoutError(None, "/", "Read timed out."))
    _assert_translated(translate(exc, BACKEND_ID, None, 42), BackendTimeoutError)


# -- part two: real HTTP through the public API --------------------------------


def a_job(deadline_ms: int = 5000) -> Job:
    return Job.new(
        "some-model",
        {"messages": [{"role": "user", "content": "Hi"}]},
        deadline_ms=deadline_ms,
    )


def assert_clean_error(err: BaseException, backend: Backend, cls: type) -> None:
    """Exactly ``cls``, naming the backend, and nothing from requests or urllib3."""
    assert type(err) is cls, f"{type(err).__name__} != {cls.__name__}: {err}"
    assert isinstance(err, BackendError)
    assert err.backend == backend.id
    assert str(err).startswith(backend.id + ": ")
    assert type(err).__module__.startswith("provider_agent.")
    for klass in type(err).__mro__:
        assert klass.__module__.split(".")[0] not in ("requests", "urllib3")


def _call(backend: Backend, op: str) -> None:
    if op == "list_models":
        backend.list_models()
    else:
        with backend.execute(a_job()) as stream:
            for _ in stream:
                pass


def _route_everywhere(
    server: ScriptedServer, kind: str, op: str, fn: Callable[[Reply], None]
) -> None:
    if op == "list_models":
        for path in listing_paths(kind):
            server.route("GET", path, fn)
    else:
        server.route("POST", chat_path(kind), fn)


def _reply(status: int, body: bytes, content_type: str = "application/json"):
    def send(reply: Reply) -> None:
        reply.start(status, content_type=content_type, length=len(body))
        reply.raw(body)

    return send


@pytest.fixture
def refused_url() -> Iterator[str]:
    # A bound socket that does not listen: connecting to it is refused at once,
    # and no other process can take the port while the test runs.
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()


OPS = ["list_models", "execute"]


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("kind", KINDS)
def test_connection_refused_is_unreachable(kind: str, op: str, refused_url: str):
    with make_backend(kind, refused_url) as backend:
        with pytest.raises(BackendError) as info:
            _call(backend, op)
    assert_clean_error(info.value, backend, UnreachableError)
    assert info.value.__cause__ is not None  # raised "from" the original


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("kind", KINDS)
def test_dns_failure_is_unreachable(kind: str, op: str):
    with make_backend(kind, "http://nosuch.invalid:8000") as backend:
        with pytest.raises(BackendError) as info:
            _call(backend, op)
    assert_clean_error(info.value, backend, UnreachableError)


@pytest.mark.parametrize("status", [401, 403])
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("kind", KINDS)
def test_auth_status_is_bad_status(
    kind: str, op: str, status: int, server: ScriptedServer
):
    body = b'{"error": {"message": "Invalid credentials", "type": "auth_error"}}'
    _route_everywhere(server, kind, op, _reply(status, body))
    with make_backend(kind, server.url) as backend:
        with pytest.raises(BackendError) as info:
            _call(backend, op)
    assert_clean_error(info.value, backend, BadStatusError)
    assert info.value.status == status
    assert info.value.body == body.decode()


@pytest.mark.parametrize("kind", KINDS)
def test_404_on_chat_is_model_not_found(kind: str, server: ScriptedServer):
    body = b'{"error": {"message": "The model `some-model` does not exist."}}'
    server.route("POST", chat_path(kind), _reply(404, body))
    with make_backend(kind, server.url) as backend:
        with pytest.raises(BackendError) as info:
            backend.execute(a_job())
    assert_clean_error(info.value, backend, ModelNotFoundError)
    assert info.value.model_id == "some-model"
    assert info.value.status == 404
    assert info.value.body == body.decode()
    # the path asked, so that a wrong base URL shows
    assert f"HTTP 404 for POST {chat_path(kind)}: " in str(info.value)


@pytest.mark.parametrize(
    "kind", [k for k in KINDS if not issubclass(BACKENDS[k], RemoteBackend)]
)
def test_a_local_base_url_ending_in_v1_is_taken_without_it(
    kind: str, server: ScriptedServer
):
    # The base URL an OpenAI client takes; the routes already start with /v1.
    stream = b'data: {"choices":[{"index":0,"delta":{"content":"Hi"}}]}\n\n'
    server.stream("POST", chat_path(kind), [stream, b"data: [DONE]\n\n"])
    for url in (server.url + "/v1", server.url + "/v1/"):
        with make_backend(kind, url) as backend:
            assert backend.url == server.url
            assert backend.id == f"{kind}:{server.url}"
            assert backend.complete(a_job()).text == "Hi"
    assert [r.path for r in server.requests] == [chat_path(kind)] * 2


@pytest.mark.parametrize(
    "kind", [k for k in KINDS if issubclass(BACKENDS[k], RemoteBackend)]
)
def test_a_remote_base_url_keeps_its_path(kind: str):
    with make_backend(kind, "https://gateway.example/v1") as backend:
        assert backend.url == "https://gateway.example/v1/api/v1"


LMSTUDIO_UNKNOWN_MODEL = (
    b'{"error":{"message":"Invalid model identifier \\"x\\". Please specify a valid'
    b' downloaded model.","type":"invalid_request_error","param":"model",'
    b'"code":"model_not_found"}}'
)


@pytest.mark.parametrize("status", [400, 404, 422])
@pytest.mark.parametrize("kind", KINDS)
def test_an_openai_model_not_found_code_is_model_not_found(
    kind: str, status: int, server: ScriptedServer
):
    # Recent LM Studio builds answer an unknown model with HTTP 400 and this body.
    server.route("POST", chat_path(kind), _reply(status, LMSTUDIO_UNKNOWN_MODEL))
    with make_backend(kind, server.url) as backend:
        with pytest.raises(ModelNotFoundError) as info:
            backend.execute(a_job())
    assert info.value.status == status
    assert "Invalid model identifier" in str(info.value)


@pytest.mark.parametrize("kind", KINDS)
def test_another_400_code_is_not_model_not_found(kind: str, server: ScriptedServer):
    body = (
        b'{"error":{"message":"model_not_found is not the point: max_tokens",'
        b'"type":"invalid_request_error","code":"context_length_exceeded"}}'
    )
    server.route("POST", chat_path(kind), _reply(400, body))
    with make_backend(kind, server.url) as backend:
        with pytest.raises(BadStatusError) as info:
            backend.execute(a_job())
    assert type(info.value) is BadStatusError


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("kind", KINDS)
def test_500_is_bad_status_with_body(kind: str, op: str, server: ScriptedServer):
    body = b'{"error": {"message": "CUDA out of memory", "code": 500}}'
    _route_everywhere(server, kind, op, _reply(500, body))
    with make_backend(kind, server.url) as backend:
        with pytest.raises(BackendError) as info:
            _call(backend, op)
    assert_clean_error(info.value, backend, BadStatusError)
    assert info.value.status == 500
    assert info.value.body == body.decode()
    assert "CUDA out of memory" in str(info.value)


HTML_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\n"
    b"<body><center><h1>502 Bad Gateway</h1></center><hr>nginx</body></html>\n"
)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("kind", KINDS)
def test_html_error_page(kind: str, op: str, server: ScriptedServer):
    _route_everywhere(
        server, kind, op, _reply(502, HTML_PAGE, "text/html; charset=utf-8")
    )
    with make_backend(kind, server.url) as backend:
        with pytest.raises(BackendError) as info:
            _call(backend, op)
    assert_clean_error(info.value, backend, BadStatusError)
    assert info.value.status == 502
    assert "HTML page" in str(info.value)
    assert "502 Bad Gateway" in str(info.value)
    assert "<body>" not in str(info.value)  # the title, not the markup


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("kind", KINDS)
def test_10mb_error_body_is_cut(kind: str, op: str, server: ScriptedServer):
    body = b"0123456789abcdef" * (10 * ONE_MB // 16)
    _route_everywhere(server, kind, op, _reply(500, body, "text/plain"))
    with make_backend(kind, server.url) as backend:
        started = time.monotonic()
        with pytest.raises(BackendError) as info:
            _call(backend, op)
        elapsed = time.monotonic() - started
    assert_clean_error(info.value, backend, BadStatusError)
    assert info.value.status == 500
    assert 1024 <= len(info.value.body) <= 4096
    assert info.value.body == body[: len(info.value.body)].decode()
    assert len(str(info.value)) < 8192
    assert elapsed < 3.0  # the rest of the body is not read


@pytest.mark.parametrize("kind", KINDS)
def test_10mb_junk_model_listing_is_protocol_error(kind: str, server: ScriptedServer):
    junk = bytes(range(256)) * (10 * ONE_MB // 256)
    for path in listing_paths(kind):
        server.json("GET", path, junk)
    with make_backend(kind, server.url) as backend:
        started = time.monotonic()
        with pytest.raises(BackendError) as info:
            backend.list_models()
        elapsed = time.monotonic() - started
    assert_clean_error(info.value, backend, ProtocolError)
    assert len(str(info.value)) < 8192
    assert len(info.value.body) <= 4096
    assert elapsed < 10.0


@pytest.mark.parametrize("kind", KINDS)
def test_invalid_json_model_listing_is_protocol_error(
    kind: str, server: ScriptedServer
):
    for path in listing_paths(kind):
        server.json("GET", path, b'{"object": "list", "data": [{"id": "m"')
    with make_backend(kind, server.url) as backend:
        with pytest.raises(BackendError) as info:
            backend.list_models()
    assert_clean_error(info.value, backend, ProtocolError)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("kind", KINDS)
def test_non_utf8_error_body(kind: str, op: str, server: ScriptedServer):
    body = b"upstream said \xff\xfe no \xc3\x28 thanks \x80"
    _route_everywhere(server, kind, op, _reply(500, body, "text/plain"))
    with make_backend(kind, server.url) as backend:
        with pytest.raises(BackendError) as info:
            _call(backend, op)
    assert_clean_error(info.value, backend, BadStatusError)
    assert isinstance(info.value.body, str)
    assert info.value.body == body.decode("utf-8", "replace")
    assert "\ufffd" in info.value.body
    assert "upstream said" in str(info.value)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("kind", KINDS)
def test_reset_before_headers_is_transport_error(
    kind: str, op: str, server: ScriptedServer
):
    _route_everywhere(server, kind, op, lambda reply: reply.reset())
    with make_backend(kind, server.url) as backend:
        with pytest.raises(BackendError) as info:
            _call(backend, op)
    assert_clean_error(info.value, backend, TransportError)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("kind", KINDS)
def test_redirect_to_another_host_is_not_followed(
    kind: str, op: str, server: ScriptedServer, other: ScriptedServer
):
    def moved(reply: Reply) -> None:
        target = other.url + reply.request.path
        reply.start(302, {"Location": target}, content_type=None, length=0)

    _route_everywhere(server, kind, op, moved)
    _route_everywhere(other, kind, op, _reply(200, b'{"data": []}'))
    with make_backend(kind, server.url) as backend:
        with pytest.raises(BackendError) as info:
            _call(backend, op)
    assert_clean_error(info.value, backend, BadStatusError)
    assert info.value.status == 302
    assert "302" in str(info.value)
    assert other.requests == []
    assert other.connections == 0


@pytest.mark.parametrize("kind", KINDS)
def test_health_never_raises_for_these_failures(
    kind: str, server: ScriptedServer, refused_url: str
):
    failures = {
        "reset": lambda reply: reply.reset(),
        "html": _reply(502, HTML_PAGE, "text/html"),
        "utf8": _reply(500, b"\xff\xfe", "text/plain"),
    }
    for name, fn in failures.items():
        server.route("GET", health_path(kind), fn)
        with make_backend(kind, server.url) as backend:
            health = backend.health()
        assert health.reachable is False, name
        assert isinstance(health.last_error, str) and health.last_error, name
    with make_backend(kind, refused_url) as backend:
        health = backend.health()
    assert health.reachable is False
    assert health.latency_ms is None


def test_tracebacks_name_no_requests_class_at_the_top(refused_url: str) -> None:
    with make_backend("vllm", refused_url) as backend:
        with pytest.raises(BackendError) as info:
            backend.list_models()
    last = traceback.format_exception_only(type(info.value), info.value)[-1]
    assert last.startswith("provider_agent.backend.errors.UnreachableError: ")
