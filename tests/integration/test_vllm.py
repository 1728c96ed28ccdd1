"""The SDK against a live vLLM 0.32 (CPU build) serving a tiny random Llama.

The server runs with ``--api-key``, so every test but the key tests also proves
that the key reaches vLLM the way it wants it (Bearer, on both routes).
"""

from __future__ import annotations

import time
import urllib.request

import pytest

from provider_agent.backend import (
    BackendTimeoutError,
    BadStatusError,
    JobCancelledError,
    ModelNotFoundError,
    VllmBackend,
    WireFormat,
)

from ..polling import eventually
from .conftest import VLLM_MAX_MODEL_LEN, VLLM_MODEL
from .engines import Engine
from .helpers import (
    Background,
    assert_up,
    chat,
    events,
    get_json,
    payloads,
    relay,
    tapped,
)
from .tap import Tap

pytestmark = pytest.mark.integration

#: A generation of many seconds: even on two busy cores, where vLLM's API
#: process may run late, the engine is still generating when the client leaves.
LONG = 4000


def metric(url: str, name: str, **labels: str) -> float:
    """The sum of vLLM's own Prometheus samples ``name`` with those labels."""
    wanted = [f'{key}="{value}"' for key, value in labels.items()]
    total, found = 0.0, False
    with urllib.request.urlopen(url + "/metrics", timeout=10) as reply:
        for line in reply.read().decode().splitlines():
            sample, _, value = line.rpartition(" ")
            if sample.startswith(name + "{") and all(w in sample for w in wanted):
                total, found = total + float(value), True
    assert found, f"{name} {labels} not in /metrics"
    return total


def running_requests(url: str) -> float:
    """Requests vLLM is generating now."""
    return metric(url, "vllm:num_requests_running")


def completed_requests(url: str) -> float:
    """Requests vLLM generated to their ``max_tokens``. (Requests it aborted
    because the client left are not counted anywhere in vLLM 0.32's metrics,
    not even under ``finished_reason="abort"``.)"""
    return metric(url, "vllm:request_success_total", finished_reason="length")


def test_health_is_reachable_with_a_latency(vllm_backend: VllmBackend) -> None:
    assert_up(vllm_backend)


def test_nothing_listens_while_the_model_loads(vllm: Engine) -> None:
    # Unlike llama.cpp, vLLM opens its port only once the model is loaded: the
    # start-up probes saw connection refused, then 200, never a 503.
    assert vllm.health_statuses[-1] == 200
    assert set(vllm.health_statuses) == {200}


def test_list_models_reports_max_model_len(
    vllm: Engine, vllm_backend: VllmBackend, vllm_key: str
) -> None:
    (card,) = get_json(vllm.url + "/v1/models", vllm_key)["data"]
    assert card["max_model_len"] == VLLM_MAX_MODEL_LEN  # the engine's own field
    (model,) = vllm_backend.list_models()
    assert model.model_id == VLLM_MODEL == card["id"]
    assert model.context_window == VLLM_MAX_MODEL_LEN
    assert model.native is True


def test_openai_stream_is_relayed_verbatim(vllm: Engine, vllm_key: str) -> None:
    job = chat(VLLM_MODEL, max_tokens=8)
    head, sent, relayed, result = tapped(
        lambda url: VllmBackend(url, api_key=vllm_key), vllm.port, job
    )
    assert head.startswith(b"HTTP/1.1 200")
    assert b"content-type: text/event-stream" in head.lower()
    assert relayed == sent
    assert relayed.endswith(b"data: [DONE]\n\n")
    chunks = payloads(relayed)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    # vLLM's own extra keys and fingerprint: this is no generic fake.
    assert "token_ids" in chunks[1]["choices"][0]
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["system_fingerprint"].startswith("vllm-0.32.0")
    usage = chunks[-1]["usage"]
    assert usage["completion_tokens"] == 8
    assert result.input_tokens == usage["prompt_tokens"] > 0
    assert result.output_tokens == usage["completion_tokens"]
    assert result.bytes_relayed == len(sent)


def test_anthropic_stream_is_relayed_verbatim(vllm: Engine, vllm_key: str) -> None:
    job = chat(VLLM_MODEL, max_tokens=6, wire_format=WireFormat.ANTHROPIC)
    _, sent, relayed, result = tapped(
        lambda url: VllmBackend(url, api_key=vllm_key), vllm.port, job
    )
    assert relayed == sent
    names = [name for name, _ in events(relayed)]
    assert names[0] == "message_start"
    assert names[-2:] == ["message_delta", "message_stop"]
    # vLLM 0.32 ends at message_stop: no trailing ``data: [DONE]``.
    assert b"[DONE]" not in relayed
    start = payloads(relayed)[0]["message"]["usage"]
    delta = payloads(relayed)[-2]["usage"]
    assert delta["input_tokens"] == start["input_tokens"] > 0
    assert delta["output_tokens"] == 6
    assert result.input_tokens == start["input_tokens"]
    assert result.output_tokens == delta["output_tokens"]


@pytest.mark.parametrize("wire_format", list(WireFormat))
def test_unknown_model_is_model_not_found(
    vllm_backend: VllmBackend, wire_format: WireFormat
) -> None:
    job = chat("no-such-model", wire_format=wire_format)
    with pytest.raises(ModelNotFoundError) as caught:
        vllm_backend.execute(job)
    assert caught.value.status == 404
    assert caught.value.model_id == "no-such-model"
    assert "does not exist" in str(caught.value)
    assert "Valid aliases: tiny" in caught.value.body


def test_deadline_cuts_a_long_generation(vllm_backend: VllmBackend) -> None:
    job = chat(VLLM_MODEL, max_tokens=LONG, deadline_ms=400)
    completed = completed_requests(vllm_backend.url)
    started = time.monotonic()
    chunks = []
    with pytest.raises(BackendTimeoutError) as caught:
        vllm_backend.run(job, chunks.append)
    elapsed = time.monotonic() - started
    # Loose bounds: a socket timeout cut to the deadline may wake a millisecond
    # early, and the CPU engine can starve this process while it generates on
    # both cores: one call here waited 9.3 s for headers it should have given
    # up on at 0.4 s, and a heartbeat thread stalled for as long as another
    # call (1.9 s). The generation takes >15 s; the error and the engine's
    # metrics below say it was cut, not finished.
    assert 0.39 <= elapsed < 12.0, elapsed
    assert vllm_backend.id in str(caught.value)
    # The engine stops generating when the connection drops: within seconds,
    # where the whole generation takes far longer, and not by completing it.
    assert eventually(lambda: running_requests(vllm_backend.url) == 0, 30)
    assert completed_requests(vllm_backend.url) == completed


def test_cancel_from_another_thread_frees_the_engine(
    vllm_backend: VllmBackend,
) -> None:
    job = chat(VLLM_MODEL, max_tokens=LONG)
    completed = completed_requests(vllm_backend.url)
    running = Background(vllm_backend, job)
    # On two busy cores vLLM's API process may hold back even the headers until
    # the generation ends; cancel() works at any stage, so wait for the engine.
    assert eventually(lambda: running_requests(vllm_backend.url) == 1, 30)
    assert vllm_backend.cancel(job.job_id) is True
    running.join(5)
    assert isinstance(running.error, JobCancelledError), running.error
    assert vllm_backend.cancel(job.job_id) is False  # no longer running
    # vLLM stops generating when the connection drops (not by completing)...
    assert eventually(lambda: running_requests(vllm_backend.url) == 0, 30)
    assert completed_requests(vllm_backend.url) == completed
    # ...and the next job runs straight away, to completion.
    started = time.monotonic()
    chunks, result = relay(vllm_backend, chat(VLLM_MODEL, max_tokens=4))
    assert result.output_tokens == 4
    assert time.monotonic() - started < 5


def test_wrong_key_is_an_auth_error(vllm: Engine, vllm_key: str) -> None:
    wrong = "wrong-" + vllm_key
    with VllmBackend(vllm.url, api_key=wrong) as backend:
        with pytest.raises(BadStatusError) as listing:
            backend.list_models()
        with pytest.raises(BadStatusError) as job:
            backend.execute(chat(VLLM_MODEL))
        # vLLM's /health is open to all: it cannot tell a good key from a bad one.
        assert backend.health().reachable
    for error in (listing.value, job.value):
        assert error.status == 401
        assert "API key rejected" in str(error)
        assert wrong not in str(error) and wrong not in repr(error)
        assert error.body == '{"error":"Unauthorized"}'


def test_missing_key_says_one_is_needed(vllm: Engine) -> None:
    with VllmBackend(vllm.url) as backend:
        with pytest.raises(BadStatusError) as caught:
            backend.list_models()
    assert caught.value.status == 401
    assert "an API key is needed" in str(caught.value)


def test_right_key_works_on_both_routes(vllm: Engine, vllm_key: str) -> None:
    with VllmBackend(vllm.url, api_key=vllm_key) as backend:
        for wire_format in WireFormat:
            _, result = relay(
                backend, chat(VLLM_MODEL, max_tokens=3, wire_format=wire_format)
            )
            assert result.output_tokens == 3


def test_a_hundred_jobs_use_one_connection(vllm: Engine, vllm_key: str) -> None:
    tap = Tap(vllm.port)
    try:
        with VllmBackend(tap.url, api_key=vllm_key) as backend:
            for _ in range(100):
                _, result = relay(backend, chat(VLLM_MODEL, max_tokens=2))
                assert result.output_tokens == 2
        assert len(tap.connections) == 1
    finally:
        tap.close()
