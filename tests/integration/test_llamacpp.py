"""The SDK against a live llama.cpp ``llama-server`` built from source, serving
a tiny random-weight GGUF with ``-c 512 -np 2`` (two slots of 256 tokens)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Dict, List

import pytest

from provider_agent.backend import (
    BackendTimeoutError,
    BadStatusError,
    Job,
    JobCancelledError,
    LlamaCppBackend,
    WireFormat,
)

from ..polling import eventually
from .conftest import LLAMA_CTX, LLAMA_SLOTS, llama_engine
from .engines import Engine
from .helpers import (
    Background,
    assert_up,
    chat,
    events,
    get_json,
    openai_text,
    payloads,
    relay,
    tapped,
)
from .tap import Tap, bodies

pytestmark = pytest.mark.integration

MODEL = "tiny"  # a single-model llama-server answers whatever name is asked


def busy_slots(url: str) -> List[int]:
    """The ids of the slots llama-server says are generating now (``/slots``)."""
    return [slot["id"] for slot in get_json(url + "/slots") if slot["is_processing"]]


def long_job(**options: Any) -> Job:
    # 20,000 tokens: seconds of generation, thanks to --context-shift.
    return chat(MODEL, max_tokens=20_000, **options)


def test_health_is_reachable_with_a_latency(llamacpp: LlamaCppBackend) -> None:
    assert_up(llamacpp)


def test_health_says_loading_while_the_model_loads(
    llama_server_binary: Path, tiny_gguf: Path
) -> None:
    # llama-server listens before it has loaded the model and answers 503
    # meanwhile: for a few tens of milliseconds with the tiny model, so a probe
    # may miss the window; a start or two more give it every chance.
    seen: List[str] = []
    for _ in range(3):
        engine = llama_engine(llama_server_binary, tiny_gguf, name="llama-loading")
        with LlamaCppBackend(engine.url) as backend:
            engine.spawn()
            try:
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    health = backend.health()
                    if health.reachable:
                        break
                    seen.append(health.last_error or "")
                assert health.reachable, engine.log_tail()
            finally:
                engine.stop()
        assert engine.stopped_clean
        if any("loading (HTTP 503)" in error for error in seen):
            break
    assert any("loading (HTTP 503)" in error for error in seen), seen
    # Before the port opened: unreachable, saying why.
    assert all("loading" in error or "refused" in error for error in seen), seen


def test_list_models_reports_the_per_slot_window(
    llama: Engine, llamacpp: LlamaCppBackend
) -> None:
    (card,) = get_json(llama.url + "/v1/models")["data"]
    assert card["meta"]["n_ctx"] == LLAMA_CTX // LLAMA_SLOTS == 256
    assert card["meta"]["n_ctx_train"] == 512  # the model's, not a request's
    # ...and what each slot really has.
    assert [slot["n_ctx"] for slot in get_json(llama.url + "/slots")] == [256, 256]
    (model,) = llamacpp.list_models()
    assert model.model_id == card["id"]
    assert model.context_window == 256
    assert model.native is True


def test_openai_stream_is_relayed_verbatim(llama: Engine) -> None:
    job = chat(MODEL, max_tokens=12)
    head, sent, relayed, result = tapped(LlamaCppBackend, llama.port, job)
    assert head.startswith(b"HTTP/1.1 200")
    assert b"server: llama.cpp" in head.lower()
    assert relayed == sent
    assert relayed.endswith(b"data: [DONE]\n\n")
    chunks = payloads(relayed)
    roles = [
        i
        for i, c in enumerate(chunks)
        if c["choices"] and "role" in c["choices"][0]["delta"]
    ]
    assert roles in ([0], [])  # see the next test for when it is missing
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    # The usage chunk carries llama.cpp's own ``timings`` beside ``usage``.
    final = chunks[-1]
    assert final["choices"] == []
    usage, timings = final["usage"], final["timings"]
    assert usage["completion_tokens"] == timings["predicted_n"] == 12
    assert usage["prompt_tokens"] == timings["prompt_n"] + timings["cache_n"]
    assert result.input_tokens == usage["prompt_tokens"] > 0
    assert result.output_tokens == usage["completion_tokens"]
    assert result.bytes_relayed == len(sent)


@pytest.mark.parametrize(
    ("grammar", "role_chunk"),
    # Open-ended: with ignore_eos, a grammar the model completes early (a "."
    # within the 6 tokens) ends in llama.cpp's "empty grammar stack" error.
    [("root ::= [a-z ]+", True), ('root ::= "é" [a-z ]+', False)],
)
def test_openai_role_chunk_rides_on_a_whole_first_token(
    llama: Engine, grammar: str, role_chunk: bool
) -> None:
    # llama.cpp sends the role chunk with the first token's text. "é" is not in
    # the vocabulary: the grammar forces its first byte token, half a
    # character, which the server holds back, and the role chunk never comes.
    job = chat(MODEL, max_tokens=6, grammar=grammar)
    _, sent, relayed, result = tapped(LlamaCppBackend, llama.port, job)
    assert relayed == sent
    chunks = payloads(relayed)
    first = chunks[0]["choices"][0]["delta"]
    assert ("role" in first) is role_chunk
    assert not any(
        "role" in c["choices"][0]["delta"] for c in chunks[1:] if c["choices"]
    )
    assert openai_text(relayed).startswith("é") is not role_chunk
    assert result.output_tokens == 6
    assert relayed.endswith(b"data: [DONE]\n\n")


def anthropic_usage(raw: bytes) -> Dict[str, Any]:
    """The usage the stream itself states: input only where a message_start
    came (this llama-server omits it when the first token is half a character)."""
    found: Dict[str, Any] = {"input": None, "output": None}
    for event in payloads(raw):
        if event["type"] == "message_start":
            usage = event["message"]["usage"]
            found["input"] = (
                usage["input_tokens"]
                + usage.get("cache_read_input_tokens", 0)
                + usage.get("cache_creation_input_tokens", 0)
            )
        elif event["type"] == "message_delta":
            assert "input_tokens" not in event["usage"]  # llama.cpp sends output only
            found["output"] = event["usage"]["output_tokens"]
    return found


@pytest.mark.parametrize("prompt", ["hello world", "count one two three", "zz"])
def test_anthropic_stream_is_relayed_verbatim(llama: Engine, prompt: str) -> None:
    job = chat(MODEL, prompt, max_tokens=6, wire_format=WireFormat.ANTHROPIC)
    _, sent, relayed, result = tapped(LlamaCppBackend, llama.port, job)
    assert relayed == sent
    names = [name for name, _ in events(relayed)]
    assert names[-2:] == ["message_delta", "message_stop"]
    assert b"[DONE]" not in relayed
    expected = anthropic_usage(relayed)
    assert expected["output"] == 6
    assert result.output_tokens == expected["output"]
    assert result.input_tokens == expected["input"]


def test_anthropic_input_tokens_count_the_prompt_cache(
    llamacpp: LlamaCppBackend,
) -> None:
    # The OpenAI route states the whole prompt; the Anthropic route splits the
    # same prompt into new and cached tokens, and the SDK adds them up again.
    prompt = "say hello world once and twice"
    _, openai = relay(llamacpp, chat(MODEL, prompt, max_tokens=1))
    starts = []
    for _ in range(5):  # message_start may be missing; the cache is warm
        job = chat(MODEL, prompt, max_tokens=8, wire_format=WireFormat.ANTHROPIC)
        chunks, result = relay(llamacpp, job)
        found = [e for e in payloads(b"".join(chunks)) if e["type"] == "message_start"]
        if found:
            starts.append((found[0]["message"]["usage"], result))
    assert starts, "no message_start in five streams of eight tokens"
    for usage, result in starts:
        assert usage["cache_read_input_tokens"] > 0
        assert result.input_tokens == openai.input_tokens
        assert result.input_tokens > usage["input_tokens"]


def test_a_single_model_server_answers_any_model_name(
    llamacpp: LlamaCppBackend, tiny_gguf: Path
) -> None:
    # Outside router mode llama-server ignores ``model``: no ModelNotFoundError.
    chunks, result = relay(llamacpp, chat("no-such-model", max_tokens=2))
    assert result.output_tokens == 2
    assert payloads(b"".join(chunks))[0]["model"].endswith(tiny_gguf.name)


def test_a_bad_request_is_a_bad_status_and_the_next_job_runs(
    llamacpp: LlamaCppBackend,
) -> None:
    bad = Job.new(MODEL, {"messages": "not a list"})
    with pytest.raises(BadStatusError) as caught:
        llamacpp.execute(bad)
    assert caught.value.status == 400
    assert "Expected 'messages' to be an array" in str(caught.value)
    # llama-server closed that connection; the next job gets a fresh one.
    _, result = relay(llamacpp, chat(MODEL, max_tokens=2))
    assert result.output_tokens == 2


def test_deadline_cuts_a_long_generation(
    llama: Engine, llamacpp: LlamaCppBackend
) -> None:
    chunks: List[bytes] = []
    started = time.monotonic()
    with pytest.raises(BackendTimeoutError) as caught:
        llamacpp.run(long_job(deadline_ms=1500), chunks.append)
    elapsed = time.monotonic() - started
    # Tokens come within milliseconds on an idle machine; 1.5 s leaves room for
    # a busy one, where the first token was once later than 0.5 s.
    assert chunks, "the deadline should cut the stream, not the wait for it"
    # Loose bounds: a socket timeout cut to the deadline may wake a millisecond
    # early, a busy machine may run the test late; the generation takes ~10 s.
    assert 1.49 <= elapsed < 5.0, elapsed
    assert llamacpp.id in str(caught.value)
    # llama-server notices the closed connection and frees the slot.
    assert eventually(lambda: not busy_slots(llama.url), 5), busy_slots(llama.url)


def test_cancel_from_another_thread_frees_the_slot(
    llama: Engine, llamacpp: LlamaCppBackend
) -> None:
    job = long_job()
    running = Background(llamacpp, job)
    assert running.first_chunk.wait(30), "no token arrived"
    assert busy_slots(llama.url), "the job should be generating"
    assert llamacpp.cancel(job.job_id) is True
    running.join(5)
    assert isinstance(running.error, JobCancelledError), running.error
    assert eventually(lambda: not busy_slots(llama.url), 5), busy_slots(llama.url)
    started = time.monotonic()
    _, result = relay(llamacpp, chat(MODEL, max_tokens=4))
    assert result.output_tokens == 4
    assert time.monotonic() - started < 5  # not after the 20,000 tokens


def test_wrong_key_is_an_auth_error(llama_keyed: Engine, llama_key: str) -> None:
    wrong = "wrong-" + llama_key
    with LlamaCppBackend(llama_keyed.url, api_key=wrong) as backend:
        # /health is open to all on llama-server: it cannot judge the key.
        assert backend.health().reachable
        errors = []
        with pytest.raises(BadStatusError) as caught:
            backend.list_models()
        errors.append(caught.value)
        for wire_format in WireFormat:
            with pytest.raises(BadStatusError) as caught:
                backend.execute(chat(MODEL, wire_format=wire_format))
            errors.append(caught.value)
    for error in errors:
        assert error.status == 401
        assert "API key rejected" in str(error) and "Invalid API Key" in str(error)
        assert wrong not in str(error) and wrong not in repr(error)
        assert wrong not in error.body


def test_right_key_works_on_both_routes(llama_keyed: Engine, llama_key: str) -> None:
    with LlamaCppBackend(llama_keyed.url, api_key=llama_key) as backend:
        assert backend.list_models()[0].context_window == 256
        for wire_format in WireFormat:
            job = chat(MODEL, max_tokens=3, wire_format=wire_format)
            _, result = relay(backend, job)
            assert result.output_tokens == 3


def socket_count() -> int:
    """Sockets this test process holds open (Linux ``/proc``)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        except OSError:
            pass  # closed while listing
    return count


def test_a_hundred_jobs_in_a_row_leave_the_socket_count_flat(llama: Engine) -> None:
    with LlamaCppBackend(llama.url) as backend:
        _, result = relay(backend, chat(MODEL, max_tokens=2))
        before = socket_count()
        counts = []
        for _ in range(100):
            _, result = relay(backend, chat(MODEL, max_tokens=2))
            assert result.output_tokens == 2
            counts.append(socket_count())
    assert max(counts) <= before + 1, (before, counts)


def test_each_streamed_reply_closes_its_connection(llama: Engine) -> None:
    # This llama-server closes the connection after every streamed reply, yet
    # answers ``Keep-Alive: timeout=5, max=100`` and no ``Connection: close``.
    # A job that goes out on such a connection before its close is seen is
    # sent again on a new one: every job succeeds.
    tap = Tap(llama.port)
    try:
        with LlamaCppBackend(tap.url) as backend:
            for _ in range(20):
                _, result = relay(backend, chat(MODEL, max_tokens=2))
                assert result.output_tokens == 2
            assert eventually(
                lambda: all(c.closed.is_set() for c in tap.connections), 5
            ), "the engine left a connection open"
        replies = [r for c in tap.connections for r in bodies(bytes(c.upstream))]
        assert len(replies) == 20
        assert all(b"keep-alive: timeout=5" in head.lower() for head, _ in replies)
        assert not any(b"connection: close" in head.lower() for head, _ in replies)
        # One reply per connection; a lost race costs a connection, no reply.
        assert all(len(bodies(bytes(c.upstream))) <= 1 for c in tap.connections)
        assert 20 <= len(tap.connections) <= 25
    finally:
        tap.close()
