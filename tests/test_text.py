"""The reply's text: ``iter_text()``, ``text()``, ``reply()`` and ``complete()``.

Streams come from a scripted server on 127.0.0.1, written in whatever pieces a
test names; the text must be the same whatever the pieces, in both wire formats.
"""

from __future__ import annotations

import json
import threading
from typing import Any, Dict, Iterator, List

import pytest

from provider_agent.backend import (
    JobResult,
    LlamaCppBackend,
    Reply,
    StreamError,
    TextDelta,
    WireFormat,
)
from provider_agent.backend.text import TextReader

from .server import Reply as Route
from .server import ScriptedServer
from .sse import DONE, text_block
from .sse import data as sse
from .sse import event as anthropic
from .test_stream import (
    A_START,
    A_STOP,
    CHAT,
    LLAMA_ERROR,
    MESSAGES,
    PAUSE,
    USAGE,
    chat_job,
)

ANTHROPIC = WireFormat.ANTHROPIC


@pytest.fixture
def llama(server: ScriptedServer) -> Iterator[LlamaCppBackend]:
    with LlamaCppBackend(server.url) as backend:
        yield backend


def chunk(delta: Dict[str, Any], finish: Any = None) -> bytes:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return sse({"object": "chat.completion.chunk", "choices": [choice]})


ROLE = chunk({"role": "assistant", "content": None})
FINISH = chunk({}, "stop")
OPENAI_STREAM = [
    ROLE,
    chunk({"reasoning_content": "think "}),
    chunk({"reasoning_content": "hard"}),
    chunk({"content": "Hel"}),
    b":\n\n",
    chunk({"content": "lo ✓"}),
    chunk({"content": ""}),
    FINISH,
    USAGE,
    DONE,
]


def thinking(text: str, index: int = 0) -> bytes:
    delta = {"type": "thinking_delta", "thinking": text}
    return anthropic(
        "content_block_delta",
        {"type": "content_block_delta", "index": index, "delta": delta},
    )


def message_delta(stop_reason: str) -> bytes:
    return anthropic(
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": None},
            "usage": {"output_tokens": 5},
        },
    )


ANTHROPIC_STREAM = [
    A_START,
    thinking("ponder"),
    *text_block("Hel", index=1),
    *text_block("lo ✓", index=2),
    message_delta("max_tokens"),
    A_STOP,
]


def pieces(reader: TextReader, parts: List[bytes]) -> List[TextDelta]:
    taken: List[TextDelta] = []
    for part in parts:
        reader.feed(part)
        taken += reader.take()
    reader.close()
    return taken + reader.take()


# -- iter_text and text ----------------------------------------------------------


def test_iter_text_yields_the_openai_text_pieces(server, llama):
    server.stream("POST", CHAT, OPENAI_STREAM)
    with llama.execute(chat_job()) as stream:
        got = list(stream.iter_text())
    assert got == ["Hel", "lo ✓"]
    assert all(type(piece) is TextDelta and not piece.reasoning for piece in got)
    assert isinstance(stream.result, JobResult)
    assert (stream.result.input_tokens, stream.result.output_tokens) == (12, 28)
    assert stream.result.finish_reason == "stop"


def test_text_is_the_whole_anthropic_reply(server, llama):
    server.stream("POST", MESSAGES, ANTHROPIC_STREAM)
    with llama.execute(chat_job(ANTHROPIC)) as stream:
        assert stream.text() == "Hello ✓"
    assert stream.result is not None
    assert stream.result.finish_reason == "max_tokens"
    assert stream.result.output_tokens == 5


@pytest.mark.parametrize("fmt", [WireFormat.OPENAI, ANTHROPIC])
def test_reasoning_comes_only_when_asked_and_marked(server, llama, fmt):
    path, steps = (
        (CHAT, OPENAI_STREAM)
        if fmt is WireFormat.OPENAI
        else (
            MESSAGES,
            ANTHROPIC_STREAM,
        )
    )
    server.stream("POST", path, steps)
    with llama.execute(chat_job(fmt)) as stream:
        got = [(piece.reasoning, str(piece)) for piece in stream.iter_text(True)]
    reasoning = "".join(text for is_reasoning, text in got if is_reasoning)
    answer = "".join(text for is_reasoning, text in got if not is_reasoning)
    assert reasoning == ("think hard" if fmt is WireFormat.OPENAI else "ponder")
    assert answer == "Hello ✓"
    assert got[0][0] is True  # in stream order: the reasoning came first


def test_reasoning_under_either_key_and_never_twice():
    reader = TextReader(WireFormat.OPENAI)
    stream = [
        chunk({"reasoning": "a"}),  # vLLM, Ollama, LM Studio, OpenRouter
        chunk({"reasoning_content": "b"}),  # llama.cpp, older vLLM
        chunk({"reasoning_content": "c", "reasoning": "c"}),
        chunk({"content": "d"}),
    ]
    got = pieces(reader, stream)
    assert [(p.reasoning, str(p)) for p in got] == [
        (True, "a"),
        (True, "b"),
        (True, "c"),
        (False, "d"),
    ]


def test_a_piece_is_yielded_while_the_server_holds_the_next_event(server, llama):
    seen = threading.Event()
    outcome: Dict[str, bool] = {}

    def route(reply: Route) -> None:
        reply.start(200)
        reply.write(chunk({"content": "first"}))
        outcome["released"] = seen.wait(5)
        reply.write(chunk({"content": " second"}) + FINISH + USAGE + DONE)
        reply.end()

    server.route("POST", CHAT, route)
    got = []
    with llama.execute(chat_job()) as stream:
        for piece in stream.iter_text():
            got.append(piece)
            seen.set()
    assert outcome == {"released": True}
    assert got == ["first", " second"]


# -- events are not chunks ---------------------------------------------------------


@pytest.mark.parametrize(
    "fmt, steps", [(WireFormat.OPENAI, OPENAI_STREAM), (ANTHROPIC, ANTHROPIC_STREAM)]
)
def test_events_split_across_reads_at_every_byte_boundary(fmt, steps):
    body = b"".join(steps)
    whole = pieces(TextReader(fmt), [body])
    assert "".join(p for p in whole if not p.reasoning) == "Hello ✓"
    for at in range(1, len(body)):
        reader = TextReader(fmt)
        assert pieces(reader, [body[:at], body[at:]]) == whole, at
        assert reader.terminated and reader.finish_reason, at


@pytest.mark.parametrize(
    "fmt, steps", [(WireFormat.OPENAI, OPENAI_STREAM), (ANTHROPIC, ANTHROPIC_STREAM)]
)
def test_skimming_a_text_reader_still_reads_every_event(fmt, steps):
    # The usage reader only skims a long stream's middle; the text is everywhere.
    reader = TextReader(fmt)
    taken: List[TextDelta] = []
    for step in steps:
        reader.skim(step)
        taken += reader.take()
    reader.close()
    assert taken + reader.take() == pieces(TextReader(fmt), steps)


def test_a_stream_written_byte_by_byte_reads_as_the_same_text(server, llama):
    body = b"".join(OPENAI_STREAM)
    server.stream("POST", CHAT, [body[i : i + 1] for i in range(len(body))])
    with llama.execute(chat_job()) as stream:
        assert stream.text() == "Hello ✓"


def test_events_split_across_reads_by_the_server(server, llama):
    body = b"".join(ANTHROPIC_STREAM)
    third = len(body) // 3
    steps = [body[:third], PAUSE, body[third : 2 * third], PAUSE, body[2 * third :]]
    server.stream("POST", MESSAGES, steps)
    with llama.execute(chat_job(ANTHROPIC)) as stream:
        assert stream.text() == "Hello ✓"


def test_crlf_comments_and_non_json_data_do_not_disturb_the_text(server, llama):
    steps = [
        b": OPENROUTER PROCESSING\r\n\r\n",
        chunk({"content": "a"}).replace(b"\n", b"\r\n"),
        b"data: not json at all\n\n",
        b"data: [1, 2]\n\n",
        b'data: {"choices": "no list"}\n\n',
        b"event: message\r\n" + chunk({"content": "b"}).replace(b"\n", b"\r"),
        PAUSE,
        b'data: {"choices":[{"index":0,"delta":{"content":"c"}}]}\r',
        PAUSE,
        b"\n\r\n",
        FINISH,
        DONE,
    ]
    server.stream("POST", CHAT, steps)
    with llama.execute(chat_job()) as stream:
        assert list(stream.iter_text()) == ["a", "b", "c"]
    assert stream.result is not None


def test_a_last_event_without_its_blank_line_is_read(server, llama):
    server.stream("POST", CHAT, [chunk({"content": "a"}), b"data: [DONE]"])
    with llama.execute(chat_job()) as stream:
        assert stream.text() == "a"


# -- how a stream ends -----------------------------------------------------------


def test_an_in_band_error_raises_after_the_text_before_it(server, llama):
    server.stream("POST", CHAT, [chunk({"content": "Hel"}), PAUSE, LLAMA_ERROR])
    got: List[str] = []
    with llama.execute(chat_job()) as stream:
        with pytest.raises(StreamError, match="slot crashed"):
            for piece in stream.iter_text():
                got.append(piece)
    assert got == ["Hel"]
    assert stream.result is None


def test_a_cut_stream_raises(server, llama):
    server.stream("POST", MESSAGES, [A_START, *text_block("Hel")])
    with llama.execute(chat_job(ANTHROPIC)) as stream:
        with pytest.raises(StreamError, match="before its terminator"):
            stream.text()


def test_iter_text_after_bytes_were_taken_is_refused(server, llama):
    server.stream("POST", CHAT, [ROLE, PAUSE, FINISH, DONE])
    with llama.execute(chat_job()) as stream:
        next(stream)
        with pytest.raises(RuntimeError, match="from its start"):
            stream.text()


# -- reply and complete ------------------------------------------------------------


def test_reply_assembles_text_reasoning_and_result(server, llama):
    server.stream("POST", CHAT, OPENAI_STREAM)
    with llama.execute(chat_job()) as stream:
        reply = stream.reply()
    assert reply == Reply("Hello ✓", "think hard", stream.result)
    assert reply.finish_reason == "stop"
    assert Reply.from_json(reply.to_json()) == reply


@pytest.mark.parametrize("fmt", [WireFormat.OPENAI, ANTHROPIC])
def test_complete_returns_the_whole_reply(server, llama, fmt):
    server.stream("POST", CHAT, OPENAI_STREAM)
    server.stream("POST", MESSAGES, ANTHROPIC_STREAM)
    reply = llama.complete(chat_job(fmt))
    assert reply.text == "Hello ✓"
    if fmt is WireFormat.OPENAI:
        assert (reply.reasoning, reply.finish_reason) == ("think hard", "stop")
        assert reply.result.input_tokens == 12
    else:
        assert (reply.reasoning, reply.finish_reason) == ("ponder", "max_tokens")
    assert reply.result.bytes_relayed > 0


def test_complete_serves_a_body_that_asks_for_no_stream(server, llama):
    server.stream("POST", CHAT, OPENAI_STREAM)
    job = chat_job()
    job.request["stream"] = False
    assert llama.complete(job).text == "Hello ✓"
    assert server.last(CHAT).json()["stream"] is True
    assert job.request["stream"] is False  # the caller's dict is left alone


@pytest.mark.parametrize("value", [False, None, 0, "true"])
def test_execute_refuses_stream_off_before_any_io(server, llama, value):
    job = chat_job()
    job.request["stream"] = value
    with pytest.raises(ValueError, match=r"sets stream to .*complete\(\)") as info:
        llama.execute(job)
    assert f"stream to {json.dumps(value)}," in str(info.value)
    with pytest.raises(ValueError):
        llama.run(job, lambda data: None)
    assert server.requests == []
