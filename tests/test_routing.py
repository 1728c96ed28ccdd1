"""The routing rules, as tables: pure functions, no threads or sockets."""

from __future__ import annotations

from typing import Any

import pytest

from provider_agent.backend import (
    BackendTimeoutError,
    BadStatusError,
    JobCancelledError,
    ModelNotFoundError,
    ProtocolError,
    StreamError,
    TransportError,
    UnreachableError,
    UnsupportedWireFormatError,
    WireFormat,
)
from provider_agent.fleet.errors import ModelNotLoadedError, OutOfCapacityError
from provider_agent.fleet.routing import (
    KIND_PRIORITY,
    BackendView,
    choose,
    fails_over,
    kind_rank,
    marks_down,
)

OPENAI, ANTHROPIC = WireFormat.OPENAI, WireFormat.ANTHROPIC
BOTH = frozenset(WireFormat)
REMOTE_KINDS = ("openrouter", "venice")


def view(name: str, **kwargs: Any) -> BackendView:
    kind = kwargs.pop("kind", name.rstrip("0123456789"))
    fields: dict = {
        "backend_id": name,
        "kind": kind,
        "native": kind not in REMOTE_KINDS,
        "formats": BOTH,
        "models": frozenset({"m"}),
        "up": True,
    }
    fields.update(kwargs)
    return BackendView(**fields)


def order(*views: BackendView, model: str = "m", fmt: WireFormat = OPENAI) -> list:
    return choose(model, fmt, views, fleet_limit=8)


ORDERS = [
    (
        "local before remote",
        [view("openrouter"), view("ollama")],
        ["ollama", "openrouter"],
    ),
    (
        "local before remote, even loaded",
        [view("openrouter"), view("ollama", in_flight=7)],
        ["ollama", "openrouter"],
    ),
    (
        "kind priority among equals",
        [view("ollama"), view("llamacpp"), view("vllm"), view("lmstudio")],
        ["vllm", "llamacpp", "lmstudio", "ollama"],
    ),
    (
        "remote kind priority",
        [view("openrouter"), view("venice")],
        ["venice", "openrouter"],
    ),
    (
        "least loaded first",
        [view("vllm", in_flight=2), view("ollama", in_flight=1)],
        ["ollama", "vllm"],
    ),
    (
        "load is relative to capacity",
        [
            view("vllm1", kind="vllm", in_flight=2, limit=4),
            view("vllm2", kind="vllm", in_flight=2, limit=3),
        ],
        ["vllm1", "vllm2"],
    ),
    (
        "no limit means the fleet's",
        [view("vllm", in_flight=4), view("llamacpp", in_flight=1, limit=4)],
        ["llamacpp", "vllm"],
    ),
    (
        "latency breaks a tie",
        [
            view("vllm1", kind="vllm", latency_ms=30),
            view("vllm2", kind="vllm", latency_ms=3),
        ],
        ["vllm2", "vllm1"],
    ),
    (
        "unknown latency last",
        [view("vllm1", kind="vllm"), view("vllm2", kind="vllm", latency_ms=900)],
        ["vllm2", "vllm1"],
    ),
    ("down ones left out", [view("vllm", up=False), view("ollama")], ["ollama"]),
    (
        "all down: tried anyway",
        [view("vllm", up=False), view("ollama", up=False)],
        ["vllm", "ollama"],
    ),
    (
        "full ones left out",
        [view("vllm", in_flight=1, limit=1), view("ollama")],
        ["ollama"],
    ),
    (
        "other models left out",
        [view("vllm", models=frozenset({"x"})), view("ollama")],
        ["ollama"],
    ),
    (
        "other formats left out",
        [view("vllm", formats=frozenset({ANTHROPIC})), view("ollama")],
        ["ollama"],
    ),
]


@pytest.mark.parametrize(
    "views, expected", [o[1:] for o in ORDERS], ids=[o[0] for o in ORDERS]
)
def test_choose_orders_the_candidates(views, expected):
    assert order(*views) == expected


REJECTIONS = [
    (
        "no backend serves it",
        [view("vllm", models=frozenset({"x"}))],
        ModelNotLoadedError,
    ),
    ("an empty fleet", [], ModelNotLoadedError),
    (
        "none speaks the format",
        [view("venice", formats=frozenset({OPENAI}))],
        UnsupportedWireFormatError,
    ),
    ("every one is full", [view("vllm", in_flight=2, limit=2)], OutOfCapacityError),
]


@pytest.mark.parametrize(
    "views, error", [r[1:] for r in REJECTIONS], ids=[r[0] for r in REJECTIONS]
)
def test_choose_refuses(views, error):
    with pytest.raises(error) as caught:
        order(*views, fmt=ANTHROPIC if error is UnsupportedWireFormatError else OPENAI)
    assert caught.value.backend == "fleet"


def test_the_format_refusal_names_the_kinds_that_serve_the_model():
    with pytest.raises(UnsupportedWireFormatError, match="venice"):
        order(view("venice", formats=frozenset({OPENAI})), fmt=ANTHROPIC)


def test_kind_rank_follows_the_priority_and_puts_strangers_last():
    assert [kind_rank(k) for k in KIND_PRIORITY] == list(range(len(KIND_PRIORITY)))
    assert kind_rank("something-new") == len(KIND_PRIORITY)


B = "vllm:http://127.0.0.1:8000"

ATTEMPTS = [
    # error, fails over, marks down
    (UnreachableError(B, "cannot connect: refused"), True, True),
    (UnreachableError(B, "connect timed out"), True, True),
    (TransportError(B, "connection failed: reset"), True, True),
    (BadStatusError(B, 500), True, True),
    (BadStatusError(B, 502), True, True),
    (BadStatusError(B, 503), True, True),
    (BadStatusError(B, 429), True, False),
    (BadStatusError(B, 401), True, False),
    (BadStatusError(B, 403), True, False),
    (ModelNotFoundError(B, "m"), True, False),
    (ModelNotFoundError(B, "m", 400), True, False),
    (ProtocolError(B, "expected an event stream, got text/html"), True, False),
    (BadStatusError(B, 400), False, False),
    (BadStatusError(B, 413), False, False),
    (BadStatusError(B, 422), False, False),
    (BackendTimeoutError(B, "deadline passed"), False, False),
    (JobCancelledError(B, "job cancelled"), False, False),
    (StreamError(B, "cut", 10), False, False),
    (UnsupportedWireFormatError(B, "no"), False, False),
    (ValueError("not a backend error"), False, False),
]


@pytest.mark.parametrize(
    "error, over, down",
    ATTEMPTS,
    ids=[f"{type(a[0]).__name__}-{getattr(a[0], 'status', '')}" for a in ATTEMPTS],
)
def test_what_a_failed_attempt_means(error, over, down):
    assert fails_over(error) is over
    assert marks_down(error) is down
