"""``provider-agent serve`` over live llama-servers, met by the official OpenAI and
Anthropic SDKs and by raw HTTP: what they read is what the engine sent; the
gateway's refusals, capacity, failover, token and hang-ups; 32 clients at once.

Every gateway here is a process of its own, stopped with SIGTERM at the end of
its test, which must exit 0 and leave nothing behind. The engines run with
``--alias tiny``: the fleet routes by the ids an engine lists, and llama-server
otherwise lists its model by the path of its file.
"""

from __future__ import annotations

import json
import secrets
import socket
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Optional, Tuple

import pytest
import requests

from ..gateway import ServeProcess, write_config
from ..polling import eventually
from .conftest import llama_engine
from .engines import Engine
from .helpers import anthropic_text, events, openai_text, payloads
from .tap import Tap, event_streams
from .test_llamacpp import busy_slots

if TYPE_CHECKING:  # the SDKs are installed for the integration tests only
    import anthropic
    import openai

pytestmark = pytest.mark.integration

MODEL = "tiny"
PROMPT = [{"role": "user", "content": "hello world"}]
#: A generation of seconds (context shift lets it run past the window).
LONG = 20_000

Serve = Callable[..., ServeProcess]


def tiny_engine(binary: Path, model: Path, name: str) -> Engine:
    return llama_engine(binary, model, "--alias", MODEL, name=name).start()


@pytest.fixture(scope="module")
def tiny(llama_server_binary: Path, tiny_gguf: Path) -> Iterator[Engine]:
    """A llama-server listing its model as "tiny", for the whole module."""
    engine = tiny_engine(llama_server_binary, tiny_gguf, "llama-tiny")
    yield engine
    engine.stop()
    assert engine.stopped_clean, f"{engine.name} left processes or files behind"


@pytest.fixture
def spares(llama_server_binary: Path, tiny_gguf: Path) -> Iterator[List[Engine]]:
    """Two more "tiny" llama-servers of one test's own, which it may stop."""
    engines: List[Engine] = []
    try:
        for name in ("llama-tiny-a", "llama-tiny-b"):
            engines.append(tiny_engine(llama_server_binary, tiny_gguf, name))
        yield engines
    finally:
        for engine in engines:
            engine.stop()
    assert all(e.stopped_clean for e in engines), "an engine left something behind"


@pytest.fixture
def tap(tiny: Engine) -> Iterator[Tap]:
    """A recording relay in front of the module's engine."""
    relay = Tap(tiny.port)
    yield relay
    relay.close()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    """Starts ``provider-agent serve`` over engine URLs, ready; each one is
    stopped with SIGTERM after the test, and must exit 0 at once, cleanly."""
    started: List[ServeProcess] = []

    def start(
        urls: List[str],
        *args: str,
        max_concurrent: Optional[int] = None,
        env: Optional[Dict[str, str]] = None,
        token: Optional[str] = None,
    ) -> ServeProcess:
        path = tmp_path / f"agent-{len(started)}.toml"
        config = write_config(path, urls, max_concurrent)
        gateway = ServeProcess(config, *args, env=env, token=token)
        started.append(gateway)
        return gateway.wait_ready()

    yield start
    for gateway in started:
        try:
            code = gateway.stop(within=10)
        finally:
            gateway.kill()
        err = gateway.stderr()
        assert code == 0, err
        assert not gateway.left_behind
        # waitress says so when it had to give up waiting for a thread.
        assert "still running" not in err and "Traceback" not in err, err


def settle(gateway: ServeProcess) -> None:
    """Wait until the gateway has read the end of every job's reply: an SDK is
    done at the last event ([DONE], message_stop), which may come a moment
    before the engine ends its reply and the gateway lets the slot go."""
    assert eventually(lambda: gateway.health()["in_flight"] == 0, 5), gateway.health()


def posts_through(tap: Tap) -> int:
    """Requests other than probes and listings that reached the engine."""
    return sum(bytes(c.downstream).count(b"POST ") for c in tap.connections)


def openai_client(gateway: ServeProcess, key: str = "unused") -> openai.OpenAI:
    import openai

    return openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0)


def anthropic_client(
    gateway: ServeProcess, key: str = "unused", **options: Any
) -> anthropic.Anthropic:
    import anthropic

    return anthropic.Anthropic(
        base_url=gateway.url, api_key=key, max_retries=0, **options
    )


def openai_stream(client: openai.OpenAI, max_tokens: int = 8, **options: Any) -> Any:
    return client.chat.completions.create(
        model=options.pop("model", MODEL),
        messages=PROMPT,  # type: ignore[arg-type]
        max_tokens=max_tokens,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"ignore_eos": True},
        **options,
    )


def anthropic_stream(
    client: anthropic.Anthropic, max_tokens: int = 8, model: str = MODEL
) -> Any:
    return client.messages.create(
        model=model,
        messages=PROMPT,  # type: ignore[arg-type]
        max_tokens=max_tokens,
        stream=True,
        extra_body={"ignore_eos": True},
    )


def read_openai(stream: Any) -> Tuple[str, Any]:
    """The text an OpenAI stream assembles, and its last chunk."""
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return text, chunks[-1]


def read_anthropic(stream: Any) -> Tuple[str, List[Any]]:
    found = list(stream)
    text = "".join(
        e.delta.text
        for e in found
        if e.type == "content_block_delta" and e.delta.type == "text_delta"
    )
    return text, found


def backend_id(engine_url: str) -> str:
    return f"llamacpp:{engine_url}"


# -- both SDKs, each in its own format ------------------------------------------


def test_the_openai_sdk_streams_through_the_gateway(tap: Tap, serve: Serve) -> None:
    gateway = serve([tap.url])
    with openai_client(gateway) as client:
        raw = client.chat.completions.with_raw_response.create(
            model=MODEL,
            messages=PROMPT,  # type: ignore[arg-type]
            max_tokens=12,
            stream=True,
            stream_options={"include_usage": True},
            extra_body={"ignore_eos": True},
        )
        assert raw.headers["content-type"] == "text/event-stream"
        assert raw.headers["x-provider-agent-backend"] == backend_id(tap.url)
        text, last = read_openai(raw.parse())
    settle(gateway)  # and the tap has the whole reply
    (sent,) = event_streams(tap)
    assert text == openai_text(sent)
    assert text, "the model said nothing: the comparison would prove nothing"
    usage = payloads(sent)[-1]["usage"]
    assert last.usage is not None
    assert last.usage.completion_tokens == usage["completion_tokens"] == 12
    assert last.usage.prompt_tokens == usage["prompt_tokens"] > 0


def test_the_anthropic_sdk_streams_through_the_gateway(tap: Tap, serve: Serve) -> None:
    gateway = serve([tap.url])
    with anthropic_client(gateway) as client:
        text, found = read_anthropic(anthropic_stream(client, max_tokens=12))
    settle(gateway)
    (sent,) = event_streams(tap)
    assert text == anthropic_text(sent)
    assert text, "the model said nothing: the comparison would prove nothing"
    assert found[-1].type == "message_stop"
    sent_events = payloads(sent)
    deltas = [e for e in found if e.type == "message_delta"]
    (sent_delta,) = [e for e in sent_events if e["type"] == "message_delta"]
    assert deltas[-1].usage.output_tokens == sent_delta["usage"]["output_tokens"] == 12
    # llama.cpp leaves message_start out when its first token is half a
    # character; when it came, its input count came through too.
    starts = [e for e in found if e.type == "message_start"]
    sent_starts = [e for e in sent_events if e["type"] == "message_start"]
    assert len(starts) == len(sent_starts)
    for start, sent_start in zip(starts, sent_starts):
        assert (
            start.message.usage.input_tokens
            == (sent_start["message"]["usage"]["input_tokens"])
        )


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", {"stream_options": {"include_usage": True}}),
        ("/v1/messages", {}),
    ],
    ids=["openai", "anthropic"],
)
def test_the_gateway_relays_the_engine_bytes_verbatim(
    tap: Tap, serve: Serve, path: str, body: Dict[str, Any]
) -> None:
    gateway = serve([tap.url])
    request = {"model": MODEL, "messages": PROMPT, "max_tokens": 10, "stream": True}
    request.update(body, ignore_eos=True)
    with requests.post(gateway.url + path, json=request, stream=True, timeout=30) as r:
        assert r.status_code == 200, r.text
        relayed = b"".join(r.iter_content(chunk_size=None))
    (sent,) = event_streams(tap)
    assert relayed == sent
    assert events(relayed)  # well-formed SSE, ending in a blank line


# -- models and refusals ---------------------------------------------------------


def test_both_sdks_list_tiny_with_its_context_window(
    tiny: Engine, serve: Serve
) -> None:
    gateway = serve([tiny.url])
    with openai_client(gateway) as client:
        (card,) = client.models.list().data
    assert card.id == MODEL
    assert card.owned_by == "llamacpp"  # the kind serving it
    assert (card.model_extra or {})["context_window"] == 256  # a slot's window
    with anthropic_client(gateway) as other:
        (info,) = list(other.models.list())
    assert info.id == MODEL and info.type == "model"
    assert (info.model_extra or {})["context_window"] == 256


def test_an_unknown_model_is_not_found_in_both_sdks(tap: Tap, serve: Serve) -> None:
    import anthropic
    import openai

    gateway = serve([tap.url])
    with openai_client(gateway) as client:
        with pytest.raises(openai.NotFoundError) as caught:
            openai_stream(client, model="no-such-model")
    assert caught.value.status_code == 404
    assert "no-such-model" in caught.value.message
    assert caught.value.response.headers["x-provider-agent-error"] == "model_not_loaded"
    with anthropic_client(gateway) as other:
        with pytest.raises(anthropic.NotFoundError) as found:
            anthropic_stream(other, model="no-such-model")
    assert found.value.status_code == 404
    assert "no-such-model" in found.value.message
    assert posts_through(tap) == 0  # refused before any backend was asked


def test_a_full_fleet_is_a_rate_limit_until_the_slot_is_freed(
    tiny: Engine, serve: Serve
) -> None:
    import anthropic
    import openai

    gateway = serve([tiny.url], max_concurrent=1)
    with openai_client(gateway) as client, anthropic_client(gateway) as other:
        held = openai_stream(client, max_tokens=LONG)
        try:
            next(iter(held))  # it streams, and holds the fleet's one slot
            assert gateway.health()["in_flight"] == 1
            with pytest.raises(openai.RateLimitError) as caught:
                openai_stream(client)
            assert caught.value.response.headers["retry-after"] == "1"
            assert "its limit" in caught.value.message
            with pytest.raises(anthropic.RateLimitError) as limited:
                anthropic_stream(other)
            assert limited.value.response.headers["retry-after"] == "1"
        finally:
            held.close()
        # The gateway sees the hang-up at its next write and lets the slot go.
        settle(gateway)
        text, last = read_openai(openai_stream(client))
        assert text and last.usage.completion_tokens == 8
        settle(gateway)  # one slot: the next job waits for this one's end
        anthropic_text_, found = read_anthropic(anthropic_stream(other))
        assert anthropic_text_ and found[-1].type == "message_stop"


# -- failover ----------------------------------------------------------------------


def served_by(client: openai.OpenAI) -> str:
    """Run one short job; the backend that served it (it must succeed)."""
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL,
        messages=PROMPT,  # type: ignore[arg-type]
        max_tokens=4,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"ignore_eos": True},
    )
    text, last = read_openai(raw.parse())
    assert last.usage.completion_tokens == 4
    return str(raw.headers["x-provider-agent-backend"])


def test_jobs_go_to_the_engine_up_when_the_other_is_down(
    tiny: Engine, spares: List[Engine], serve: Serve
) -> None:
    down = spares[0]
    down.stop()
    gateway = serve([down.url, tiny.url])
    health = gateway.health()
    assert health["backends_up"] == 1
    assert health["backends"][backend_id(down.url)]["up"] is False
    with openai_client(gateway) as client:
        served = [served_by(client) for _ in range(4)]
    assert served == [backend_id(tiny.url)] * 4


def test_a_job_fails_over_from_an_engine_that_stopped_unseen(
    spares: List[Engine], serve: Serve
) -> None:
    gateway = serve([e.url for e in spares])
    assert gateway.health()["backends_up"] == 2
    with openai_client(gateway) as client:
        # A held job on one engine makes the other the first choice of the next.
        raw = client.chat.completions.with_raw_response.create(
            model=MODEL,
            messages=PROMPT,  # type: ignore[arg-type]
            max_tokens=LONG,
            stream=True,
            extra_body={"ignore_eos": True},
        )
        held = raw.parse()
        try:
            next(iter(held))
            busy = raw.headers["x-provider-agent-backend"]
            (kept,) = [e for e in spares if backend_id(e.url) == busy]
            (lost,) = [e for e in spares if e is not kept]
            lost.stop()
            # The monitor (every 30 s) has not probed since: it says "up".
            assert gateway.health()["backends"][backend_id(lost.url)]["up"] is True
            assert served_by(client) == busy
        finally:
            held.close()
        # The job found it down (the monitor has probed it again since, maybe).
        assert gateway.health()["backends"][backend_id(lost.url)]["up"] is False
        marked = f"{backend_id(lost.url)} marked down by a job: a job failed"
        assert marked in gateway.stderr()
        assert [served_by(client) for _ in range(3)] == [busy] * 3
    settle(gateway)


# -- many clients at once ---------------------------------------------------------


CLIENTS = 32


class Sampler:
    """The gateway process's peak RSS and thread count, read every 20 ms."""

    def __init__(self, gateway: ServeProcess) -> None:
        self.gateway = gateway
        self.rss_kib = 0
        self.threads = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.rss_kib = max(self.rss_kib, self.gateway.rss_kib())
            self.threads = max(self.threads, self.gateway.threads())

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def test_32_clients_at_once_all_complete_and_leave_no_threads(
    tap: Tap, serve: Serve, capsys: pytest.CaptureFixture[str]
) -> None:
    gateway = serve([tap.url], max_concurrent=CLIENTS)
    with openai_client(gateway) as client:
        warm = read_openai(openai_stream(client))  # the first job's imports
    before = (gateway.rss_kib(), gateway.threads())
    start = threading.Barrier(CLIENTS)
    results: List[Tuple[str, Any]] = []
    errors: List[BaseException] = []

    def work() -> None:
        try:
            with openai_client(gateway) as own:
                start.wait(30)
                results.append(read_openai(openai_stream(own, max_tokens=8)))
        except BaseException as exc:  # noqa: BLE001 - the test reports it
            errors.append(exc)

    sampler = Sampler(gateway)
    threads = [threading.Thread(target=work, daemon=True) for _ in range(CLIENTS)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    took = time.monotonic() - started
    sampler.stop()
    assert not any(t.is_alive() for t in threads), "a client did not finish"
    assert not errors, errors
    assert len(results) == CLIENTS
    assert all(last.usage.completion_tokens == 8 for _, last in results)
    settle(gateway)
    # Each client assembled the text of one of the streams the engine sent (8
    # tokens of the random model may all be half characters: text may be "").
    texts = sorted(text for text, _ in [warm, *results])
    assert texts == sorted(openai_text(body) for body in event_streams(tap))
    assert sum(1 for text in texts if text) > CLIENTS // 2
    # waitress starts its threads up front; nothing may be left of the jobs'.
    assert eventually(lambda: gateway.threads() <= before[1], 10), (
        before,
        gateway.threads(),
    )
    after = (gateway.rss_kib(), gateway.threads())
    peak = (sampler.rss_kib, sampler.threads)
    with capsys.disabled():
        print(
            f"\n{CLIENTS} clients in {took:.1f} s; gateway pid {gateway.pid} "
            f"RSS KiB / threads: before {before}, peak {peak}, after {after}"
        )
    assert peak[0] >= before[0]
    assert after[0] <= before[0] + 32 * 1024, (before, peak, after)  # loose


# -- the token ----------------------------------------------------------------------


def test_the_token_is_required_and_never_shown(tap: Tap, serve: Serve) -> None:
    import anthropic
    import openai

    token = "gw-" + secrets.token_hex(16)
    wrong = "gw-" + secrets.token_hex(16)
    gateway = serve(
        [tap.url],
        "--auth-token-env",
        "GATEWAY_TOKEN",
        "-vv",
        env={"GATEWAY_TOKEN": token},
        token=token,
    )
    request = {"model": MODEL, "messages": PROMPT, "max_tokens": 4, "stream": True}
    for path in ("/v1/chat/completions", "/v1/models", "/health"):
        bare = requests.request(
            "GET" if "/chat" not in path else "POST",
            gateway.url + path,
            json=request,
            timeout=10,
        )
        assert bare.status_code == 401, (path, bare.text)
        assert bare.headers["www-authenticate"].startswith("Bearer")
        assert "carried no token" in bare.json()["error"]["message"]
    # openai: Authorization: Bearer; Omit() sends no header at all.
    with openai_client(gateway, key=token) as client:
        with pytest.raises(openai.AuthenticationError) as caught:
            openai_stream(client, extra_headers={"Authorization": openai.Omit()})
        assert "carried no token" in caught.value.message
    with openai_client(gateway, key=wrong) as client:
        with pytest.raises(openai.AuthenticationError) as caught:
            openai_stream(client)
        assert "carried a wrong token" in caught.value.message
        assert wrong not in caught.value.response.text
    with anthropic_client(gateway, key=wrong) as other:
        with pytest.raises(anthropic.AuthenticationError):
            anthropic_stream(other)
    assert posts_through(tap) == 0
    with openai_client(gateway, key=token) as client:
        text, last = read_openai(openai_stream(client))
        assert text and last.usage.completion_tokens == 8
    # This anthropic SDK sends its key as a Bearer token; older ones, and
    # Anthropic's own API, use x-api-key: both are taken.
    with anthropic_client(gateway, key=token) as other:
        text, found = read_anthropic(anthropic_stream(other))
        assert text and found[-1].type == "message_stop"
    x_api_key = {"x-api-key": token, "Authorization": anthropic.Omit()}
    with anthropic_client(gateway, key=token, default_headers=x_api_key) as other:
        text, found = read_anthropic(anthropic_stream(other))
        assert text and found[-1].type == "message_stop"
    assert posts_through(tap) == 3
    assert gateway.stop() == 0
    shown = gateway.stdout() + gateway.stderr()
    assert "a token required" in shown
    assert token not in shown and wrong not in shown


# -- a client that hangs up ---------------------------------------------------------


def test_a_client_hanging_up_mid_stream_frees_the_engine_slot(
    tiny: Engine, serve: Serve
) -> None:
    gateway = serve([tiny.url])
    body = json.dumps(
        {
            "model": MODEL,
            "messages": PROMPT,
            "max_tokens": LONG,
            "stream": True,
            "ignore_eos": True,
        }
    ).encode()
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{gateway.port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    sock = socket.create_connection(("127.0.0.1", gateway.port), timeout=30)
    try:
        sock.sendall(head + body)
        seen = b""
        while b"data: " not in seen:
            chunk = sock.recv(65536)
            assert chunk, f"the gateway closed the stream: {seen!r}"
            seen += chunk
        assert seen.startswith(b"HTTP/1.1 200")
        assert busy_slots(tiny.url), "the job should be generating"
        assert gateway.health()["in_flight"] == 1
    finally:
        sock.close()
    # waitress sees the hang-up at the gateway's next write, which the next
    # token brings: tens of ms when the machine is quiet; on this busy 2-core
    # machine the engine's tokens paused for up to 0.3 s, and one stop took 1.2 s.
    assert eventually(lambda: not busy_slots(tiny.url), 1.5), busy_slots(tiny.url)
    settle(gateway)


def test_sigterm_cancels_a_streaming_job_upstream(tiny: Engine, serve: Serve) -> None:
    import openai

    gateway = serve([tiny.url])
    with openai_client(gateway) as client:
        stream = iter(openai_stream(client, max_tokens=LONG))
        next(stream)
        assert busy_slots(tiny.url), "the job should be generating"
        assert gateway.stop() == 0
        # The SDK raises on the error event that ends the stream.
        with pytest.raises(openai.APIError) as caught:
            for _ in stream:
                pass
    assert "job cancelled" in caught.value.message
    assert eventually(lambda: not busy_slots(tiny.url), 1.5), busy_slots(tiny.url)
    err = gateway.stderr()
    assert "still running" not in err and "Traceback" not in err, err


# -- bodies refused before any backend -----------------------------------------------


def test_bad_bodies_are_refused_before_any_backend(
    tiny: Engine, tap: Tap, serve: Serve
) -> None:
    import openai

    gateway = serve([tap.url], "--max-body-bytes", "4096")
    chat = gateway.url + "/v1/chat/completions"
    request = {"model": MODEL, "messages": PROMPT, "max_tokens": 4}

    def post(url: str, **options: Any) -> requests.Response:
        return requests.post(url, timeout=10, **options)

    for flag in ({}, {"stream": False}):
        reply = post(chat, json={**request, **flag})
        assert reply.status_code == 400, reply.text
        assert reply.headers["x-provider-agent-error"] == "stream_required"
        message = reply.json()["error"]["message"]
        assert 'set "stream": true' in message, message
    reply = post(gateway.url + "/v1/messages", json=request)
    assert reply.status_code == 400
    assert reply.json()["error"]["type"] == "invalid_request_error"
    assert "streams every reply" in reply.json()["error"]["message"]
    with openai_client(gateway) as client:  # the SDK's own non-streamed call
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(
                model=MODEL,
                messages=PROMPT,  # type: ignore[arg-type]
                max_tokens=4,
            )
        assert "streams every reply" in caught.value.message
    padded = {**request, "stream": True, "padding": "x" * 5000}
    reply = post(chat, json=padded)
    assert reply.status_code == 413, reply.text
    assert "limit of 4096 bytes" in reply.json()["error"]["message"]
    # Without a Content-Length (chunked), the limit holds as well.
    encoded = json.dumps(padded).encode()
    reply = post(chat, data=iter([encoded[:3000], encoded[3000:]]))
    assert reply.status_code == 413, reply.text
    bad = {
        b"not json": "invalid_json",
        b'{"model": "tiny", "stream": tru': "invalid_json",
        b"[1, 2]": "invalid_request",  # JSON, but not an object
    }
    for raw, code in bad.items():
        reply = post(chat, data=raw, headers={"Content-Type": "application/json"})
        assert reply.status_code == 400, reply.text
        assert reply.headers["x-provider-agent-error"] == code
    assert "not JSON" in post(chat, data=b"not json").json()["error"]["message"]
    assert posts_through(tap) == 0
    assert not busy_slots(tiny.url)
    assert gateway.health()["in_flight"] == 0
