"""The docs' Flask and Django examples, under waitress and gunicorn, over a live
llama-server: the official SDKs read what the engine sent, a client hanging up
frees the engine's slot, preloaded gunicorn workers each run their own fleet,
and an engine lost mid-stream is an error the SDKs raise."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List

import pytest

from ..polling import eventually
from .conftest import llama_engine
from .engines import Engine
from .helpers import anthropic_text, get_json, openai_text
from .tap import Tap, event_streams
from .wsgi_servers import (
    SERVERS,
    RawStream,
    children,
    connections_to,
    get,
    served,
    thread_count,
    write_config,
)

pytestmark = pytest.mark.integration

PROMPT = [{"role": "user", "content": "hello world"}]
#: Tokens for seconds of generation (the tiny model makes a few thousand a
#: second; context shift lets it run past the slot's window).
LONG = 20_000


@pytest.fixture(scope="module")
def llama_web(llama_server_binary: Path, tiny_gguf: Path) -> Iterator[Engine]:
    """This module's llama-server, on one thread. A server notices a client
    that hung up only when it next writes, at the engine's next token; on two
    threads, with another engine busy on this 2-core machine, llama.cpp's
    threads wait for each other at every step and tokens stall for up to 2 s
    (measured), where one thread keeps them below about 0.1 s."""
    engine = llama_engine(
        llama_server_binary, tiny_gguf, "--threads", 1, name="llama-web"
    ).start()
    yield engine
    engine.stop()
    assert engine.stopped_clean, f"{engine.name} left processes or files behind"


@pytest.fixture(params=["flask", "django"])
def framework(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=SERVERS)
def server(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def busy_slots(url: str) -> List[int]:
    """The ids of the slots llama-server says are generating now (``/slots``)."""
    return [slot["id"] for slot in get_json(url + "/slots") if slot["is_processing"]]


def wait_idle(engine: Engine) -> None:
    """No slot of the engine generates (a test before may have just let go)."""
    assert eventually(lambda: not busy_slots(engine.url), 30), "the engine is busy"


def model_of(url: str) -> str:
    """The one model the fleet serves, as the mounted gateway lists it (named by
    the path of its file: llama-server runs without --alias)."""
    (model,) = [m["id"] for m in get(url + "/fleet/v1/models")["data"]]
    return str(model)


def long_request(model: str) -> Dict[str, Any]:
    return {
        "model": model,
        "messages": PROMPT,
        "max_tokens": LONG,
        "ignore_eos": True,
        "stream": True,
    }


def first_times(
    checks: Dict[str, Callable[[], bool]], since: float, within: float
) -> Dict[str, float]:
    """Poll every check until each has held once; the seconds from ``since``
    at which each was first seen to hold."""
    seen: Dict[str, float] = {}
    deadline = time.monotonic() + within
    while len(seen) < len(checks):
        for name, check in checks.items():
            if name not in seen and check():
                seen[name] = time.monotonic() - since
        assert time.monotonic() < deadline, f"only {sorted(seen)} within {within} s"
        time.sleep(0.01)
    return seen


def test_the_openai_sdk_reads_what_the_engine_sent(
    framework: str, server: str, llama_web: Engine, tmp_path: Any
) -> None:
    import openai

    tap = Tap(llama_web.port)
    try:
        with served(framework, server, write_config(tmp_path, tap.url)) as site:
            client = openai.OpenAI(
                base_url=site.url + "/v1", api_key="unused", max_retries=0
            )
            with client:
                stream = client.chat.completions.create(
                    model=model_of(site.url),
                    messages=PROMPT,  # type: ignore[arg-type]
                    max_tokens=12,
                    stream=True,
                    extra_body={"ignore_eos": True},
                )
                chunks = list(stream)
        (sent,) = event_streams(tap)
    finally:
        tap.close()
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == openai_text(sent)
    assert text, "the model said nothing: the comparison would prove nothing"
    assert sent.endswith(b"data: [DONE]\n\n")


def test_the_anthropic_sdk_reads_what_the_engine_sent(
    framework: str, server: str, llama_web: Engine, tmp_path: Any
) -> None:
    import anthropic

    tap = Tap(llama_web.port)
    try:
        with served(framework, server, write_config(tmp_path, tap.url)) as site:
            client = anthropic.Anthropic(
                base_url=site.url, api_key="unused", max_retries=0
            )
            with client:
                events = list(
                    client.messages.create(
                        model=model_of(site.url),
                        messages=PROMPT,  # type: ignore[arg-type]
                        max_tokens=12,
                        stream=True,
                    )
                )
        (sent,) = event_streams(tap)
    finally:
        tap.close()
    text = "".join(
        e.delta.text
        for e in events
        if e.type == "content_block_delta" and e.delta.type == "text_delta"
    )
    assert text == anthropic_text(sent)
    assert text, "the model said nothing: the comparison would prove nothing"
    assert events[-1].type == "message_stop"


def test_errors_before_the_first_byte_are_statuses_the_sdks_raise(
    framework: str, server: str, llama_web: Engine, tmp_path: Any
) -> None:
    import anthropic
    import openai

    with served(framework, server, write_config(tmp_path, llama_web.url)) as site:
        with openai.OpenAI(
            base_url=site.url + "/v1", api_key="unused", max_retries=0
        ) as client:
            with pytest.raises(openai.NotFoundError) as not_found:
                client.chat.completions.create(
                    model="no-such-model",
                    messages=PROMPT,  # type: ignore[arg-type]
                    stream=True,
                )
        with anthropic.Anthropic(
            base_url=site.url, api_key="unused", max_retries=0
        ) as client:
            with pytest.raises(anthropic.NotFoundError) as not_found_here:
                client.messages.create(
                    model="no-such-model",
                    messages=PROMPT,  # type: ignore[arg-type]
                    max_tokens=4,
                    stream=True,
                )
        refused = urllib.request.Request(
            site.url + "/v1/chat/completions", data=b"[1]", method="POST"
        )
        with pytest.raises(urllib.error.HTTPError) as not_an_object:
            urllib.request.urlopen(refused, timeout=30)
        with not_an_object.value as reply:
            assert reply.status == 400
            assert reply.headers["X-Provider-Agent-Error"] == "invalid_request"
            assert json.load(reply)["error"]["code"] == "invalid_request"
    assert not_found.value.body["code"] == "model_not_loaded"  # type: ignore[index]
    assert "no-such-model" in not_found_here.value.message


def test_a_client_hanging_up_frees_the_engine_slot(
    framework: str, server: str, llama_web: Engine, tmp_path: Any
) -> None:
    wait_idle(llama_web)
    with served(framework, server, write_config(tmp_path, llama_web.url)) as site:
        client = RawStream(
            site.port, "/v1/chat/completions", long_request(model_of(site.url))
        )
        client.read_events(3)
        assert busy_slots(llama_web.url), "the job should be generating"
        assert get(site.url + "/fleet/health")["in_flight"] == 1
        hung_up = time.monotonic()
        client.close()
        took = first_times(
            {
                "slot idle": lambda: not busy_slots(llama_web.url),
                "in_flight 0": lambda: (
                    get(site.url + "/fleet/health")["in_flight"] == 0
                ),
            },
            hung_up,
            within=30,  # the generation alone would last longer
        )
        # The server closed the response, which closed the StreamBody (without
        # that, only the garbage collector would have let the stream go).
        assert "the client left after" in site.log_path.read_text()
    print(
        f"\n{server} + {framework}: after the hang-up, the slot was idle in "
        f"{took['slot idle'] * 1000:.0f} ms, the fleet's slot free in "
        f"{took['in_flight 0'] * 1000:.0f} ms"
    )
    assert took["slot idle"] < 1.0, took


@pytest.mark.parametrize("server", ["gunicorn"])
def test_preloaded_gunicorn_workers_each_run_their_own_fleet(
    framework: str, server: str, llama_web: Engine, tmp_path: Any
) -> None:
    wait_idle(llama_web)
    # One thread and one connection per worker: a busy worker accepts nothing,
    # so the next request must go to the other.
    options = ["--preload", "--workers", "2", "--threads", "1"]
    options += ["--worker-connections", "1"]
    config = write_config(tmp_path, llama_web.url)
    with served(framework, server, config, *options) as site:
        assert site.process is not None
        master = site.process.pid
        # Ready once one worker answered; the other may still be forking.
        assert eventually(lambda: len(children(master)) == 2, 30)
        workers = children(master)
        # The fleet was built at import, in the master, and started nothing
        # there: no monitor thread, no connection.
        assert thread_count(master) == 1
        model = model_of(site.url)
        first = RawStream(site.port, "/v1/chat/completions", long_request(model))
        first.read_events(3)
        second = RawStream(site.port, "/v1/chat/completions", long_request(model))
        second.read_events(3)
        # Two jobs generating at once, from workers of one thread each: each
        # worker serves one.
        assert len(busy_slots(llama_web.url)) == 2
        held = connections_to(llama_web.port, [master, *workers])
        assert not held[master], held
        assert all(held[w] for w in workers), held
        assert not held[workers[0]] & held[workers[1]], held

        # Only the worker whose client left can take the next request, once
        # it has let its job go.
        first.close()
        health_first = get(site.url + "/fleet/health")
        third = RawStream(site.port, "/v1/chat/completions", long_request(model))
        third.read_events(3)  # on that worker again: the other is busy
        second.close()
        health_second = get(site.url + "/fleet/health")
        third.close()
    for health in (health_first, health_second):
        assert health["monitor_running"] is True, health
        assert health["backends_up"] == 1, health
        assert health["in_flight"] == 0, health
    assert {health_first["pid"], health_second["pid"]} == set(workers)


def _kill(engine: Engine) -> None:
    assert engine.process is not None
    os.killpg(engine.process.pid, signal.SIGKILL)


def _no_job_in_flight(url: str) -> bool:
    return bool(eventually(lambda: get(url + "/fleet/health")["in_flight"] == 0, 30))


def test_an_engine_lost_mid_stream_is_an_openai_sdk_error(
    framework: str, server: str, llama_spare: Engine, tmp_path: Any
) -> None:
    import openai

    with served(framework, server, write_config(tmp_path, llama_spare.url)) as site:
        client = openai.OpenAI(
            base_url=site.url + "/v1", api_key="unused", max_retries=0
        )
        with client:
            stream = client.chat.completions.create(
                model=model_of(site.url),
                messages=PROMPT,  # type: ignore[arg-type]
                max_tokens=LONG,
                stream=True,
                extra_body={"ignore_eos": True},
            )
            chunks = iter(stream)
            for _ in range(3):
                next(chunks)
            _kill(llama_spare)
            with pytest.raises(openai.APIError) as caught:
                for _ in chunks:
                    pass
        assert _no_job_in_flight(site.url)
    # Raised on the error event: not a transport error, nor a status.
    assert type(caught.value) is openai.APIError, repr(caught.value)
    assert caught.value.body["code"] == "stream_error", caught.value.body
    assert "connection failed after" in caught.value.message


def test_an_engine_lost_mid_stream_is_an_anthropic_sdk_error(
    framework: str, server: str, llama_spare: Engine, tmp_path: Any
) -> None:
    import anthropic

    with served(framework, server, write_config(tmp_path, llama_spare.url)) as site:
        client = anthropic.Anthropic(base_url=site.url, api_key="unused", max_retries=0)
        with client:
            # llama-server's Messages route ignores ignore_eos, and sampling
            # from the random model ends the turn within a few hundred tokens;
            # greedy decoding of this prompt by this model runs for thousands.
            stream = client.messages.create(
                model=model_of(site.url),
                messages=PROMPT,  # type: ignore[arg-type]
                max_tokens=LONG,
                stream=True,
                extra_body={"temperature": 0},
            )
            events = iter(stream)
            for _ in range(3):
                next(events)
            _kill(llama_spare)
            with pytest.raises(anthropic.APIStatusError) as caught:
                for _ in events:
                    pass
        assert _no_job_in_flight(site.url)
    # Raised on the error event (the reply's status was 200).
    assert caught.value.status_code == 200
    assert caught.value.body["error"]["type"] == "api_error", caught.value.body
    assert "connection failed after" in caught.value.body["error"]["message"]
