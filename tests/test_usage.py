"""``UsageParser``: usage, in-band errors and the terminator, read beside the relay.

The parser is fed whatever the socket gave, so every stream here is also fed byte
by byte and in random splits (seeded), and must give the same answer each time.
"""

from __future__ import annotations

import json
import random
import tracemalloc
from typing import Any, Iterable, List, Tuple

import pytest

from provider_agent.backend import WireFormat
from provider_agent.backend._replies import describe_error
from provider_agent.backend.usage import MAX_PENDING, UsageParser

from .sse import DONE, text_block
from .sse import data as sse
from .sse import event as anthropic

OPENAI = WireFormat.OPENAI
ANTHROPIC = WireFormat.ANTHROPIC


def delta(text: str) -> bytes:
    return sse({"choices": [{"index": 0, "delta": {"content": text}}]})


def usage_chunk(prompt: int, completion: int) -> bytes:
    return sse(
        {
            "object": "chat.completion.chunk",
            "choices": [],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            },
        }
    )


#: An OpenAI stream with everything a real one may carry: comments, keep-alives,
#: an ``event:`` line, non-JSON data, non-object JSON, invalid UTF-8, and the usage
#: chunk with ``choices: []``.
OPENAI_STREAM = b"".join(
    [
        b":\n\n",
        b": OPENROUTER PROCESSING\n\n",
        sse(
            {"choices": [{"index": 0, "delta": {"role": "assistant"}}]}, event="message"
        ),
        delta("Hel"),
        b'data: {"choices":[{"index":0,"delta":{"content":"\xff\xfe"}}]}\n\n',
        b"data: not json at all\n\n",
        b"data: [1, 2, 3]\n\n",
        b": a comment\ndata: 42\n\n",
        sse({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
        usage_chunk(12, 28),
        DONE,
    ]
)


def message_start(input_tokens: int, **cache: int) -> bytes:
    return anthropic(
        "message_start",
        {
            "type": "message_start",
            "message": {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "content": [],
                "usage": {"input_tokens": input_tokens, "output_tokens": 0, **cache},
            },
        },
    )


def message_delta(**usage: int) -> bytes:
    return anthropic(
        "message_delta",
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": usage},
    )


_, TEXT, _ = text_block("Hi \xe9")
STOP = anthropic("message_stop", {"type": "message_stop"})

#: Ollama's shape: an estimate in message_start, the real numbers in message_delta,
#: plus a ping, a comment and vLLM's stray [DONE] at the end.
ANTHROPIC_STREAM = b"".join(
    [
        message_start(10),
        anthropic("ping", {"type": "ping"}),
        b":\n\n",
        *text_block("Hi \xe9"),
        message_delta(input_tokens=12, output_tokens=28),
        STOP,
        DONE,
    ]
)


def parse(
    wire_format: WireFormat, pieces: Iterable[bytes], close: bool = True
) -> UsageParser:
    parser = UsageParser(wire_format)
    for piece in pieces:
        parser.feed(piece)
    if close:
        parser.close()
    return parser


def outcome(parser: UsageParser) -> Tuple[Any, ...]:
    return (
        parser.input_tokens,
        parser.output_tokens,
        parser.terminated,
        parser.error,
    )


def byte_by_byte(data: bytes) -> List[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def random_split(data: bytes, seed: int) -> List[bytes]:
    rng = random.Random(seed)
    pieces, i = [], 0
    while i < len(data):
        size = rng.choice([0, 1, 1, 2, 3, 5, 8, 13, 40, 200])
        pieces.append(data[i : i + size])
        i += size
    return pieces


def crlf(data: bytes) -> bytes:
    return data.replace(b"\n", b"\r\n")


def bare_cr(data: bytes) -> bytes:
    return data.replace(b"\n", b"\r")


FRAMINGS = {"lf": lambda data: data, "crlf": crlf, "cr": bare_cr}

OPENAI_EXPECTED = (12, 28, True, None)
ANTHROPIC_EXPECTED = (12, 28, True, None)
STREAMS = {
    "openai": (OPENAI, OPENAI_STREAM, OPENAI_EXPECTED),
    "anthropic": (ANTHROPIC, ANTHROPIC_STREAM, ANTHROPIC_EXPECTED),
}


# -- splitting and framing -----------------------------------------------------


@pytest.mark.parametrize("framing", sorted(FRAMINGS))
@pytest.mark.parametrize("name", sorted(STREAMS))
def test_whole_stream_in_one_feed(name, framing):
    wire_format, data, expected = STREAMS[name]
    parser = parse(wire_format, [FRAMINGS[framing](data)])
    assert outcome(parser) == expected


@pytest.mark.parametrize("framing", sorted(FRAMINGS))
@pytest.mark.parametrize("name", sorted(STREAMS))
def test_byte_by_byte(name, framing):
    wire_format, data, expected = STREAMS[name]
    parser = parse(wire_format, byte_by_byte(FRAMINGS[framing](data)))
    assert outcome(parser) == expected


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("framing", sorted(FRAMINGS))
@pytest.mark.parametrize("name", sorted(STREAMS))
def test_random_splits(name, framing, seed):
    wire_format, data, expected = STREAMS[name]
    parser = parse(wire_format, random_split(FRAMINGS[framing](data), seed))
    assert outcome(parser) == expected


@pytest.mark.parametrize("name", sorted(STREAMS))
def test_lf_and_crlf_streams_are_complete_before_close(name):
    # Only a bare CR may need the next byte (or close) to know a line ended.
    wire_format, data, expected = STREAMS[name]
    for framed in (data, crlf(data)):
        parser = parse(wire_format, byte_by_byte(framed), close=False)
        assert outcome(parser) == expected


def test_crlf_split_across_two_feeds_is_one_line_ending():
    # Two data lines make one JSON document; a CRLF counted as two line endings
    # would end the event between them and lose the usage.
    parser = parse(
        OPENAI,
        [
            b'data: {"choices": [],\r',
            b'\ndata: "usage": {"prompt_tokens": 5, "completion_tokens": 6}}\r',
            b"\n\r",
            b"\ndata: [DONE]\r",
            b"\n\r\n",
        ],
        close=False,
    )
    assert outcome(parser) == (5, 6, True, None)


def test_crlf_split_across_feeds_in_an_anthropic_event():
    parser = parse(
        ANTHROPIC,
        [
            b"event: message_delta\r",
            b'\ndata: {"type": "message_delta",\r',
            b'\ndata: "usage": {"output_tokens": 3}}\r',
            b"\n\r",
            b'\nevent: message_stop\r\ndata: {"type": "message_stop"}\r\n\r',
            b"\n",
        ],
        close=False,
    )
    assert outcome(parser) == (None, 3, True, None)


def test_bare_cr_framing_across_feeds():
    parser = parse(
        OPENAI,
        [
            b'data: {"choices": [],\r',
            b'data: "usage": {"prompt_tokens": 1, ',
            b'"completion_tokens": 2}}\r',
            b"\r",
            b"data: [DONE]\r",
            b"\r",
        ],
    )
    assert outcome(parser) == (1, 2, True, None)


@pytest.mark.parametrize("framing", sorted(FRAMINGS))
def test_long_stream_keeps_usage_from_its_start(framing):
    # Far more text than the parser may hold: message_start's input tokens must
    # have been read as it went by, in every framing.
    text = TEXT * (3 * MAX_PENDING // len(TEXT))
    data = FRAMINGS[framing](
        message_start(12) + text + message_delta(output_tokens=28) + STOP
    )
    pieces = [data[i : i + 65536] for i in range(0, len(data), 65536)]
    assert outcome(parse(ANTHROPIC, pieces)) == (12, 28, True, None)


def test_feeding_nothing_changes_nothing():
    parser = UsageParser(OPENAI)
    for _ in range(3):
        parser.feed(b"")
    parser.close()
    assert outcome(parser) == (None, None, False, None)


# -- what is ignored -----------------------------------------------------------


def test_comment_lines_are_ignored():
    parser = parse(
        OPENAI,
        [
            b":\n\n: OPENROUTER PROCESSING\n\n",
            b": data: [DONE]\n\n",
            b':{"usage": {"prompt_tokens": 9}}\n\n',
        ],
    )
    assert outcome(parser) == (None, None, False, None)


def test_a_comment_line_inside_an_event_does_not_split_it():
    parser = parse(
        OPENAI,
        [
            b'data: {"choices": [],\n: keep-alive\n'
            b'data: "usage": {"prompt_tokens": 3, "completion_tokens": 4}}\n\n',
            DONE,
        ],
    )
    assert outcome(parser) == (3, 4, True, None)


def test_event_lines_in_openai_mode_do_not_hide_data():
    parser = parse(
        OPENAI,
        [
            sse(
                {"choices": [], "usage": {"prompt_tokens": 2, "completion_tokens": 3}},
                event="completion",
            ),
            b"event: done\ndata: [DONE]\n\n",
        ],
    )
    assert outcome(parser) == (2, 3, True, None)


@pytest.mark.parametrize(
    "data",
    [
        b"data: hello\n\n",
        b'data: {"usage": \n\n',
        b"data: \xff\xfe\xfd\n\n",
        b"data: [1, 2]\n\n",
        b"data: 42\n\n",
        b'data: "usage"\n\n',
        b"data: null\n\n",
        b"data: true\n\n",
        b"data:\n\n",
        b"retry: 100\nid: 7\n\n",
    ],
)
@pytest.mark.parametrize("wire_format", [OPENAI, ANTHROPIC])
def test_data_that_is_not_a_json_object_is_ignored(wire_format, data):
    parser = parse(wire_format, [data, usage_chunk(4, 5)])
    assert parser.error is None
    assert parser.terminated is False
    if wire_format is OPENAI:
        assert (parser.input_tokens, parser.output_tokens) == (4, 5)
    else:
        assert (parser.input_tokens, parser.output_tokens) == (None, None)


@pytest.mark.parametrize(
    "usage",
    [
        {"prompt_tokens": "12", "completion_tokens": "28"},
        {"prompt_tokens": True, "completion_tokens": False},
        {"prompt_tokens": -1, "completion_tokens": None},
        {"prompt_tokens": [12], "completion_tokens": {"n": 28}},
    ],
)
def test_junk_usage_values_are_ignored(usage):
    parser = parse(OPENAI, [sse({"choices": [], "usage": usage}), DONE])
    assert outcome(parser) == (None, None, True, None)


@pytest.mark.parametrize("usage", [None, 5, "lots", [1, 2]])
def test_a_usage_field_that_is_not_an_object_is_ignored(usage):
    parser = parse(OPENAI, [sse({"choices": [], "usage": usage}), DONE])
    assert outcome(parser) == (None, None, True, None)


# -- OpenAI usage --------------------------------------------------------------


def test_openai_usage_chunk_with_empty_choices():
    parser = parse(OPENAI, [delta("Hi"), usage_chunk(12, 28), DONE])
    assert (parser.input_tokens, parser.output_tokens) == (12, 28)


def test_openai_continuous_usage_stats_latest_wins():
    chunks = []
    for n in range(1, 5):
        chunk = {
            "choices": [{"index": 0, "delta": {"content": "x"}}],
            "usage": {
                "prompt_tokens": 12,
                "completion_tokens": n,
                "total_tokens": 12 + n,
            },
        }
        chunks.append(sse(chunk))
    parser = parse(OPENAI, chunks, close=False)
    assert (parser.input_tokens, parser.output_tokens) == (12, 4)
    parser.feed(usage_chunk(11, 3) + DONE)
    parser.close()
    assert (parser.input_tokens, parser.output_tokens) == (11, 3)


def test_openai_null_usage_after_real_usage_keeps_it():
    parser = parse(
        OPENAI,
        [usage_chunk(12, 28), sse({"choices": [], "usage": None}), DONE],
    )
    assert (parser.input_tokens, parser.output_tokens) == (12, 28)


def test_openai_usage_with_only_one_count():
    parser = parse(
        OPENAI, [sse({"choices": [], "usage": {"completion_tokens": 7}}), DONE]
    )
    assert (parser.input_tokens, parser.output_tokens) == (None, 7)


def test_openai_later_partial_usage_keeps_the_other_count():
    parser = parse(
        OPENAI,
        [usage_chunk(12, 28), sse({"choices": [], "usage": {"completion_tokens": 29}})],
    )
    assert (parser.input_tokens, parser.output_tokens) == (12, 29)


def test_openai_stream_without_usage():
    parser = parse(OPENAI, [delta("Hi"), DONE])
    assert outcome(parser) == (None, None, True, None)


def test_anthropic_usage_is_not_read_in_openai_mode():
    parser = parse(OPENAI, [message_start(12), message_delta(output_tokens=3), STOP])
    assert outcome(parser) == (None, None, False, None)


# -- finish reason ---------------------------------------------------------------


def finish_chunk(reason: Any, spaced: bool = False) -> bytes:
    chunk = {"choices": [{"index": 0, "delta": {}, "finish_reason": reason}]}
    if spaced:  # as Python's json.dumps writes it
        return b"data: " + json.dumps(chunk).encode() + b"\n\n"
    return sse(chunk)


@pytest.mark.parametrize("spaced", [False, True])
@pytest.mark.parametrize("reason", ["stop", "length", "tool_calls", "error"])
def test_openai_finish_reason(reason, spaced):
    stream = [delta("Hi"), finish_chunk(reason, spaced), usage_chunk(1, 2), DONE]
    assert parse(OPENAI, stream).finish_reason == reason


def test_openai_finish_reason_on_the_last_content_chunk():
    chunk = {
        "choices": [{"index": 0, "delta": {"content": "x"}, "finish_reason": "stop"}]
    }
    assert parse(OPENAI, [sse(chunk), DONE]).finish_reason == "stop"


@pytest.mark.parametrize("reason", [None, "", 3, ["stop"]])
def test_openai_finish_reason_that_is_not_a_name_is_ignored(reason):
    parser = parse(OPENAI, [finish_chunk("stop"), finish_chunk(reason), DONE])
    assert parser.finish_reason == "stop"


def test_no_finish_reason_is_none():
    assert parse(OPENAI, [delta("Hi"), DONE]).finish_reason is None
    assert parse(ANTHROPIC, [message_start(1), STOP]).finish_reason is None


def test_anthropic_stop_reason_of_message_delta():
    parser = parse(ANTHROPIC, [message_start(1), message_delta(output_tokens=3), STOP])
    assert parser.finish_reason == "end_turn"


def test_anthropic_stop_reason_is_not_read_in_openai_mode():
    parser = parse(OPENAI, [message_delta(output_tokens=3), DONE])
    assert parser.finish_reason is None


# -- Anthropic usage -----------------------------------------------------------


def test_anthropic_estimate_in_message_start_loses_to_message_delta():
    parser = parse(
        ANTHROPIC,
        [
            message_start(10),
            TEXT,
            message_delta(input_tokens=12, output_tokens=28),
            STOP,
        ],
    )
    assert outcome(parser) == (12, 28, True, None)


def test_anthropic_larger_message_start_wins_over_smaller_delta():
    parser = parse(
        ANTHROPIC,
        [message_start(15), message_delta(input_tokens=12, output_tokens=3), STOP],
    )
    assert (parser.input_tokens, parser.output_tokens) == (15, 3)


def test_anthropic_delta_with_output_only_keeps_message_start_input():
    parser = parse(
        ANTHROPIC, [message_start(12), message_delta(output_tokens=28), STOP]
    )
    assert outcome(parser) == (12, 28, True, None)


def test_anthropic_input_counts_the_prompt_cache_too():
    # llama.cpp, on a repeated prompt: one new token, the rest from its cache.
    start = message_start(1, cache_read_input_tokens=28)
    parser = parse(ANTHROPIC, [start, TEXT, message_delta(output_tokens=2), STOP])
    assert outcome(parser) == (29, 2, True, None)
    start = message_start(3, cache_creation_input_tokens=10, cache_read_input_tokens=5)
    parser = parse(ANTHROPIC, [start, message_delta(output_tokens=1), STOP])
    assert outcome(parser) == (18, 1, True, None)


def test_anthropic_cache_counts_without_input_tokens_are_not_a_count():
    start = message_start(0)
    start = start.replace(b'"input_tokens":0', b'"input_tokens":null')
    start = start.replace(b'"output_tokens":0', b'"cache_read_input_tokens":7')
    parser = parse(ANTHROPIC, [start, message_delta(output_tokens=1), STOP])
    assert outcome(parser) == (None, 1, True, None)


def test_anthropic_without_message_start():
    # llama.cpp's real stream when its first token is half a character.
    parser = parse(ANTHROPIC, [b":\n\n", TEXT, message_delta(output_tokens=2), STOP])
    assert outcome(parser) == (None, 2, True, None)


def test_anthropic_without_any_usage():
    parser = parse(ANTHROPIC, [STOP])
    assert outcome(parser) == (None, None, True, None)


def test_anthropic_type_in_data_without_event_lines():
    parser = parse(
        ANTHROPIC,
        [
            b'data: {"type": "message_delta", "usage": {"output_tokens": 4}}\n\n',
            b'data: {"type": "message_stop"}\n\n',
        ],
    )
    assert outcome(parser) == (None, 4, True, None)


@pytest.mark.parametrize("message", [None, "text", [1], {"usage": None}, {}])
def test_anthropic_message_start_without_usable_usage(message):
    start = anthropic("message_start", {"type": "message_start", "message": message})
    parser = parse(ANTHROPIC, [start, message_delta(output_tokens=1), STOP])
    assert outcome(parser) == (None, 1, True, None)


# -- the end of the stream -----------------------------------------------------


@pytest.mark.parametrize("tail", [b"", b"\n", b"\r", b"\r\n"])
def test_openai_final_event_without_blank_line_is_read_at_close(tail):
    parser = UsageParser(OPENAI)
    parser.feed(usage_chunk(12, 28) + b"data: [DONE]" + tail)
    assert parser.terminated is False
    parser.close()
    assert outcome(parser) == (12, 28, True, None)


@pytest.mark.parametrize("tail", [b"", b"\n", b"\r"])
def test_anthropic_final_event_without_blank_line_is_read_at_close(tail):
    parser = UsageParser(ANTHROPIC)
    parser.feed(
        message_start(12) + b'event: message_delta\ndata: {"type": "message_delta", '
        b'"usage": {"output_tokens": 5}}\n\n'
        + b'event: message_stop\ndata: {"type": "message_stop"}'
        + tail
    )
    assert parser.terminated is False
    parser.close()
    assert outcome(parser) == (12, 5, True, None)


def test_usage_in_the_unterminated_final_event_is_read_at_close():
    parser = UsageParser(OPENAI)
    parser.feed(
        delta("Hi") + b'data: {"choices": [], "usage": {"prompt_tokens": 1, '
        b'"completion_tokens": 2}}'
    )
    assert (parser.input_tokens, parser.output_tokens) == (None, None)
    parser.close()
    assert outcome(parser) == (1, 2, False, None)


def test_close_twice_is_harmless():
    parser = parse(OPENAI, [usage_chunk(1, 2) + b"data: [DONE]"])
    parser.close()
    assert outcome(parser) == (1, 2, True, None)


# -- terminators ---------------------------------------------------------------


@pytest.mark.parametrize(
    "wire_format, data, terminated",
    [
        (OPENAI, DONE, True),
        (OPENAI, b"data:[DONE]\n\n", True),
        (OPENAI, b"data: [DONE] \n\n", True),
        (OPENAI, b"event: message\ndata: [DONE]\n\n", True),
        (OPENAI, STOP, False),
        (OPENAI, b'data: {"choices": [{"finish_reason": "stop"}]}\n\n', False),
        (OPENAI, b": data: [DONE]\n\n", False),
        (OPENAI, b"data: [DONE]x\n\n", False),
        (ANTHROPIC, DONE, False),
        (ANTHROPIC, STOP, True),
        (ANTHROPIC, b"event: message_stop\ndata: {}\n\n", True),
        (ANTHROPIC, b'data: {"type": "message_stop"}\n\n', True),
        (ANTHROPIC, message_delta(output_tokens=1), False),
    ],
)
def test_terminators(wire_format, data, terminated):
    assert parse(wire_format, [data]).terminated is terminated


def test_anthropic_done_after_message_stop_keeps_it_terminated():
    parser = parse(ANTHROPIC, [STOP, DONE])
    assert parser.terminated is True


# -- in-band errors ------------------------------------------------------------


@pytest.mark.parametrize(
    "wire_format, data, expected",
    [
        # Venice, Ollama native, vLLM 401: the error is a string.
        (OPENAI, sse({"error": "model crashed"}), "model crashed"),
        # vLLM: nested object, int code, then [DONE].
        (
            OPENAI,
            sse(
                {
                    "error": {
                        "message": "context length exceeded",
                        "type": "BadRequestError",
                        "param": None,
                        "code": 400,
                    }
                }
            )
            + DONE,
            "BadRequestError: context length exceeded",
        ),
        # llama.cpp: nested object and no [DONE].
        (
            OPENAI,
            sse(
                {
                    "error": {
                        "code": 500,
                        "message": "slot crashed",
                        "type": "server_error",
                    }
                }
            ),
            "server_error: slot crashed",
        ),
        # Old vLLM: flat.
        (
            OPENAI,
            sse(
                {
                    "object": "error",
                    "message": "The model `x` does not exist.",
                    "type": "NotFoundError",
                    "param": None,
                    "code": 404,
                }
            ),
            "NotFoundError: The model `x` does not exist.",
        ),
        # OpenRouter: top-level error beside choices with finish_reason "error".
        (
            OPENAI,
            sse(
                {
                    "id": "cmpl-1",
                    "object": "chat.completion.chunk",
                    "error": {
                        "code": "server_error",
                        "message": "Provider disconnected unexpectedly",
                    },
                    "choices": [
                        {"index": 0, "delta": {"content": ""}, "finish_reason": "error"}
                    ],
                }
            ),
            "server_error: Provider disconnected unexpectedly",
        ),
        # Anthropic envelope (Anthropic, vLLM, Ollama, OpenRouter).
        (
            ANTHROPIC,
            anthropic(
                "error",
                {
                    "type": "error",
                    "error": {"type": "overloaded_error", "message": "Overloaded"},
                },
            )
            + DONE,
            "overloaded_error: Overloaded",
        ),
        # llama.cpp's Anthropic route: a bare object after ``event: error``.
        (
            ANTHROPIC,
            anthropic(
                "error",
                {"code": 500, "message": "slot crashed", "type": "server_error"},
            ),
            "server_error: slot crashed",
        ),
        # The envelope without an event line.
        (
            ANTHROPIC,
            sse(
                {"type": "error", "error": {"type": "api_error", "message": "Internal"}}
            ),
            "api_error: Internal",
        ),
    ],
)
def test_in_band_errors(wire_format, data, expected):
    parser = parse(wire_format, [delta("Hel") if wire_format is OPENAI else TEXT, data])
    assert parser.error == expected
    # The same bytes byte by byte give the same error.
    assert parse(wire_format, byte_by_byte(data)).error == expected


@pytest.mark.parametrize(
    "data",
    [
        sse({"choices": [], "error": None}),
        sse({"choices": [], "error": ""}),
        sse({"choices": [], "error": {}}),
        sse({"object": "chat.completion.chunk", "choices": []}),
    ],
)
def test_empty_error_fields_are_not_errors(data):
    parser = parse(OPENAI, [data, DONE])
    assert parser.error is None
    assert parser.terminated is True


def test_error_does_not_stop_usage_or_terminator_reading():
    parser = parse(
        OPENAI,
        [usage_chunk(3, 4), sse({"error": {"message": "late", "code": 500}}), DONE],
    )
    assert outcome(parser) == (3, 4, True, "500: late")


# -- size limits ---------------------------------------------------------------


def test_a_large_complete_event_is_parsed():
    text = "x" * (600 * 1024)
    data = (
        sse(
            {
                "choices": [],
                "note": text,
                "usage": {"prompt_tokens": 8, "completion_tokens": 9},
            }
        )
        + DONE
    )
    pieces = [data[i : i + 65536] for i in range(0, len(data), 65536)]
    assert outcome(parse(OPENAI, pieces)) == (8, 9, True, None)


def test_an_oversized_unfinished_event_is_dropped_in_bounded_memory():
    assert MAX_PENDING == 1 << 20
    piece = b"y" * 65536
    fed = 0
    parser = UsageParser(OPENAI)
    tracemalloc.start()
    try:
        parser.feed(b'data: {"choices": [], "note": "')
        while fed < 16 * MAX_PENDING:
            parser.feed(piece)
            fed += len(piece)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Buffering the whole event would need 16 MiB (and twice that to copy it).
    assert peak < 4 * MAX_PENDING
    # The stream goes on: the next complete events are read as usual.
    parser.feed(b'", "usage": {"prompt_tokens": 1}}\n\n')
    parser.feed(usage_chunk(6, 7) + DONE)
    parser.close()
    assert (parser.input_tokens, parser.output_tokens) == (6, 7)
    assert parser.terminated is True
    assert parser.error is None


def test_an_oversized_event_at_close_is_not_parsed():
    parser = UsageParser(OPENAI)
    parser.feed(
        b'data: {"choices": [], "usage": {"prompt_tokens": 1, '
        b'"completion_tokens": 1}, "note": "'
    )
    for _ in range(20):
        parser.feed(b"z" * 65536)
    parser.feed(b'"}')
    parser.close()
    assert outcome(parser) == (None, None, False, None)


# -- skim: the middle of a long stream ----------------------------------------
# A stream's middle reaches the parser through skim() (JobStream holds each batch
# until another has followed it): there only an in-band error, and the last
# complete event of each piece (a running usage), are read.

MIDDLE = delta("token ") * 200  # about 12 KB of events that hold no marker
ERROR = sse({"error": {"message": "engine overloaded"}})  # "error" once


@pytest.mark.parametrize("joint", ["feed|skim", "skim|skim", "skim|feed"])
@pytest.mark.parametrize("into", range(len(b"error") + 1))
def test_skim_reads_an_in_band_error_cut_anywhere(joint, into):
    stream = MIDDLE + ERROR + MIDDLE
    at = len(MIDDLE) + ERROR.index(b"error") + into  # a cut inside the marker
    first, second = stream[:at], stream[at:]
    parser = UsageParser(OPENAI)
    if joint == "feed|skim":
        parser.feed(first)
        parser.skim(second)
    else:
        parser.feed(MIDDLE)
        parser.skim(first)
        (parser.skim if joint == "skim|skim" else parser.feed)(second)
    parser.skim(MIDDLE)
    parser.feed(usage_chunk(12, 28) + DONE)
    parser.close()
    assert parser.error is not None and "engine overloaded" in parser.error
    assert (parser.input_tokens, parser.output_tokens) == (12, 28)


@pytest.mark.parametrize("line_end", [b"\n", b"\r\n", b"\r"], ids=["LF", "CRLF", "CR"])
def test_skim_reads_the_running_usage_of_its_last_complete_event(line_end):
    def ends(data: bytes) -> bytes:
        return data.replace(b"\n", line_end)

    # vLLM's continuous usage: a usage on every chunk, the latest counts.
    running = b"".join(delta("token ") + usage_chunk(9, n) for n in range(1, 30))
    unfinished = b'data: {"choices": [], "usage": {"prompt_tokens": 9, '
    parser = UsageParser(OPENAI)
    parser.feed(ends(MIDDLE))
    parser.skim(ends(running + unfinished))
    assert (parser.input_tokens, parser.output_tokens) == (9, 29)
    assert parser.terminated is False
    # The unfinished event is kept for what follows.
    parser.feed(ends(b'"completion_tokens": 30}}\n\n' + DONE))
    parser.close()
    assert outcome(parser) == (9, 30, True, None)


@pytest.mark.parametrize("after", [b": ping\n\n", b"\n\n", b":\n\n" * 40])
def test_skim_reads_a_running_usage_followed_by_keep_alives(after):
    parser = UsageParser(OPENAI)
    parser.feed(MIDDLE)
    parser.skim(MIDDLE + usage_chunk(9, 5) + after)
    assert (parser.input_tokens, parser.output_tokens) == (9, 5)


def test_skim_reads_an_event_longer_than_a_piece_that_ends_its_piece():
    note = "z" * 40_000
    big = sse({"choices": [], "note": note, "usage": {"prompt_tokens": 5}})
    pieces = [big[i : i + 16384] for i in range(0, len(big), 16384)]
    parser = UsageParser(OPENAI)
    parser.feed(MIDDLE)
    for piece in pieces:
        parser.skim(piece)
    assert parser.input_tokens == 5
    parser.skim(MIDDLE)
    parser.feed(DONE)
    parser.close()
    assert outcome(parser) == (5, None, True, None)


def test_skim_keeps_anthropic_message_start_read_at_the_head():
    middle = TEXT * 150
    parser = UsageParser(ANTHROPIC)
    parser.feed(message_start(12) + middle)
    parser.skim(middle)
    parser.skim(middle)
    parser.feed(message_delta(output_tokens=28) + STOP)
    parser.close()
    assert outcome(parser) == (12, 28, True, None)


# -- describe_error ------------------------------------------------------------


@pytest.mark.parametrize(
    "error, expected",
    [
        ("model crashed", "model crashed"),
        (
            {
                "message": "context length exceeded",
                "type": "BadRequestError",
                "param": None,
                "code": 400,
            },
            "BadRequestError: context length exceeded",
        ),
        (
            {"code": 500, "message": "slot crashed", "type": "server_error"},
            "server_error: slot crashed",
        ),
        (
            {
                "message": "model 'foo' not found",
                "type": "not_found_error",
                "param": None,
                "code": None,
            },
            "not_found_error: model 'foo' not found",
        ),
        (
            {"code": 400, "message": "foo/bar is not a valid model ID"},
            "400: foo/bar is not a valid model ID",
        ),
        (
            {"code": "server_error", "message": "Provider disconnected unexpectedly"},
            "server_error: Provider disconnected unexpectedly",
        ),
        (
            {
                "object": "error",
                "message": "The model `x` does not exist.",
                "type": "NotFoundError",
                "param": None,
                "code": 404,
            },
            "NotFoundError: The model `x` does not exist.",
        ),
        (
            {
                "type": "error",
                "error": {"type": "overloaded_error", "message": "Overloaded"},
            },
            "overloaded_error: Overloaded",
        ),
        ({"error": "no such model"}, "no such model"),
        ({"detail": "Not Found"}, "Not Found"),
        (
            {"message": "invalid_request_error: bad", "type": "invalid_request_error"},
            "invalid_request_error: bad",
        ),
        ({"message": None, "code": None}, '{"message": null, "code": null}'),
        (42, "42"),
        (None, "None"),
    ],
)
def test_describe_error(error, expected):
    assert describe_error(error) == expected


def test_describe_error_cuts_a_long_string():
    assert describe_error("e" * 5000) == "e" * 500


def test_describe_error_cuts_a_dict_without_a_message():
    text = describe_error({"junk": "j" * 5000})
    assert text == json.dumps({"junk": "j" * 5000})[:200]
