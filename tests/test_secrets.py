"""Secrets: an API key is sent to its own server and shown nowhere else.

Not in repr() or str() of a backend, a stream or an error (even when the server
echoes the key back), not in ``vars()``, not in log records at DEBUG level from
the package or urllib3, and never sent to another host on a redirect.
"""

from __future__ import annotations

import logging
import pprint
import traceback
from typing import Any, Callable, List

import pytest

from provider_agent.backend import (
    BACKENDS,
    Backend,
    BackendError,
    BadStatusError,
    Job,
    MissingApiKeyError,
    ModelNotFoundError,
    OpenRouterBackend,
    ProtocolError,
    RemoteBackend,
    StreamError,
    VeniceBackend,
)

from .server import Reply, ScriptedServer

KEY = "sk-SECRET-123"
#: Every kind that takes a key (a local Ollama takes none).
KEYED = sorted(kind for kind in BACKENDS if kind != "ollama")
REMOTE = [OpenRouterBackend, VeniceBackend]
STREAM = (
    b'data: {"choices":[{"delta":{"content":"hi"}}]}\n\n'
    b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1}}\n\n'
    b"data: [DONE]\n\n"
)
ECHO = (
    b'{"error": {"message": "Incorrect API key provided: ' + KEY.encode() + b". "
    b'Check it.", "type": "invalid_request_error"}}'
)


def _prefix(kind: str) -> str:
    return "/api/v1" if issubclass(BACKENDS[kind], RemoteBackend) else ""


def make_backend(kind: str, url: str, key: str = KEY) -> Backend:
    cls = BACKENDS[kind]
    if issubclass(cls, RemoteBackend):
        return cls(key, base_url=url + "/api/v1")
    return cls(url, key)


def chat_path(kind: str) -> str:
    return _prefix(kind) + BACKENDS[kind].chat_path


def health_path(kind: str) -> str:
    return _prefix(kind) + BACKENDS[kind].health_path


def listing_paths(kind: str) -> List[str]:
    if kind == "lmstudio":
        return ["/api/v1/models", "/api/v0/models", "/v1/models"]
    return [_prefix(kind) + BACKENDS[kind].models_path]


def listing(kind: str) -> dict:
    if kind == "lmstudio":
        return {"models": [{"key": "m", "type": "llm", "max_context_length": 4096}]}
    return {"data": [{"id": "m", "max_model_len": 4096, "context_length": 4096}]}


def health_body(kind: str) -> dict:
    return {"data": []} if kind == "lmstudio" else {"status": "ok"}


def a_job() -> Job:
    return Job.new(
        "m", {"messages": [{"role": "user", "content": "Hi"}]}, deadline_ms=5000
    )


def _reply(status: int, body: bytes, content_type: str = "application/json"):
    def send(reply: Reply) -> None:
        reply.start(status, content_type=content_type, length=len(body))
        reply.raw(body)

    return send


def serve_everything(server: ScriptedServer, kind: str) -> None:
    for path in listing_paths(kind):
        server.json("GET", path, listing(kind))
    # After the listings: LM Studio's probe is its /v1/models.
    server.json("GET", health_path(kind), health_body(kind))
    server.stream("POST", chat_path(kind), [STREAM])


def assert_no_key(*things: Any) -> None:
    for thing in things:
        text = thing if isinstance(thing, str) else repr(thing)
        assert KEY not in text, text
        assert KEY not in str(thing), str(thing)


def assert_error_hides_key(err: BaseException) -> None:
    formatted = "".join(traceback.format_exception(type(err), err, err.__traceback__))
    assert_no_key(
        err,
        str(err),
        repr(err),
        err.args,
        formatted,
        getattr(err, "message", ""),
        getattr(err, "body", ""),
        vars(err),
    )


# -- repr, str, vars --------------------------------------------------------------


@pytest.mark.parametrize("kind", KEYED)
def test_backend_repr_str_and_vars_hide_the_key(kind: str, server: ScriptedServer):
    with make_backend(kind, server.url) as backend:
        assert backend.has_api_key
        assert_no_key(backend, str(backend), repr(backend), f"{backend!r}")
        assert_no_key(vars(backend), pprint.pformat(vars(backend)))
        # One level further down: every attribute object's own attributes.
        for value in vars(backend).values():
            if hasattr(value, "__dict__"):
                assert_no_key(vars(value), pprint.pformat(vars(value)))


@pytest.mark.parametrize("kind", KEYED)
def test_job_stream_repr_hides_the_key(kind: str, server: ScriptedServer):
    serve_everything(server, kind)
    with make_backend(kind, server.url) as backend:
        stream = backend.execute(a_job())
        with stream:
            assert_no_key(stream, str(stream), repr(stream), vars(stream))
            assert b"".join(stream) == STREAM
        assert_no_key(stream, str(stream), stream.result)


# -- errors, including a server that echoes the key ---------------------------------


@pytest.mark.parametrize("status", [401, 403])
@pytest.mark.parametrize("kind", KEYED)
def test_echoed_key_is_redacted_from_status_errors(
    kind: str, status: int, server: ScriptedServer
):
    server.route("POST", chat_path(kind), _reply(status, ECHO))
    for path in listing_paths(kind):
        server.route("GET", path, _reply(status, ECHO))
    server.route("GET", health_path(kind), _reply(status, ECHO))
    with make_backend(kind, server.url) as backend:
        for call in (backend.list_models, lambda: backend.execute(a_job())):
            with pytest.raises(BackendError) as info:
                call()
            err = info.value
            assert type(err) is BadStatusError
            assert err.status == status
            assert_error_hides_key(err)
            # Redacted, not dropped: the rest of the server's words are kept.
            assert "Incorrect API key provided" in err.body
            assert "Check it." in err.body
        health = backend.health()
    assert health.reachable is False
    assert_no_key(health, health.last_error, health.to_json())


@pytest.mark.parametrize("kind", KEYED)
def test_echoed_key_is_redacted_from_model_not_found(kind: str, server: ScriptedServer):
    body = b'{"error": {"message": "model m not found for key %s"}}' % KEY.encode()
    server.route("POST", chat_path(kind), _reply(404, body))
    with make_backend(kind, server.url) as backend:
        with pytest.raises(ModelNotFoundError) as info:
            backend.execute(a_job())
    assert_error_hides_key(info.value)
    assert "model m not found for key" in info.value.body


@pytest.mark.parametrize("kind", KEYED)
def test_echoed_key_is_redacted_from_a_non_stream_reply(
    kind: str, server: ScriptedServer
):
    # A 200 that is JSON instead of an event stream, quoting the key.
    server.route("POST", chat_path(kind), _reply(200, ECHO))
    with make_backend(kind, server.url) as backend:
        with pytest.raises(ProtocolError) as info:
            backend.execute(a_job())
    assert_error_hides_key(info.value)


@pytest.mark.parametrize("kind", KEYED)
def test_echoed_key_is_redacted_from_an_unparseable_listing(
    kind: str, server: ScriptedServer
):
    body = b"<html>your key %s is not welcome here" % KEY.encode()
    for path in listing_paths(kind):
        server.route("GET", path, _reply(200, body))
    with make_backend(kind, server.url) as backend:
        with pytest.raises(ProtocolError) as info:
            backend.list_models()
    assert_error_hides_key(info.value)


@pytest.mark.parametrize("kind", KEYED)
def test_echoed_key_is_redacted_from_an_in_band_error(
    kind: str, server: ScriptedServer
):
    event = b'data: {"error": {"message": "key %s was revoked"}}\n\n' % KEY.encode()
    server.stream("POST", chat_path(kind), [event])
    received: List[bytes] = []
    with make_backend(kind, server.url) as backend:
        with pytest.raises(StreamError) as info:
            for chunk in backend.execute(a_job()):
                received.append(chunk)
    assert b"".join(received) == event  # the relay itself stays byte-exact
    assert_error_hides_key(info.value)
    assert "revoked" in str(info.value)


# -- logs ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KEYED)
def test_debug_logs_never_hold_the_key(
    kind: str, server: ScriptedServer, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="provider_agent")
    caplog.set_level(logging.DEBUG, logger="urllib3")
    serve_everything(server, kind)
    with make_backend(kind, server.url) as backend:
        assert backend.health().reachable is True
        assert [m.model_id for m in backend.list_models()] == ["m"]
        assert b"".join(backend.execute(a_job())) == STREAM
        # And a failure whose body quotes the key.
        server.route("POST", chat_path(kind), _reply(401, ECHO))
        with pytest.raises(BadStatusError):
            backend.execute(a_job())
    names = {record.name for record in caplog.records}
    assert any(name.startswith("provider_agent") for name in names), names
    assert any(name.startswith("urllib3") for name in names), names
    for record in caplog.records:
        assert_no_key(record.getMessage(), record.args, record.exc_text or "")
    assert KEY not in caplog.text


# -- where the key goes -------------------------------------------------------------


@pytest.mark.parametrize("kind", KEYED)
def test_key_is_sent_as_bearer_to_its_own_server(kind: str, server: ScriptedServer):
    serve_everything(server, kind)
    with make_backend(kind, server.url) as backend:
        backend.health()
        backend.list_models()
        backend.run(a_job(), lambda chunk: None)
    paths = {request.path.split("?")[0] for request in server.requests}
    assert health_path(kind) in paths and chat_path(kind) in paths
    for request in server.requests:
        assert request.headers.get("Authorization") == f"Bearer {KEY}", request.path
        assert KEY not in request.path
        assert KEY.encode() not in request.body


@pytest.mark.parametrize("kind", KEYED)
def test_no_credentials_on_a_redirect_to_another_host(
    kind: str, server: ScriptedServer, other: ScriptedServer
):
    def moved(reply: Reply) -> None:
        target = other.url + reply.request.path
        reply.start(302, {"Location": target}, content_type=None, length=0)

    server.route("GET", health_path(kind), moved)
    for path in listing_paths(kind):
        server.route("GET", path, moved)
    server.route("POST", chat_path(kind), moved)
    serve_everything(other, kind)
    with make_backend(kind, server.url) as backend:
        assert backend.health().reachable is False
        with pytest.raises(BadStatusError) as listed:
            backend.list_models()
        with pytest.raises(BadStatusError) as executed:
            backend.execute(a_job())
    assert listed.value.status == executed.value.status == 302
    assert_error_hides_key(listed.value)
    assert other.requests == []
    assert other.connections == 0
    # The key did go to its own server.
    assert server.last().headers.get("Authorization") == f"Bearer {KEY}"


# -- remote backends need a key -------------------------------------------------------


@pytest.mark.parametrize("cls", REMOTE, ids=lambda c: c.kind)
@pytest.mark.parametrize("key", ["", "  ", "\t\n"])
def test_remote_backend_without_a_key(cls: Any, key: str):
    with pytest.raises(MissingApiKeyError) as info:
        cls(key)
    assert info.value.backend == cls.kind
    assert str(info.value).startswith(cls.kind + ": ")


@pytest.mark.parametrize("cls", REMOTE, ids=lambda c: c.kind)
@pytest.mark.parametrize("value", [None, "", "   "])
def test_from_env_unset_or_blank(cls: Any, value: Any, monkeypatch: pytest.MonkeyPatch):
    # A key lives in another variable: the error must name the variable, not it.
    monkeypatch.setenv("SOME_OTHER_KEY", KEY)
    if value is None:
        monkeypatch.delenv("PA_TEST_KEY", raising=False)
    else:
        monkeypatch.setenv("PA_TEST_KEY", value)
    with pytest.raises(MissingApiKeyError) as info:
        cls.from_env("PA_TEST_KEY")
    assert "PA_TEST_KEY" in str(info.value)
    assert str(info.value).startswith(cls.kind + ": ")
    assert_error_hides_key(info.value)


@pytest.mark.parametrize("cls", REMOTE, ids=lambda c: c.kind)
def test_from_env_default_variable(cls: Any, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(cls.key_env_var, raising=False)
    with pytest.raises(MissingApiKeyError) as info:
        cls.from_env()
    assert cls.key_env_var in str(info.value)


@pytest.mark.parametrize("cls", REMOTE, ids=lambda c: c.kind)
def test_from_env_set(
    cls: Any, monkeypatch: pytest.MonkeyPatch, server: ScriptedServer
):
    monkeypatch.setenv("PA_TEST_KEY", KEY)
    kind = cls.kind
    serve_everything(server, kind)
    with cls.from_env("PA_TEST_KEY", base_url=server.url + "/api/v1") as backend:
        assert type(backend) is cls
        assert backend.has_api_key
        assert_no_key(backend)
        assert backend.health().reachable is True
    assert server.last(health_path(kind)).headers["Authorization"] == f"Bearer {KEY}"


def test_missing_key_error_type_is_the_package_s(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("PA_TEST_KEY", raising=False)
    checks: List[Callable[[], Any]] = [
        lambda: OpenRouterBackend(""),
        lambda: VeniceBackend("  "),
        lambda: OpenRouterBackend.from_env("PA_TEST_KEY"),
    ]
    for check in checks:
        with pytest.raises(BackendError) as info:
            check()
        assert type(info.value) is MissingApiKeyError
        assert type(info.value).__module__ == "provider_agent.backend.errors"
