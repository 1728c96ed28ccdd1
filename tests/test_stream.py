"""The streaming relay: byte-exact, immediate, and honest about how a stream ends.

Everything goes through the public API (``execute``/``run``) against a scripted
HTTP server on 127.0.0.1. The server writes exactly the bytes a test names, so the
relay's output can be compared with what the upstream sent, byte for byte.
"""

from __future__ import annotations

import gc
import threading
import time
from typing import Any, Dict, Iterator, List, Tuple

import pytest

from provider_agent.backend import (
    BackendTimeoutError,
    CallbackSink,
    Job,
    JobCancelledError,
    JobResult,
    JobSink,
    LlamaCppBackend,
    OpenRouterBackend,
    ProtocolError,
    StreamError,
    VllmBackend,
    WireFormat,
)
from provider_agent.backend.stream import PARSE_BATCH

from .server import Reply, ScriptedServer
from .sse import DONE, text_block
from .sse import data as sse
from .sse import event as anthropic

CHAT = "/v1/chat/completions"
MESSAGES = "/v1/messages"
PAUSE = 0.1  # between writes that must arrive as separate reads


def delta(text: str, finish: Any = None) -> bytes:
    choice = {"index": 0, "delta": {"content": text}, "finish_reason": finish}
    return sse({"object": "chat.completion.chunk", "choices": [choice]})


USAGE = sse(
    {
        "object": "chat.completion.chunk",
        "choices": [],
        "usage": {"prompt_tokens": 12, "completion_tokens": 28, "total_tokens": 40},
    }
)
A_START = anthropic(
    "message_start",
    {
        "type": "message_start",
        "message": {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "content": [],
            "usage": {"input_tokens": 12, "output_tokens": 0},
        },
    },
)
A_BLOCK, A_TEXT, A_BLOCK_STOP = text_block("Hi")
A_STOP = anthropic("message_stop", {"type": "message_stop"})


def a_delta(usage: Dict[str, int]) -> bytes:
    return anthropic(
        "message_delta",
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": usage},
    )


def chat_job(fmt: WireFormat = WireFormat.OPENAI, deadline_ms: int = 20_000) -> Job:
    request = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8}
    return Job.new("test-model", request, fmt, deadline_ms)


def only_bytes(steps: List[Any]) -> bytes:
    return b"".join(step for step in steps if isinstance(step, bytes))


def peer_gone(reply: Reply, within: float = 2.0) -> bool:
    """Whether the client has closed the connection: writes to a closed peer fail
    (the first one draws a reset, the next one raises)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            reply.write(b": probe\n\n")
        except OSError:
            return True
        time.sleep(0.02)
    return False


class Watcher:
    """A route that writes ``head``, holds until ``release`` is set (10 s at
    most), then reports whether the client had closed the connection."""

    def __init__(self, head: List[bytes]) -> None:
        self.head = head
        self.release = threading.Event()
        self.done = threading.Event()
        self.closed: Any = None

    def __call__(self, reply: Reply) -> None:
        try:
            reply.start(200)
            for data in self.head:
                reply.write(data)
            self.release.wait(10)
            self.closed = peer_gone(reply)
        finally:
            self.done.set()

    def client_closed(self) -> bool:
        self.release.set()
        assert self.done.wait(5), "the route did not finish"
        return self.closed is True


@pytest.fixture
def llama(server: ScriptedServer) -> Iterator[LlamaCppBackend]:
    with LlamaCppBackend(server.url) as backend:
        yield backend


@pytest.fixture
def vllm(server: ScriptedServer) -> Iterator[VllmBackend]:
    with VllmBackend(server.url) as backend:
        yield backend


def serve(server: ScriptedServer, path: str, steps: List[Any], mode: str) -> None:
    """Serve ``steps`` (bytes and pauses) chunked, close-delimited or with a
    Content-Length."""
    if mode != "length":
        server.stream("POST", path, steps, chunked=mode == "chunked")
        return
    body = only_bytes(steps)

    def route(reply: Reply) -> None:
        reply.start(200, chunked=False, length=len(body))
        for step in steps:
            if isinstance(step, bytes):
                reply.raw(step)
            else:
                time.sleep(step)

    server.route("POST", path, route)


# -- 1. byte-exact relay -------------------------------------------------------

AWKWARD: List[Any] = [
    b":\n\n",
    b": keep-alive\r\n\r\n",
    b"event: message\r\n"
    b'data: {"choices":[{"index":0,"delta":{"content":"\xff\xfe\x80"}}]}\r\n\r\n',
    delta("two ") + b": in between\n\n" + delta("events in one write"),
    b'data: {"choices":[{"index":0,"delta":{"cont',
    PAUSE,
    b'ent":"split"}}]}\n',
    PAUSE,
    b"\n",
    b'data: {"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3}}\r',
    PAUSE,
    b"\n\r\n",
    b": OPENROUTER PROCESSING\n\n",
    b"data: [DONE]\r\n\r\n",
]


@pytest.mark.parametrize("mode", ["chunked", "close", "length"])
def test_execute_relays_every_byte_exactly(server, llama, mode):
    serve(server, CHAT, AWKWARD, mode)
    with llama.execute(chat_job()) as stream:
        chunks = list(stream)
    assert all(isinstance(chunk, bytes) and chunk for chunk in chunks)
    assert b"".join(chunks) == only_bytes(AWKWARD)
    result = stream.result
    assert isinstance(result, JobResult)
    assert (result.input_tokens, result.output_tokens) == (7, 3)
    assert result.bytes_relayed == len(only_bytes(AWKWARD))


@pytest.mark.parametrize("mode", ["chunked", "close", "length"])
def test_run_pushes_every_byte_exactly_into_the_sink(server, llama, mode):
    serve(server, CHAT, AWKWARD, mode)
    received: List[bytes] = []
    result = llama.run(chat_job(), received.append)
    assert b"".join(received) == only_bytes(AWKWARD)
    assert (result.input_tokens, result.output_tokens) == (7, 3)
    assert result.bytes_relayed == len(only_bytes(AWKWARD))


def test_anthropic_stream_is_relayed_exactly(server, llama):
    steps: List[Any] = [
        A_START,
        b":\n\n",
        A_BLOCK,
        A_TEXT,
        PAUSE,
        A_BLOCK_STOP,
        a_delta({"output_tokens": 28}),
        A_STOP,
    ]
    server.stream("POST", MESSAGES, steps)
    received: List[bytes] = []
    result = llama.run(chat_job(WireFormat.ANTHROPIC), received.append)
    assert b"".join(received) == only_bytes(steps)
    assert (result.input_tokens, result.output_tokens) == (12, 28)


# -- 2. immediacy --------------------------------------------------------------


@pytest.mark.parametrize("mode", ["chunked", "close", "length"])
def test_an_event_reaches_the_sink_while_the_server_holds_the_next(server, llama, mode):
    first = delta("first")
    rest = delta("second") + USAGE + DONE
    body = first + rest
    seen_first = threading.Event()
    outcome: Dict[str, bool] = {}

    def route(reply: Reply) -> None:
        if mode == "length":
            reply.start(200, chunked=False, length=len(body))
            send = reply.raw
        else:
            reply.start(200, chunked=mode == "chunked")
            send = reply.write
        send(first)
        # Event 2 is held back until the sink has event 1: a relay that waits
        # for more data (fixed-size reads, line buffering) leaves this False.
        outcome["released"] = seen_first.wait(5)
        send(rest)
        reply.end()

    server.route("POST", CHAT, route)
    received: List[bytes] = []

    def sink(data: bytes) -> None:
        received.append(data)
        if first in b"".join(received):
            seen_first.set()

    result = llama.run(chat_job(), sink)
    assert outcome == {"released": True}
    assert b"".join(received) == body
    assert received[0] == first
    assert result.output_tokens == 28


@pytest.mark.parametrize("mode", ["chunked", "close", "length"])
def test_each_read_is_handed_over_as_its_own_chunk(server, llama, mode):
    writes = [delta("a"), b":\n\n", delta("b\xff"), USAGE + DONE]
    steps: List[Any] = []
    for data in writes:
        steps += [data, PAUSE]
    serve(server, CHAT, steps, mode)
    with llama.execute(chat_job()) as stream:
        chunks = list(stream)
    assert chunks == writes


def test_a_partial_event_is_handed_over_before_its_end_arrives(server, llama):
    head, tail = b'data: {"choices":[{"index":0,"del', b'ta":{}}]}\n\n' + USAGE + DONE
    seen_head = threading.Event()
    outcome: Dict[str, bool] = {}

    def route(reply: Reply) -> None:
        reply.start(200)
        reply.write(head)
        outcome["released"] = seen_head.wait(5)
        reply.write(tail)
        reply.end()

    server.route("POST", CHAT, route)
    with llama.execute(chat_job()) as stream:
        assert next(stream) == head
        seen_head.set()
        rest = b"".join(stream)
    assert outcome == {"released": True}
    assert rest == tail


# -- 3. StreamError ------------------------------------------------------------

VLLM_ERROR = sse(
    {
        "error": {
            "message": "context length exceeded",
            "type": "BadRequestError",
            "param": None,
            "code": 400,
        }
    }
)
LLAMA_ERROR = sse(
    {"error": {"code": 500, "message": "slot crashed", "type": "server_error"}}
)
OPENROUTER_ERROR = sse(
    {
        "id": "cmpl-abc123",
        "object": "chat.completion.chunk",
        "provider": "openai",
        "error": {
            "code": "server_error",
            "message": "Provider disconnected unexpectedly",
        },
        "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "error"}],
    }
)

IN_BAND = {
    "vllm": ([delta("Hel"), PAUSE, VLLM_ERROR, DONE], "context length exceeded"),
    "llamacpp": ([delta("Hel"), PAUSE, LLAMA_ERROR], "slot crashed"),
    "openrouter": (
        [b": OPENROUTER PROCESSING\n\n", delta("Hel"), PAUSE, OPENROUTER_ERROR],
        "Provider disconnected unexpectedly",
    ),
    "openrouter-done": (
        [delta("Hel"), PAUSE, OPENROUTER_ERROR, DONE],
        "Provider disconnected unexpectedly",
    ),
}


def make_backend(server: ScriptedServer, kind: str):
    if kind.startswith("openrouter"):
        backend = OpenRouterBackend("sk-test", base_url=server.url + "/api/v1")
        return backend, "/api/v1/chat/completions"
    if kind == "vllm":
        return VllmBackend(server.url), CHAT
    return LlamaCppBackend(server.url), CHAT


@pytest.mark.parametrize("kind", sorted(IN_BAND))
def test_in_band_error_raises_after_every_byte_was_iterated(server, kind):
    steps, text = IN_BAND[kind]
    backend, path = make_backend(server, kind)
    server.stream("POST", path, steps)
    got: List[bytes] = []
    with backend:
        stream = backend.execute(chat_job())
        with pytest.raises(StreamError) as info:
            with stream:
                for chunk in stream:
                    got.append(chunk)
    assert b"".join(got) == only_bytes(steps)
    assert info.value.bytes_relayed == len(only_bytes(steps))
    assert stream.bytes_relayed == len(only_bytes(steps))
    assert info.value.backend == backend.id
    assert text in str(info.value)
    assert stream.result is None


@pytest.mark.parametrize("kind", sorted(IN_BAND))
def test_in_band_error_raises_after_every_byte_reached_the_sink(server, kind):
    steps, text = IN_BAND[kind]
    backend, path = make_backend(server, kind)
    server.stream("POST", path, steps)
    received: List[bytes] = []
    with backend, pytest.raises(StreamError) as info:
        backend.run(chat_job(), received.append)
    assert b"".join(received) == only_bytes(steps)
    assert info.value.bytes_relayed == len(only_bytes(steps))
    assert text in str(info.value)


ANTHROPIC_ERRORS = {
    # vLLM: Anthropic envelope, then its stray [DONE].
    "vllm": (
        [
            A_START,
            A_BLOCK,
            A_TEXT,
            PAUSE,
            anthropic(
                "error",
                {
                    "type": "error",
                    "error": {"type": "internal_error", "message": "engine died"},
                },
            ),
            DONE,
        ],
        "engine died",
    ),
    # llama.cpp: a bare object after ``event: error``, and no message_stop.
    "llamacpp": (
        [
            A_BLOCK,
            A_TEXT,
            PAUSE,
            anthropic(
                "error",
                {"code": 500, "message": "slot crashed", "type": "server_error"},
            ),
        ],
        "slot crashed",
    ),
}


@pytest.mark.parametrize("kind", sorted(ANTHROPIC_ERRORS))
def test_anthropic_error_event_raises_after_every_byte(server, kind):
    steps, text = ANTHROPIC_ERRORS[kind]
    backend = VllmBackend(server.url) if kind == "vllm" else LlamaCppBackend(server.url)
    server.stream("POST", MESSAGES, steps)
    received: List[bytes] = []
    with backend, pytest.raises(StreamError) as info:
        backend.run(chat_job(WireFormat.ANTHROPIC), received.append)
    assert b"".join(received) == only_bytes(steps)
    assert info.value.bytes_relayed == len(only_bytes(steps))
    assert text in str(info.value)


CUT: Dict[str, Tuple[str, WireFormat, bool, List[Any]]] = {
    "openai-chunked": (
        CHAT,
        WireFormat.OPENAI,
        True,
        [delta("Hel"), PAUSE, delta("lo"), b":\n\n"],
    ),
    "openai-close": (
        CHAT,
        WireFormat.OPENAI,
        False,
        [delta("Hel"), PAUSE, delta("lo")],
    ),
    "anthropic-chunked": (
        MESSAGES,
        WireFormat.ANTHROPIC,
        True,
        [A_START, A_BLOCK, PAUSE, A_TEXT],
    ),
    # The whole body but the last event, which the server never sent.
    "anthropic-no-stop": (
        MESSAGES,
        WireFormat.ANTHROPIC,
        True,
        [A_START, A_BLOCK, A_TEXT, A_BLOCK_STOP, a_delta({"output_tokens": 2})],
    ),
}


@pytest.mark.parametrize("case", sorted(CUT))
def test_stream_ended_before_its_terminator_is_a_stream_error(server, llama, case):
    path, fmt, chunked, steps = CUT[case]
    server.stream("POST", path, steps, chunked=chunked)
    received: List[bytes] = []
    with pytest.raises(StreamError) as info:
        llama.run(chat_job(fmt), received.append)
    assert b"".join(received) == only_bytes(steps)
    assert info.value.bytes_relayed == len(only_bytes(steps))
    assert info.value.backend == llama.id


def test_connection_closed_inside_a_chunked_body_is_a_stream_error(server, llama):
    sent = delta("Hel") + delta("lo")
    seen = threading.Event()

    def route(reply: Reply) -> None:
        reply.start(200)
        reply.write(sent)
        seen.wait(5)
        reply.raw(b'40\r\ndata: {"cho')  # a chunk that never finishes
        reply.close()

    server.route("POST", CHAT, route)
    received: List[bytes] = []

    def sink(data: bytes) -> None:
        received.append(data)
        seen.set()

    with pytest.raises(StreamError) as info:
        llama.run(chat_job(), sink)
    delivered = b"".join(received)
    assert delivered.startswith(sent)
    assert delivered == sent + b'data: {"cho'[: len(delivered) - len(sent)]
    assert info.value.bytes_relayed == len(delivered)
    # A chunked body is relayed a whole chunk at a time: a chunk the connection
    # was cut inside of is not handed over.
    assert delivered == sent


@pytest.mark.parametrize("chunked", [True, False])
def test_reset_mid_stream_is_a_stream_error_after_the_bytes(server, llama, chunked):
    sent = delta("Hel") + b":\n\n" + delta("lo")
    seen = threading.Event()

    def route(reply: Reply) -> None:
        reply.start(200, chunked=chunked)
        reply.write(sent)
        seen.wait(5)  # reset only once the client has the bytes
        time.sleep(0.05)
        reply.reset()

    server.route("POST", CHAT, route)
    received: List[bytes] = []

    def sink(data: bytes) -> None:
        received.append(data)
        if b"".join(received) == sent:
            seen.set()

    with pytest.raises(StreamError) as info:
        llama.run(chat_job(), sink)
    assert b"".join(received) == sent
    assert info.value.bytes_relayed == len(sent)
    assert "reset" in str(info.value).lower()


@pytest.mark.parametrize("mode", ["chunked", "close", "length"])
def test_empty_200_stream_is_a_stream_error(server, llama, mode):
    serve(server, CHAT, [], mode)
    received: List[bytes] = []
    with pytest.raises(StreamError) as info:
        llama.run(chat_job(), received.append)
    assert received == []
    assert info.value.bytes_relayed == 0
    assert info.value.backend == llama.id


def test_comments_only_stream_is_a_stream_error(server, llama):
    server.stream("POST", CHAT, [b":\n\n", b": OPENROUTER PROCESSING\n\n"])
    received: List[bytes] = []
    with pytest.raises(StreamError):
        llama.run(chat_job(), received.append)
    assert b"".join(received) == b":\n\n: OPENROUTER PROCESSING\n\n"


# -- 4. Anthropic streams as the engines really send them ----------------------


def test_llamacpp_anthropic_stream_without_message_start(server, llama):
    steps: List[Any] = [
        b":\n\n",
        A_BLOCK,
        A_TEXT,
        A_BLOCK_STOP,
        a_delta({"output_tokens": 2}),
        A_STOP,
    ]
    server.stream("POST", MESSAGES, steps)
    with llama.execute(chat_job(WireFormat.ANTHROPIC)) as stream:
        assert b"".join(stream) == only_bytes(steps)
    assert stream.result is not None
    assert stream.result.input_tokens is None
    assert stream.result.output_tokens == 2


def test_llamacpp_anthropic_stream_with_no_text_at_all(server, llama):
    steps: List[Any] = [a_delta({"output_tokens": 0}), A_STOP]
    server.stream("POST", MESSAGES, steps)
    result = llama.run(chat_job(WireFormat.ANTHROPIC), lambda data: None)
    assert (result.input_tokens, result.output_tokens) == (None, 0)


def test_vllm_anthropic_stream_with_trailing_done(server, vllm):
    steps: List[Any] = [
        A_START,
        A_BLOCK,
        A_TEXT,
        A_BLOCK_STOP,
        a_delta({"input_tokens": 12, "output_tokens": 28}),
        A_STOP,
        DONE,
    ]
    server.stream("POST", MESSAGES, steps)
    received: List[bytes] = []
    result = vllm.run(chat_job(WireFormat.ANTHROPIC), received.append)
    assert b"".join(received) == only_bytes(steps)
    assert (result.input_tokens, result.output_tokens) == (12, 28)


def test_done_does_not_terminate_an_anthropic_stream(server, llama):
    steps: List[Any] = [A_START, A_BLOCK, A_TEXT, DONE]
    server.stream("POST", MESSAGES, steps)
    with pytest.raises(StreamError):
        llama.run(chat_job(WireFormat.ANTHROPIC), lambda data: None)


# -- 5. cancel -----------------------------------------------------------------


def test_cancel_from_another_thread_unblocks_the_reader(server, llama):
    first = delta("Hel")
    watcher = Watcher([first])
    server.route("POST", CHAT, watcher)
    stream = llama.execute(chat_job())
    try:
        assert next(stream) == first
        timer = threading.Timer(0.3, stream.cancel)
        started = time.monotonic()
        timer.start()
        with pytest.raises(JobCancelledError) as info:
            next(stream)  # blocks: the server holds the next event for 10 s
        waited = time.monotonic() - started
        timer.join()
    finally:
        assert watcher.client_closed()
    assert 0.25 <= waited < 2.0
    assert info.value.backend == llama.id
    assert stream.result is None
    assert stream.bytes_relayed == len(first)


def test_cancel_from_another_thread_while_run_iterates(server, llama):
    first = delta("Hel")
    watcher = Watcher([first])
    server.route("POST", CHAT, watcher)
    stream = llama.execute(chat_job())
    received: List[bytes] = []
    errors: List[BaseException] = []

    def consume() -> None:
        try:
            for chunk in stream:
                received.append(chunk)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            errors.append(exc)

    reader = threading.Thread(target=consume, daemon=True)
    reader.start()
    deadline = time.monotonic() + 5
    while not received and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)  # the reader is now blocked in its next read
    started = time.monotonic()
    stream.cancel()
    reader.join(5)
    waited = time.monotonic() - started
    assert not reader.is_alive()
    assert watcher.client_closed()
    assert waited < 2.0
    assert received == [first]
    assert len(errors) == 1 and type(errors[0]) is JobCancelledError


def test_cancel_before_iteration_starts(server, llama):
    watcher = Watcher([])
    server.route("POST", CHAT, watcher)
    stream = llama.execute(chat_job())
    stream.cancel()
    started = time.monotonic()
    with pytest.raises(JobCancelledError):
        next(stream)
    assert time.monotonic() - started < 2.0
    assert watcher.client_closed()
    assert stream.result is None


def test_cancel_before_iteration_wins_over_data_already_received(server, llama):
    watcher = Watcher([delta("Hel"), USAGE + DONE])
    server.route("POST", CHAT, watcher)
    stream = llama.execute(chat_job())
    time.sleep(0.2)  # the whole stream has reached our socket
    stream.cancel()
    try:
        with pytest.raises(JobCancelledError):
            next(stream)
    finally:
        stream.close()
    assert watcher.client_closed()
    assert stream.result is None


def test_cancel_twice_and_after_the_end_is_harmless(server, llama):
    server.stream("POST", CHAT, [delta("a"), USAGE, DONE])
    stream = llama.execute(chat_job())
    body = b"".join(stream)
    stream.cancel()
    stream.cancel()
    stream.close()
    assert body == delta("a") + USAGE + DONE
    assert stream.result is not None and stream.result.output_tokens == 28


# -- 6. leaving early, sinks ---------------------------------------------------


@pytest.mark.parametrize("how", ["close", "with", "drop"])
def test_leaving_the_loop_early_closes_the_connection(server, llama, how):
    first = delta("Hel")
    watcher = Watcher([first])
    server.route("POST", CHAT, watcher)
    got: List[bytes] = []
    if how == "close":
        stream = llama.execute(chat_job())
        for chunk in stream:
            got.append(chunk)
            break
        stream.close()
        assert stream.result is None
    elif how == "with":
        with llama.execute(chat_job()) as stream:
            for chunk in stream:
                got.append(chunk)
                break
        assert stream.result is None
    else:
        for chunk in llama.execute(chat_job()):
            got.append(chunk)
            break
        gc.collect()
    assert got == [first]
    assert watcher.client_closed()
    # The backend is still fine for the next job.
    server.stream("POST", CHAT, [delta("ok"), USAGE, DONE])
    assert llama.run(chat_job(), lambda data: None).output_tokens == 28


class SinkFull(Exception):
    pass


def test_a_raising_sink_aborts_the_stream_and_its_error_propagates(server, llama):
    first = delta("Hel")
    watcher = Watcher([first])
    server.route("POST", CHAT, watcher)
    error = SinkFull("client went away")
    calls: List[bytes] = []

    def sink(data: bytes) -> None:
        calls.append(data)
        raise error

    with pytest.raises(SinkFull) as info:
        llama.run(chat_job(), sink)
    assert info.value is error
    assert calls == [first]
    assert watcher.client_closed()


def test_a_raising_sink_object_propagates_unchanged(server, llama):
    watcher = Watcher([delta("Hel")])
    server.route("POST", CHAT, watcher)

    class Sink:
        def send_chunk(self, data: bytes) -> None:
            raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        llama.run(chat_job(), Sink())
    assert watcher.client_closed()


BODY = [delta("Hel"), PAUSE, delta("lo"), USAGE, DONE]


def test_run_accepts_a_job_sink_object(server, llama):
    server.stream("POST", CHAT, BODY)

    class Collector:
        def __init__(self) -> None:
            self.chunks: List[bytes] = []

        def send_chunk(self, data: bytes) -> None:
            self.chunks.append(data)

    sink = Collector()
    assert isinstance(sink, JobSink)
    result = llama.run(chat_job(), sink)
    assert b"".join(sink.chunks) == only_bytes(BODY)
    assert (result.input_tokens, result.output_tokens) == (12, 28)


def test_run_accepts_a_plain_callable(server, llama):
    server.stream("POST", CHAT, BODY)
    received: List[bytes] = []
    result = llama.run(chat_job(), received.append)
    assert b"".join(received) == only_bytes(BODY)
    assert result.bytes_relayed == len(only_bytes(BODY))


def test_callback_sink_wraps_a_callable(server, llama):
    server.stream("POST", CHAT, BODY)
    received: List[bytes] = []
    sink = CallbackSink(received.append)
    assert isinstance(sink, JobSink)
    sink.send_chunk(b"direct")
    assert received == [b"direct"]
    received.clear()
    result = llama.run(chat_job(), sink)
    assert b"".join(received) == only_bytes(BODY)
    assert result.output_tokens == 28


def test_callback_sink_refuses_a_non_callable():
    with pytest.raises(TypeError):
        CallbackSink(b"not callable")  # type: ignore[arg-type]


# -- 7. the result and the reply's content type --------------------------------


def test_result_is_set_only_once_the_stream_is_exhausted(server, llama):
    steps: List[Any] = [0.3, delta("Hel"), 0.2, delta("lo"), USAGE, DONE]
    server.stream("POST", CHAT, steps)
    stream = llama.execute(chat_job())
    assert stream.result is None
    first = next(stream)
    assert first == delta("Hel")
    assert stream.result is None
    rest = list(stream)
    result = stream.result
    assert isinstance(result, JobResult)
    assert first + b"".join(rest) == only_bytes(steps)
    assert (result.input_tokens, result.output_tokens) == (12, 28)
    assert result.bytes_relayed == len(only_bytes(steps)) == stream.bytes_relayed
    assert result.first_byte_ms is not None
    assert 250 <= result.first_byte_ms < 3000
    assert result.first_byte_ms + 150 <= result.duration_ms < 5000
    with pytest.raises(StopIteration):
        next(stream)
    assert stream.result is result


def test_result_keeps_the_finish_reason(server, llama):
    server.stream("POST", CHAT, [delta("Hi"), delta("", "length"), USAGE, DONE])
    with llama.execute(chat_job()) as stream:
        b"".join(stream)
    assert stream.result is not None
    assert stream.result.finish_reason == "length"


def test_a_cancelled_stream_keeps_what_it_had_read(server, llama):
    hold = threading.Event()
    server.stream("POST", CHAT, [delta("Hi", "stop"), USAGE, PAUSE, hold, DONE])
    got = b""
    with llama.execute(chat_job()) as stream:
        assert stream.partial_result.input_tokens is None
        with pytest.raises(JobCancelledError):
            for data in stream:
                got += data
                if USAGE in got:
                    stream.cancel()
    hold.set()
    assert stream.result is None
    partial = stream.partial_result
    assert (partial.input_tokens, partial.output_tokens) == (12, 28)
    assert partial.finish_reason == "stop"
    assert partial.bytes_relayed == len(got)
    time.sleep(0.01)
    assert stream.partial_result.duration_ms == partial.duration_ms  # stopped


def test_partial_result_is_the_result_after_a_clean_end(server, llama):
    server.stream("POST", CHAT, [delta("Hi"), USAGE, DONE])
    with llama.execute(chat_job()) as stream:
        b"".join(stream)
    assert stream.partial_result is stream.result


def test_result_without_a_usage_chunk_has_no_tokens(server, llama):
    server.stream("POST", CHAT, [delta("Hel"), delta("", "stop"), DONE])
    result = llama.run(chat_job(), lambda data: None)
    assert (result.input_tokens, result.output_tokens) == (None, None)
    assert result.bytes_relayed == len(delta("Hel") + delta("", "stop") + DONE)


@pytest.mark.parametrize(
    "content_type, body, media",
    [
        (
            "text/html; charset=utf-8",
            b"<html><title>Welcome to nginx</title><body>hi</body></html>",
            "text/html",
        ),
        ("application/json", b'{"id":"chatcmpl-1","choices":[]}', "application/json"),
    ],
)
def test_a_200_that_is_not_an_event_stream_is_a_protocol_error(
    server, llama, content_type, body, media
):
    def route(reply: Reply) -> None:
        reply.start(200, content_type=content_type, length=len(body))
        reply.raw(body)

    server.route("POST", CHAT, route)
    received: List[bytes] = []
    with pytest.raises(ProtocolError) as info:
        llama.run(chat_job(), received.append)
    assert received == []
    assert info.value.backend == llama.id
    assert str(info.value).startswith(llama.id)
    assert media in str(info.value)
    with pytest.raises(ProtocolError):
        llama.execute(chat_job())


# -- streams longer than one parse batch ------------------------------------------
# Usage is parsed a batch of reads at a time (PARSE_BATCH bytes); these streams
# run past several batches, so what matters comes after the first.

LONG_RUN = [delta("token ")] * 700  # about 60 KB


def test_usage_and_finish_after_several_batches_are_read(server, llama):
    finish = delta("", "length")
    half = len(finish) // 2
    # The finish event is split across two writes, so across two reads.
    server.stream(
        "POST", CHAT, [*LONG_RUN, finish[:half], PAUSE, finish[half:], USAGE, DONE]
    )
    with llama.execute(chat_job()) as stream:
        got = b"".join(stream)
    assert len(got) > 3 * PARSE_BATCH
    assert stream.result is not None
    assert (stream.result.input_tokens, stream.result.output_tokens) == (12, 28)
    assert stream.result.finish_reason == "length"


def test_an_in_band_error_after_several_batches_raises(server, llama):
    error = sse({"error": {"message": "engine overloaded", "type": "server_error"}})
    server.stream("POST", CHAT, [*LONG_RUN, error])
    got = b""
    with pytest.raises(StreamError, match="engine overloaded"):
        with llama.execute(chat_job()) as stream:
            for data in stream:
                got += data
    assert got.endswith(error) and len(got) > 3 * PARSE_BATCH


def test_a_stopped_stream_keeps_the_usage_of_reads_not_yet_parsed(server, llama):
    hold = threading.Event()
    # vLLM's continuous usage: a usage chunk mid-stream, then more tokens.
    server.stream("POST", CHAT, [*LONG_RUN, USAGE, delta("more"), hold, DONE])
    with llama.execute(chat_job()) as stream:
        for data in stream:
            if data == delta("more"):
                break
        stream.cancel()
    hold.set()
    assert stream.result is None
    assert (
        stream.partial_result.input_tokens,
        stream.partial_result.output_tokens,
    ) == (
        12,
        28,
    )


def test_an_in_band_error_in_the_middle_of_a_long_stream_raises(server, llama):
    error = sse({"error": {"message": "engine overloaded"}})
    steps = [*LONG_RUN, error, *LONG_RUN, *LONG_RUN, USAGE, DONE]
    server.stream("POST", CHAT, steps)
    received: List[bytes] = []
    with pytest.raises(StreamError, match="engine overloaded"):
        llama.run(chat_job(), received.append)
    assert b"".join(received) == only_bytes(steps)


@pytest.mark.parametrize("after", [0, 1, 60, 140])  # token events after the usage
def test_usage_anywhere_in_the_last_batch_is_read(server, llama, after):
    # However the batches fall, a usage that less than a batch of bytes
    # follows is read whole at the end.
    tail = [delta("x")] * after
    assert len(b"".join(tail)) < PARSE_BATCH
    finish = delta("", "stop")
    server.stream("POST", CHAT, [*LONG_RUN, finish, USAGE, *tail, DONE])
    with llama.execute(chat_job()) as stream:
        assert len(b"".join(stream)) > 3 * PARSE_BATCH
    assert stream.result is not None
    assert (stream.result.input_tokens, stream.result.output_tokens) == (12, 28)
    assert stream.result.finish_reason == "stop"


def test_a_running_usage_shows_while_a_long_stream_runs(server, llama):
    # vLLM's continuous usage: every chunk carries the counts so far.
    def counted(n: int) -> bytes:
        usage = {"prompt_tokens": 12, "completion_tokens": n, "total_tokens": 12 + n}
        return sse(
            {"choices": [{"index": 0, "delta": {"content": "t"}}], "usage": usage}
        )

    hold = threading.Event()
    events = [counted(n) for n in range(1, 1501)]  # about 190 KB
    server.stream("POST", CHAT, [*events, hold, counted(1501), DONE])
    got = 0
    with llama.execute(chat_job()) as stream:
        for data in stream:
            got += len(data)
            if got == len(b"".join(events)):
                # What was read lags by a batch or two of the bytes relayed.
                partial = stream.partial_result
                assert partial.input_tokens == 12
                assert partial.output_tokens is not None
                assert 1500 - 3 * PARSE_BATCH // len(events[0]) < partial.output_tokens
                hold.set()
    assert stream.result is not None
    assert (stream.result.input_tokens, stream.result.output_tokens) == (12, 1501)


def test_anthropic_message_start_of_a_long_stream_is_read(server, llama):
    texts = [text_block("token " * 20)[1]] * 400  # about 100 KB
    steps = [A_START, A_BLOCK, *texts, A_BLOCK_STOP, a_delta({"output_tokens": 28})]
    server.stream("POST", MESSAGES, [*steps, A_STOP])
    with llama.execute(chat_job(WireFormat.ANTHROPIC)) as stream:
        assert len(b"".join(stream)) > 3 * PARSE_BATCH
    assert stream.result is not None
    assert (stream.result.input_tokens, stream.result.output_tokens) == (12, 28)


def test_chunk_extensions_and_trailers_keep_the_connection(server, llama):
    # The relay reads chunk by chunk itself and hands the end of the body
    # (the last chunk and the trailers) back to urllib3, which returns the
    # connection to the pool: two jobs, one connection.
    events = [delta("Hi"), USAGE, DONE]

    def send(reply: Reply) -> None:
        reply.start(200)  # chunked
        for number, event in enumerate(events):
            reply.raw(b"%x;n=%d\r\n%s\r\n" % (len(event), number, event))
        reply.raw(b"0\r\nX-Trailer: done\r\n\r\n")

    server.route("POST", CHAT, send)
    for _ in range(2):
        with llama.execute(chat_job()) as stream:
            assert b"".join(stream) == b"".join(events)
        assert stream.result is not None and stream.result.output_tokens == 28
    assert server.connections == 1


# -- chunks that arrive together --------------------------------------------------
# One read of the socket often brings many chunks (an engine writes faster than a
# client reads): each is still handed over on its own, in order, as it was sent.


def frames(chunks: List[bytes]) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks)


# A one-byte chunk, a comment, and a chunk larger than http.client's read buffer.
TOGETHER = [delta("a"), b":\n\n", delta("b" * 20_000), delta("c"), b"\n", USAGE, DONE]


def sent_at_once(server: ScriptedServer, body: bytes, then_close: bool = False) -> None:
    def send(reply: Reply) -> None:
        reply.start(200)  # chunked; the route frames the chunks itself
        reply.raw(body)  # one write: the client reads them together
        if then_close:
            reply.close()

    server.route("POST", CHAT, send)


def test_chunks_read_together_are_handed_over_one_by_one(server, llama):
    sent_at_once(server, frames(TOGETHER) + b"0\r\n\r\n")
    for _ in range(2):
        with llama.execute(chat_job()) as stream:
            time.sleep(0.1)  # the whole body is in our socket before the first read
            assert list(stream) == TOGETHER
        assert stream.result is not None and stream.result.output_tokens == 28
        assert stream.bytes_relayed == len(b"".join(TOGETHER))
    # The last chunk came in the same read as the others: still the same connection.
    assert server.connections == 1


def test_a_size_line_with_an_extension_among_chunks_read_together(server, llama):
    head = [delta("a"), delta("b")]
    extended = b"%x;name=value\r\n%s\r\n" % (len(USAGE), USAGE)
    sent_at_once(server, frames(head) + extended + frames([DONE]) + b"0\r\n\r\n")
    with llama.execute(chat_job()) as stream:
        time.sleep(0.1)
        assert list(stream) == [*head, USAGE, DONE]
    assert stream.result is not None and stream.result.output_tokens == 28


@pytest.mark.parametrize(
    "bad", [b"zz\r\nnot a chunk\r\n", b'40\r\ndata: {"cho'], ids=["size", "cut"]
)
def test_the_whole_chunks_before_a_bad_one_read_together_are_handed_over(
    server, llama, bad
):
    good = [delta("a"), delta("b"), b":\n\n"]
    sent_at_once(server, frames(good) + bad, then_close=True)
    received: List[bytes] = []
    stream = llama.execute(chat_job())
    time.sleep(0.1)
    with pytest.raises(StreamError) as info:
        stream.send_to(received.append)
    assert received == good
    assert info.value.bytes_relayed == len(b"".join(good))


def test_a_size_line_is_cut_at_its_first_lf_among_chunks_read_together(server, llama):
    # The second chunk says 8 bytes and holds 9: its last byte then starts the
    # next size line, "\n9", which readline() (and urllib3) cut at the LF and
    # refuse. Read together, the chunks must fail the same way.
    head = [delta("a"), b"data: x\n"]
    body = frames(head[:1]) + b"8\r\ndata: x\n\n\r\n9\r\ndata: y\n\n\r\n0\r\n\r\n"
    sent_at_once(server, body, then_close=True)
    received: List[bytes] = []
    stream = llama.execute(chat_job())
    time.sleep(0.1)
    with pytest.raises(StreamError):
        stream.send_to(received.append)
    assert received == head


def test_cancel_drops_the_chunks_read_but_not_yet_handed_over(server, llama):
    chunks = [delta(str(number)) for number in range(20)]
    sent_at_once(server, frames(chunks))
    stream = llama.execute(chat_job())
    time.sleep(0.1)
    received: List[bytes] = []
    with pytest.raises(JobCancelledError):
        for chunk in stream:
            received.append(chunk)
            stream.cancel()
    assert received == chunks[:1]
    assert stream.bytes_relayed == len(chunks[0])


def test_the_deadline_drops_the_chunks_read_but_not_yet_handed_over(server, llama):
    chunks = [delta(str(number)) for number in range(20)]
    sent_at_once(server, frames(chunks))
    stream = llama.execute(chat_job(deadline_ms=400))
    received: List[bytes] = []
    with pytest.raises(BackendTimeoutError):
        for chunk in stream:
            received.append(chunk)
            time.sleep(0.6)  # past the deadline, with 19 chunks read and waiting
    assert received == chunks[:1]
