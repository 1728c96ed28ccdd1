"""Cases found in review: cancel before headers, pool hand-over races, thread
safety of close(), keys that cannot travel, and errors that cross processes."""

from __future__ import annotations

import logging
import pickle
import threading
import time
import traceback
from collections import Counter

import pytest
from click.testing import CliRunner

from provider_agent.backend import (
    BackendError,
    BackendTimeoutError,
    BadStatusError,
    Job,
    JobCancelledError,
    LlamaCppBackend,
    ModelNotFoundError,
    OpenRouterBackend,
    StreamError,
    VllmBackend,
    errors,
)
from provider_agent.cli import main

from .server import Reply, ScriptedServer
from .sse import DONE

KEY = "sk-or-v1-SECRET42"


def job(deadline_ms: int = 10_000) -> Job:
    return Job.new("m", {"messages": []}, deadline_ms=deadline_ms)


def test_cancel_by_id_while_the_engine_holds_back_its_headers(
    server: ScriptedServer,
) -> None:
    def slow_headers(reply: Reply) -> None:
        server.stopping.wait(10)  # a busy engine: nothing until the first token

    server.route("POST", "/v1/chat/completions", slow_headers)
    backend = LlamaCppBackend(server.url)
    the_job = job()
    threading.Timer(0.3, backend.cancel, (the_job.job_id,)).start()
    started = time.monotonic()
    with pytest.raises(JobCancelledError):
        backend.execute(the_job)
    assert time.monotonic() - started < 3
    assert backend.cancel(the_job.job_id) is False  # no longer running


def test_cancel_by_id_stops_run_from_another_thread(server: ScriptedServer) -> None:
    server.stream("POST", "/v1/chat/completions", [b"data: {}\n\n", 10.0, DONE])
    backend = LlamaCppBackend(server.url)
    the_job = job()
    got: list = []

    def sink(chunk: bytes) -> None:
        got.append(chunk)
        assert backend.cancel(the_job.job_id) is True

    with pytest.raises(JobCancelledError):
        backend.run(the_job, sink)
    assert got == [b"data: {}\n\n"]


def test_cancel_of_an_unknown_job_is_false() -> None:
    assert VllmBackend("http://127.0.0.1:9").cancel(job().job_id) is False


def test_a_late_deadline_never_cuts_a_connection_another_job_reuses(
    server: ScriptedServer,
) -> None:
    body = b'data: {"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2}}'
    body += b"\n\n" + DONE
    calls: list = []

    def route(reply: Reply) -> None:
        calls.append(1)
        if len(calls) == 1:  # job A: a Content-Length body, pooled when read
            reply.start(200, length=len(body))
            reply.raw(body)
        else:  # job B: on the same connection, outlives A's deadline
            reply.start(200)
            time.sleep(1.0)
            reply.write(DONE)
            reply.end()

    server.route("POST", "/v1/chat/completions", route)
    backend = VllmBackend(server.url)
    outcome: dict = {}

    def job_a() -> None:
        try:
            backend.run(job(400), lambda chunk: time.sleep(0.8))
        except BackendError as exc:
            outcome["a"] = exc

    thread = threading.Thread(target=job_a)
    thread.start()
    time.sleep(0.2)
    outcome["b"] = backend.run(job(), lambda chunk: None)
    thread.join()
    assert server.connections == 1  # B really reused A's connection
    assert isinstance(outcome["a"], BackendTimeoutError)
    assert outcome["b"].bytes_relayed == len(DONE)


def test_close_from_another_thread_is_a_clean_cancel(server: ScriptedServer) -> None:
    server.stream("POST", "/v1/chat/completions", [b"data: {}\n\n", 5.0, DONE])
    backend = LlamaCppBackend(server.url)
    seen: Counter = Counter()
    for _ in range(20):
        stream = backend.execute(job())
        next(stream)
        threading.Timer(0.05, stream.close).start()
        try:
            for _chunk in stream:
                pass
        except Exception as exc:  # noqa: BLE001 - counted below
            seen[type(exc).__name__] += 1
    assert seen == Counter({"JobCancelledError": 20})


@pytest.mark.parametrize("key", ["sk-ok\n", "  sk-ok  "])
def test_keys_are_stripped(server: ScriptedServer, key: str) -> None:
    server.json("GET", "/health", b"")
    VllmBackend(server.url, api_key=key).health()
    assert server.last().headers["Authorization"] == "Bearer sk-ok"


@pytest.mark.parametrize("key", ["sk-\u201cquoted\u201d", "sk-a\nb", "sk-\x00"])
def test_a_key_that_cannot_travel_is_refused_without_quoting_it(key: str) -> None:
    with pytest.raises(ValueError) as info:
        VllmBackend("http://127.0.0.1:9", api_key=key)
    assert key.strip() not in str(info.value)
    with pytest.raises(ValueError):
        OpenRouterBackend(key)


def test_a_header_that_cannot_travel_is_refused() -> None:
    with pytest.raises(ValueError, match="X-Title"):
        VllmBackend("http://127.0.0.1:9", headers={"X-Title": "caf\u00e9\r\n"})


def test_an_unhealthy_probe_logs_no_key(
    server: ScriptedServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    message = {"error": {"message": f"Invalid key {KEY}", "code": 401}}
    server.json("GET", "/api/v1/key", message, status=401)
    health = OpenRouterBackend(KEY, base_url=server.url + "/api/v1").health()
    assert health.reachable is False and "<redacted>" in (health.last_error or "")
    assert any("unhealthy" in r.getMessage() for r in caplog.records)
    assert not [r for r in caplog.records if KEY in r.getMessage()]


def test_a_traceback_never_prints_an_echoed_key(server: ScriptedServer) -> None:
    def broken(reply: Reply) -> None:
        reply.start(200)
        reply.write(b"data: {}\n\n")
        reply.raw(f"{KEY}\r\n".encode())  # a chunk-size line quoting the key

    server.route("POST", "/api/v1/chat/completions", broken)
    backend = OpenRouterBackend(KEY, base_url=server.url + "/api/v1")
    with pytest.raises(StreamError) as info:
        for _chunk in backend.execute(job()):
            pass
    printed = "".join(traceback.format_exception(info.type, info.value, info.tb))
    assert KEY not in printed


def test_a_backend_with_a_key_is_not_pickled() -> None:
    with pytest.raises(TypeError):
        pickle.dumps(OpenRouterBackend(KEY))


@pytest.mark.parametrize(
    "error",
    [
        errors.BadStatusError("b", 500, "body", "HTTP 500: boom"),
        errors.ModelNotFoundError("b", "m", 404, "body"),
        errors.StreamError("b", "cut", 12),
        errors.ProtocolError("b", "not JSON", "<html>"),
        errors.BackendTimeoutError("b", "deadline passed"),
        errors.UnreachableError("b", "cannot connect"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_errors_survive_pickling(error: BackendError) -> None:
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert vars(copy) == vars(error)


def test_an_ordinary_400_that_says_not_found_is_not_a_missing_model(
    server: ScriptedServer,
) -> None:
    text = "tool_call_id 'call_1' not found in previous assistant messages"
    body = {"error": {"code": 400, "message": text, "type": "invalid_request_error"}}
    server.json("POST", "/v1/chat/completions", body, status=400)
    with pytest.raises(BadStatusError) as info:
        LlamaCppBackend(server.url).execute(job())
    assert type(info.value) is BadStatusError
    router = {"error": {"code": 400, "message": "model 'm' not found"}}
    server.json("POST", "/v1/chat/completions", router, status=400)
    with pytest.raises(ModelNotFoundError):
        LlamaCppBackend(server.url).execute(job())


@pytest.mark.parametrize(
    "args", [["--backend", "vllm=ftp://x"], ["--host", "bad host"]]
)
def test_the_cli_turns_bad_input_into_a_usage_error(args: list) -> None:
    result = CliRunner().invoke(main, ["scan", *args])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and result.exception is not None


def test_the_cli_takes_host_and_port_without_a_scheme(server: ScriptedServer) -> None:
    server.json("GET", "/health", {"status": "ok"})
    server.json("GET", "/v1/models", {"data": []})
    target = server.url.replace("http://", "")
    result = CliRunner().invoke(main, ["scan", "--backend", f"llamacpp={target}"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"llamacpp\t{server.url}\tup\t")


def test_an_ipv6_host_makes_bracketed_urls() -> None:
    result = CliRunner().invoke(main, ["scan", "--host", "::1", "--json"])
    assert result.exit_code == 1, result.output  # nothing listens there
    assert "http://[::1]:8080" in result.output


def test_a_request_that_is_not_json_is_refused_before_sending(
    server: ScriptedServer,
) -> None:
    backend = LlamaCppBackend(server.url)
    for request in ({"temperature": float("nan")}, {"stop": {1, 2}}):
        with pytest.raises(ValueError, match="not valid JSON"):
            backend.execute(Job.new("m", request))
    assert server.requests == []
