"""The one table from the package's errors to HTTP replies and SSE error events."""

from __future__ import annotations

import json

import pytest

from provider_agent.backend import (
    BackendTimeoutError,
    BadStatusError,
    JobCancelledError,
    MissingApiKeyError,
    ModelNotFoundError,
    ProtocolError,
    StreamError,
    UnreachableError,
    UnsupportedWireFormatError,
    WireFormat,
)
from provider_agent.fleet import (
    CODES,
    AllBackendsFailedError,
    ModelNotLoadedError,
    OutOfCapacityError,
)
from provider_agent.wsgi import (
    STATUS_BY_CODE,
    error_event,
    error_reply,
    gateway_error,
    status_of,
)

B = "llamacpp:http://127.0.0.1:8080"
OPENAI, ANTHROPIC = WireFormat.OPENAI, WireFormat.ANTHROPIC

LLAMA_400 = json.dumps(
    {"error": {"code": 400, "message": "n_probs too big", "type": "invalid_request"}}
)


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (ModelNotLoadedError("m"), 404),
        (ModelNotFoundError(B, "m"), 404),
        (OutOfCapacityError("full", retry_after=2.5), 429),
        (BadStatusError(B, 429), 429),
        (UnreachableError(B, "refused"), 503),
        (AllBackendsFailedError("m", [UnreachableError(B, "refused")]), 503),
        (BadStatusError(B, 503), 503),
        (BackendTimeoutError(B, "deadline"), 504),
        (BadStatusError(B, 504), 504),
        (UnsupportedWireFormatError("fleet", "no anthropic"), 400),
        (JobCancelledError(B, "cancelled"), 503),
        # About the request: its own status.
        (BadStatusError(B, 400, LLAMA_400), 400),
        (BadStatusError(B, 422, "{}"), 422),
        (BadStatusError(B, 413), 413),
        # The gateway's trouble, not the client's: the backend refused our key.
        (BadStatusError(B, 401), 502),
        (BadStatusError(B, 403), 502),
        (MissingApiKeyError(B, "no key"), 502),
        (BadStatusError(B, 500), 502),
        (ProtocolError(B, "HTML from a proxy"), 502),
        (StreamError(B, "cut", 10), 502),
        (RuntimeError("a bug"), 502),
    ],
)
def test_status_of_each_error(exc: BaseException, status: int) -> None:
    assert status_of(exc) == status
    for wire_format in WireFormat:
        assert error_reply(exc, wire_format).status == status


def test_the_table_names_only_real_codes() -> None:
    assert set(STATUS_BY_CODE) <= set(CODES)


def test_openai_error_body_has_the_shape_the_sdk_reads() -> None:
    reply = error_reply(ModelNotLoadedError("m"), OPENAI)
    body = json.loads(reply.body)
    assert body == {
        "error": {
            "message": "fleet: no backend serves model 'm'",
            "type": "invalid_request_error",
            "param": None,
            "code": "model_not_loaded",
        }
    }
    assert reply.status_line == "404 Not Found"
    assert ("Content-Type", "application/json") in reply.headers
    assert ("X-Provider-Agent-Error", "model_not_loaded") in reply.headers


def test_anthropic_error_body_has_the_shape_the_sdk_reads() -> None:
    reply = error_reply(OutOfCapacityError("full", retry_after=2.5), ANTHROPIC)
    assert json.loads(reply.body) == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": "fleet: full"},
    }
    assert ("Retry-After", "3") in reply.headers  # whole seconds, rounded up


@pytest.mark.parametrize(
    "exc", [OutOfCapacityError("full"), BadStatusError(B, 429, "slow down")]
)
def test_every_429_says_when_to_retry(exc: BaseException) -> None:
    assert ("Retry-After", "1") in error_reply(exc, OPENAI).headers


def test_no_retry_after_on_other_statuses() -> None:
    headers = error_reply(UnreachableError(B, "refused"), OPENAI).headers
    assert all(name != "Retry-After" for name, _ in headers)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (LLAMA_400, "n_probs too big"),  # llama-server, vLLM
        (json.dumps({"error": "bad field"}), "bad field"),  # Ollama
        (json.dumps({"detail": "missing messages"}), "missing messages"),
        (json.dumps({"message": "nope"}), "nope"),
        ("<html>400</html>", f"{B}: HTTP 400"),  # not JSON: our own words
        (json.dumps([1, 2]), f"{B}: HTTP 400"),
    ],
)
def test_an_upstream_4xx_keeps_its_message(body: str, message: str) -> None:
    for wire_format in WireFormat:
        reply = error_reply(BadStatusError(B, 400, body), wire_format)
        assert reply.status == 400
        assert reply.message == message
        assert message in reply.body.decode()


ERROR_TYPES = {
    ANTHROPIC: {
        400: "invalid_request_error",
        404: "not_found_error",
        413: "request_too_large",
        429: "rate_limit_error",
        502: "api_error",
        503: "api_error",
        504: "timeout_error",
    },
    OPENAI: {
        400: "invalid_request_error",
        401: "authentication_error",
        404: "invalid_request_error",
        429: "rate_limit_error",
        502: "server_error",
    },
}


@pytest.mark.parametrize(
    ("wire_format", "status", "kind"),
    [
        (f, status, kind)
        for f, kinds in ERROR_TYPES.items()
        for status, kind in kinds.items()
    ],
)
def test_error_types_follow_the_status(wire_format, status, kind) -> None:
    body = json.loads(gateway_error(status, "x", wire_format, code="c").body)
    assert body["error"]["type"] == kind


def test_error_events_in_each_format() -> None:
    exc = BackendTimeoutError(B, "deadline passed")
    openai = error_event(exc, OPENAI)
    assert openai.startswith(b"data: {") and openai.endswith(b"}\n\n")
    assert openai.count(b"\n\n") == 1
    payload = json.loads(openai[len(b"data: ") :])
    assert payload["error"]["code"] == "backend_timeout"
    assert payload["error"]["message"] == f"{B}: deadline passed"

    anthropic = error_event(exc, ANTHROPIC)
    name, data = anthropic.rstrip(b"\n").split(b"\n")
    assert name == b"event: error"
    assert json.loads(data[len(b"data: ") :]) == {
        "type": "error",
        "error": {"type": "timeout_error", "message": f"{B}: deadline passed"},
    }


def test_an_error_event_never_carries_a_client_status() -> None:
    # After the first byte, a 4xx would claim the client's request was wrong.
    event = error_event(BadStatusError(B, 400, LLAMA_400), ANTHROPIC)
    assert b'"api_error"' in event
