"""Reply text against both live engines: what ``iter_text()``, ``text()`` and
``complete()`` give is the text the relayed events hold, in both wire formats;
and the newcomer's traps (a ``/v1`` base URL, a backend of the wrong kind)."""

from __future__ import annotations

from typing import Callable, Tuple

import pytest

from provider_agent.backend import (
    Backend,
    Job,
    LlamaCppBackend,
    LmStudioBackend,
    Reply,
    TextDelta,
    VllmBackend,
    WireFormat,
)

from .conftest import VLLM_MODEL
from .engines import Engine
from .helpers import anthropic_text, chat, openai_text
from .tap import Tap, bodies

pytestmark = pytest.mark.integration

OPENAI, ANTHROPIC = WireFormat.OPENAI, WireFormat.ANTHROPIC
FINISH = {OPENAI: "length", ANTHROPIC: "max_tokens"}  # ignore_eos: max_tokens ends it
Read = Callable[[Backend, Job], Reply]


def pieces(backend: Backend, job: Job) -> Reply:
    with backend.execute(job) as stream:
        got = list(stream.iter_text())
    assert all(got) and all(type(piece) is TextDelta for piece in got)
    assert stream.result is not None
    return Reply("".join(got), "", stream.result)


def text(backend: Backend, job: Job) -> Reply:
    with backend.execute(job) as stream:
        got = stream.text()
    assert stream.result is not None
    return Reply(got, "", stream.result)


def complete(backend: Backend, job: Job) -> Reply:
    return backend.complete(job)


READERS = {"iter_text": pieces, "text": text, "complete": complete}


def through_tap(
    make: Callable[[str], Backend], port: int, read: Read, job: Job
) -> Tuple[Reply, bytes]:
    """What ``read`` made of the job's stream, and the body the engine sent."""
    tap = Tap(port)
    try:
        with make(tap.url) as backend:
            reply = read(backend, job)
        (record,) = tap.replies()
        ((_, body),) = bodies(record)
    finally:
        tap.close()
    return reply, body


def expected_text(body: bytes, fmt: WireFormat) -> str:
    return openai_text(body) if fmt is OPENAI else anthropic_text(body)


@pytest.mark.parametrize("reader", sorted(READERS))
@pytest.mark.parametrize("fmt", [OPENAI, ANTHROPIC])
def test_llamacpp_reply_text_is_the_relayed_text(
    llama: Engine, fmt: WireFormat, reader: str
) -> None:
    job = chat("tiny", max_tokens=12, wire_format=fmt)
    reply, body = through_tap(LlamaCppBackend, llama.port, READERS[reader], job)
    assert reply.text == expected_text(body, fmt)
    assert reply.finish_reason == FINISH[fmt]
    assert reply.result.output_tokens == 12


@pytest.mark.parametrize("reader", sorted(READERS))
@pytest.mark.parametrize("fmt", [OPENAI, ANTHROPIC])
def test_vllm_reply_text_is_the_relayed_text(
    vllm: Engine, vllm_key: str, fmt: WireFormat, reader: str
) -> None:
    job = chat(VLLM_MODEL, max_tokens=12, wire_format=fmt)
    reply, body = through_tap(
        lambda url: VllmBackend(url, api_key=vllm_key), vllm.port, READERS[reader], job
    )
    assert reply.text == expected_text(body, fmt)
    assert reply.text.strip()  # a word-level model writes words
    assert reply.finish_reason == FINISH[fmt]
    assert reply.result.output_tokens == 12


def test_a_v1_base_url_reaches_the_routes(llama: Engine) -> None:
    with LlamaCppBackend(llama.url + "/v1") as backend:
        assert backend.url == llama.url
        assert backend.health().reachable
        assert backend.complete(chat("tiny", max_tokens=4)).result.output_tokens == 4


def test_a_backend_of_the_wrong_kind_is_not_up(llama: Engine, vllm: Engine) -> None:
    for backend, words in (
        (VllmBackend(llama.url), "llama.cpp server, not vllm"),
        (LmStudioBackend(llama.url), "llama.cpp server, not lmstudio"),
        (LlamaCppBackend(vllm.url), "vLLM server, not llamacpp"),
    ):
        with backend:
            health = backend.health()
        assert health.reachable is False, backend.id
        assert words in (health.last_error or ""), health
