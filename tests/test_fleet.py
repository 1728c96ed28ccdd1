"""``Fleet``: routing, failover, capacity, cancel and passive health, against
scripted engines on 127.0.0.1."""

from __future__ import annotations

import gc
import itertools
import socket
import threading
import time
from typing import Any, Callable, Iterator, List

import pytest

from provider_agent.backend import (
    BackendTimeoutError,
    BadStatusError,
    Job,
    JobCancelledError,
    LlamaCppBackend,
    OpenRouterBackend,
    StreamError,
    TransportError,
    UnsupportedWireFormatError,
    VeniceBackend,
    VllmBackend,
    WireFormat,
)
from provider_agent.fleet.codes import error_code
from provider_agent.fleet.errors import (
    AllBackendsFailedError,
    ModelNotLoadedError,
    OutOfCapacityError,
)
from provider_agent.fleet.fleet import Fleet
from provider_agent.fleet.member import Member

from . import fakes
from .polling import eventually
from .server import Reply, ScriptedServer

CHAT = "/v1/chat/completions"


def job(model: str = "tiny", **kwargs: Any) -> Job:
    return Job.new(model, {"messages": [{"role": "user", "content": "Hi"}]}, **kwargs)


def chats(srv: ScriptedServer) -> int:
    return sum(1 for r in srv.requests if r.method == "POST")


@pytest.fixture
def servers() -> Iterator[Callable[[], ScriptedServer]]:
    made: List[ScriptedServer] = []

    def make() -> ScriptedServer:
        srv = ScriptedServer()
        made.append(srv)
        return srv

    yield make
    for srv in made:
        srv.stop()


@pytest.fixture
def fleet_of() -> Iterator[Callable[..., Fleet]]:
    """Builds fleets and closes them, and their backends, after the test."""
    made: List[Fleet] = []

    def make(*backends: Any, **options: Any) -> Fleet:
        fleet = Fleet(list(backends), **options)
        made.append(fleet)
        return fleet

    yield make
    for fleet in made:
        fleet.close()
        for backend in fleet.backends:
            backend.close()


def closed_port() -> str:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}"


# -- ported from the original agent's tests ---------------------------------------


def test_unknown_model_is_model_not_loaded_before_any_job_request(servers, fleet_of):
    srv = fakes.chat(fakes.vllm(servers()))
    fleet = fleet_of(VllmBackend(srv.url))
    with pytest.raises(ModelNotLoadedError) as caught:
        fleet.execute(job("no-such-model"))
    assert error_code(caught.value) == "model_not_loaded"
    assert "no-such-model" in str(caught.value)
    assert chats(srv) == 0
    assert fleet.in_flight == 0


def test_a_served_model_streams_its_chunks_then_its_token_counts(servers, fleet_of):
    srv = fakes.chat(fakes.llamacpp(servers()), fakes.openai_chunks(tokens=(7, 3)))
    backend = LlamaCppBackend(srv.url)
    fleet = fleet_of(backend)
    got: List[bytes] = []
    result = fleet.run(job(), got.append)
    assert b"".join(got) == b"".join(fakes.openai_chunks(tokens=(7, 3)))
    assert (result.input_tokens, result.output_tokens) == (7, 3)
    assert result.backend_id == backend.id
    assert fleet.in_flight == 0


def test_a_second_job_on_a_one_slot_fleet_is_out_of_capacity(servers, fleet_of):
    srv = fakes.llamacpp(servers())
    release = fakes.held(srv)
    fleet = fleet_of(LlamaCppBackend(srv.url), max_concurrent=1)
    with fleet.execute(job()) as first:
        next(first)
        with pytest.raises(OutOfCapacityError) as caught:
            fleet.execute(job())
        assert error_code(caught.value) == "out_of_capacity"
        assert chats(srv) == 1
        release.set()
        assert b"".join(first).endswith(b"[DONE]\n\n")
    assert fleet.in_flight == 0
    fakes.chat(srv)
    assert fleet.run(job(), lambda chunk: None).output_tokens == 2


def test_a_cancelled_job_stops_before_its_backend_finishes(servers, fleet_of):
    srv = fakes.llamacpp(servers())
    release = fakes.held(srv)
    fleet = fleet_of(LlamaCppBackend(srv.url))
    the_job = job()
    stream = fleet.execute(the_job)
    assert next(stream)
    assert fleet.in_flight == 1
    started = time.monotonic()
    assert fleet.cancel(the_job.job_id)
    assert fleet.in_flight == 0  # nobody was reading: freed at once
    with pytest.raises(JobCancelledError):
        next(stream)
    assert time.monotonic() - started < 2
    assert not release.is_set()
    assert not fleet.cancel(the_job.job_id)
    release.set()


# -- routing -------------------------------------------------------------------------


def test_local_backends_come_before_remote_ones(servers, fleet_of):
    local = fakes.chat(fakes.vllm(servers(), ["shared"]))
    remote = servers()
    remote.json("GET", "/api/v1/key", {"data": {"label": "k"}})
    remote.json(
        "GET", "/api/v1/models", {"data": [{"id": "shared", "context_length": 8}]}
    )
    fakes.chat(remote, path="/api/v1/chat/completions")
    fleet = fleet_of(
        OpenRouterBackend("sk-test", base_url=remote.url + "/api/v1"),
        Member(VllmBackend(local.url), max_concurrent=1),
    )
    first = fleet.execute(job("shared"))
    assert first.backend_id.startswith("vllm:")
    second = fleet.execute(job("shared"))  # the local one is full
    assert second.backend_id == "openrouter"
    first.close()
    second.close()
    assert fleet.in_flight == 0


def test_the_least_loaded_local_backend_is_chosen(servers, fleet_of):
    a, b = fakes.llamacpp(servers()), fakes.llamacpp(servers())
    release_a, release_b = fakes.held(a), fakes.held(b)
    fleet = fleet_of(LlamaCppBackend(a.url), LlamaCppBackend(b.url))
    streams = [fleet.execute(job()) for _ in range(4)]
    used = sorted(s.backend_id for s in streams)
    assert used.count(f"llamacpp:{a.url}") == 2
    assert used.count(f"llamacpp:{b.url}") == 2
    release_a.set()
    release_b.set()
    for stream in streams:
        stream.close()


def test_a_format_no_serving_backend_speaks_is_refused_before_any_request(
    servers, fleet_of
):
    srv = servers()
    srv.json("GET", "/api/v1/api_keys/rate_limits", {"data": {}})
    srv.json("GET", "/api/v1/models", {"data": [{"id": "tiny"}]})
    fleet = fleet_of(VeniceBackend("sk-test", base_url=srv.url + "/api/v1"))
    with pytest.raises(UnsupportedWireFormatError) as caught:
        fleet.execute(job(format=WireFormat.ANTHROPIC))
    assert error_code(caught.value) == "unsupported_format"
    assert "venice" in str(caught.value)
    assert chats(srv) == 0


def test_an_allow_list_limits_what_a_backend_is_sent(servers, fleet_of):
    srv = fakes.chat(fakes.vllm(servers(), ["a", "b"]))
    fleet = fleet_of(Member(VllmBackend(srv.url), models=frozenset({"a"})))
    fleet.run(job("a"), lambda chunk: None)
    with pytest.raises(ModelNotLoadedError):
        fleet.execute(job("b"))


# -- failover ------------------------------------------------------------------------


def _status(status: int, body: bytes = b'{"error":"nope"}') -> Callable[[Reply], None]:
    def send(reply: Reply) -> None:
        reply.start(status, content_type="application/json", length=len(body))
        reply.raw(body)

    return send


def _reset(reply: Reply) -> None:
    reply.reset()


def _html(reply: Reply) -> None:
    body = b"<html><title>502 Bad Gateway</title></html>"
    reply.start(200, content_type="text/html", length=len(body))
    reply.raw(body)


FAILOVER_CASES = {
    "503": (_status(503), True),
    "500": (_status(500), True),
    "429": (_status(429), False),
    "401": (_status(401), False),
    "403": (_status(403), False),
    "404 model": (_status(404), False),
    "reset": (_reset, True),
    "html": (_html, False),
}


@pytest.mark.parametrize("case", FAILOVER_CASES, ids=list(FAILOVER_CASES))
def test_a_failure_before_the_first_byte_fails_over(case, servers, fleet_of):
    route, marks_down = FAILOVER_CASES[case]
    bad, good = fakes.vllm(servers()), fakes.chat(fakes.llamacpp(servers()))
    bad.route("POST", CHAT, route)
    fleet = fleet_of(VllmBackend(bad.url), LlamaCppBackend(good.url))
    got: List[bytes] = []
    result = fleet.run(job(), got.append)  # vLLM is tried first: kind priority
    # (a reset on a kept-alive connection is sent again once, to the same one)
    assert chats(bad) >= 1 and chats(good) == 1
    assert result.backend_id == f"llamacpp:{good.url}"
    assert b"".join(got) == b"".join(fakes.openai_chunks())
    status = fleet.snapshot()[f"vllm:{bad.url}"]
    assert status.up is not marks_down
    if case == "404 model":
        assert "tiny" not in status.model_ids  # until its next listing
    assert fleet.in_flight == 0


def test_an_unreachable_backend_fails_over_and_is_marked_down_at_once(
    servers, fleet_of
):
    dead = fakes.vllm(servers(), keep_alive=False)
    good = fakes.chat(fakes.llamacpp(servers()))
    fleet = fleet_of(VllmBackend(dead.url), LlamaCppBackend(good.url))
    fleet.refresh()  # both up and listed
    dead.stop()
    assert fleet.run(job(), lambda chunk: None).backend_id.startswith("llamacpp:")
    status = fleet.snapshot()[f"vllm:{dead.url}"]
    assert not status.up
    assert "a job failed" in (status.health.last_error or "")
    # The next job goes straight to the live one.
    fleet.run(job(), lambda chunk: None)
    assert chats(good) == 2


@pytest.mark.parametrize("status", [400, 422])
def test_a_request_error_does_not_fail_over(status, servers, fleet_of):
    bad, good = fakes.vllm(servers()), fakes.chat(fakes.llamacpp(servers()))
    bad.route("POST", CHAT, _status(status, b'{"error":"max_tokens is too large"}'))
    fleet = fleet_of(VllmBackend(bad.url), LlamaCppBackend(good.url))
    with pytest.raises(BadStatusError) as caught:
        fleet.execute(job())
    assert caught.value.status == status
    assert "max_tokens is too large" in str(caught.value)
    assert chats(good) == 0
    assert fleet.snapshot()[f"vllm:{bad.url}"].up  # the backend is fine
    assert fleet.in_flight == 0


def test_a_failure_after_the_first_byte_does_not_fail_over(servers, fleet_of):
    bad, good = fakes.vllm(servers()), fakes.chat(fakes.llamacpp(servers()))

    def cut(reply: Reply) -> None:
        reply.start(200)
        reply.write(fakes.openai_chunks()[0])
        reply.reset()

    bad.route("POST", CHAT, cut)
    fleet = fleet_of(VllmBackend(bad.url), LlamaCppBackend(good.url))
    got: List[bytes] = []
    with pytest.raises(StreamError):
        fleet.run(job(), got.append)
    assert b"".join(got) == fakes.openai_chunks()[0]
    assert chats(good) == 0
    assert fleet.in_flight == 0


def test_the_deadline_covers_every_attempt_and_does_not_fail_over(servers, fleet_of):
    slow_fail, silent = fakes.vllm(servers()), fakes.llamacpp(servers())

    def late_503(reply: Reply) -> None:
        time.sleep(0.8)
        _status(503)(reply)

    slow_fail.route("POST", CHAT, late_503)  # tried first: kind priority
    silent.route("POST", CHAT, lambda reply: time.sleep(4))  # no headers at all
    fleet = fleet_of(VllmBackend(slow_fail.url), LlamaCppBackend(silent.url))
    fleet.refresh()
    started = time.monotonic()
    with pytest.raises(BackendTimeoutError) as caught:
        fleet.execute(job(deadline_ms=1000))
    elapsed = time.monotonic() - started
    # One deadline for both attempts: a deadline per attempt would be 1.8 s.
    assert 0.9 <= elapsed < 1.6, elapsed
    assert chats(slow_fail) == 1 and chats(silent) == 1
    assert error_code(caught.value) == "backend_timeout"
    assert fleet.in_flight == 0


def test_every_candidate_failing_names_each_attempt(servers, fleet_of):
    a, b = fakes.vllm(servers()), fakes.llamacpp(servers())
    a.route("POST", CHAT, _status(503, b'{"error":"overloaded"}'))
    b.route("POST", CHAT, _status(502, b"<html><title>Bad Gateway</title></html>"))
    fleet = fleet_of(VllmBackend(a.url), LlamaCppBackend(b.url))
    with pytest.raises(AllBackendsFailedError) as caught:
        fleet.execute(job())
    error = caught.value
    assert [e.backend for e in error.attempts] == [f"vllm:{a.url}", f"llamacpp:{b.url}"]
    assert "overloaded" in str(error) and "Bad Gateway" in str(error)
    assert error_code(error) == "backend_unreachable"
    assert fleet.in_flight == 0


def test_when_every_candidate_is_marked_down_they_are_tried_anyway(servers, fleet_of):
    srv = fakes.chat(fakes.llamacpp(servers()))
    backend = LlamaCppBackend(srv.url)
    fleet = fleet_of(backend)
    fleet.refresh()
    fleet.monitor.mark_down(backend.id, "stale mark")
    assert fleet.run(job(), lambda chunk: None).backend_id == backend.id


# -- passive health and recovery -----------------------------------------------------


def test_a_down_backend_is_probed_again_and_relisted_when_it_recovers(
    servers, fleet_of
):
    srv = servers()
    srv.route("GET", "/health", _status(503, b'{"error":"loading"}'))
    srv.json("GET", "/v1/models", {"data": [{"id": "old"}]})
    backend = LlamaCppBackend(srv.url)
    fleet = fleet_of(backend, health_interval=60)
    with pytest.raises(ModelNotLoadedError):
        fleet.execute(job("new"))  # first discovery: down, nothing listed
    assert not fleet.snapshot()[backend.id].up
    fakes.llamacpp(srv, ["new"])
    fakes.chat(srv)
    # Re-probed after about a second (the backoff), not the 60 s interval.
    assert eventually(lambda: fleet.snapshot()[backend.id].up, 10)
    assert eventually(lambda: "new" in fleet.snapshot()[backend.id].model_ids, 5)
    assert fleet.run(job("new"), lambda chunk: None).output_tokens == 2


# -- capacity, release and cancel ------------------------------------------------------


def test_a_dropped_stream_frees_its_slot(servers, fleet_of):
    srv = fakes.llamacpp(servers())
    release = fakes.held(srv)
    fleet = fleet_of(LlamaCppBackend(srv.url), max_concurrent=1)
    stream = fleet.execute(job())
    next(stream)
    del stream
    gc.collect()
    assert fleet.in_flight == 0
    release.set()


def test_a_member_limit_bounds_its_backend(servers, fleet_of):
    srv = fakes.llamacpp(servers())
    release = fakes.held(srv)
    fleet = fleet_of(Member(LlamaCppBackend(srv.url), max_concurrent=1))
    with fleet.execute(job()):
        with pytest.raises(OutOfCapacityError):
            fleet.execute(job())
        assert fleet.in_flight == 1
    release.set()
    assert fleet.in_flight == 0


def test_cancel_while_waiting_for_headers(servers, fleet_of):
    srv = fakes.llamacpp(servers())
    gate = threading.Event()
    srv.route("POST", CHAT, lambda reply: gate.wait(10))
    fleet = fleet_of(LlamaCppBackend(srv.url))
    fleet.refresh()
    the_job = job()
    errors: List[BaseException] = []

    def execute() -> None:
        try:
            fleet.execute(the_job)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    worker = threading.Thread(target=execute)
    worker.start()
    assert eventually(lambda: chats(srv) == 1)
    started = time.monotonic()
    assert fleet.cancel(the_job.job_id)
    worker.join(5)
    assert time.monotonic() - started < 1
    assert isinstance(errors[0], JobCancelledError)
    assert fleet.in_flight == 0
    gate.set()


def test_the_cancel_complete_race_releases_each_slot_once(servers, fleet_of):
    srv = fakes.chat(fakes.llamacpp(servers()), fakes.openai_chunks("a b c"))
    release = fakes.held(other := fakes.llamacpp(servers(), ["held"]))
    fleet = fleet_of(LlamaCppBackend(srv.url), LlamaCppBackend(other.url))
    fleet.refresh()
    # A second job holds a slot throughout: a slot given back twice would show
    # as in_flight 0 (or raise), not only when nothing else runs.
    held = fleet.execute(job("held"))
    outcomes = {"done": 0, "cancelled": 0, "cancel won": 0, "cancel late": 0}
    for i in range(1500):
        the_job = job()
        stream = fleet.execute(the_job)
        chunks = list(itertools.islice(stream, 6))  # every chunk, not the end
        assert chunks[-1].endswith(b"[DONE]\n\n")
        go = threading.Barrier(2)
        found: List[bool] = []
        # Land before, during and after the stream's end.
        canceller = threading.Thread(
            target=_cancel_after, args=(go, (i % 7) * 2e-5, fleet, the_job, found)
        )
        canceller.start()
        go.wait()
        time.sleep(((i + 3) % 7) * 2e-5)  # either side may be first
        try:
            for _ in stream:
                pass
            outcomes["done"] += 1
        except JobCancelledError:
            outcomes["cancelled"] += 1
        canceller.join()
        outcomes["cancel won" if found[0] else "cancel late"] += 1
        assert fleet.in_flight == 1, f"iteration {i}: {fleet.in_flight}"
    assert outcomes["done"] > 0 and outcomes["cancel late"] > 0
    assert outcomes["cancel won"] > 0, outcomes  # the two really raced
    held.close()
    release.set()
    assert fleet.in_flight == 0


def _cancel_after(
    go: threading.Barrier, delay: float, fleet: Fleet, the_job: Job, found: List[bool]
) -> None:
    go.wait()
    time.sleep(delay)
    found.append(fleet.cancel(the_job.job_id))


def test_submit_rejects_at_once_and_runs_on_the_pool(servers, fleet_of):
    srv = fakes.chat(fakes.llamacpp(servers()))
    fleet = fleet_of(LlamaCppBackend(srv.url))
    with pytest.raises(ModelNotLoadedError):
        fleet.submit(job("nope"), lambda chunk: None)
    got: List[bytes] = []
    callers: List[str] = []

    def sink(chunk: bytes) -> None:
        got.append(chunk)
        callers.append(threading.current_thread().name)

    future = fleet.submit(job(), sink)
    assert future.result(5).output_tokens == 2
    assert b"".join(got) == b"".join(fakes.openai_chunks())
    assert all(name.startswith("provider-agent-job") for name in callers)
    assert fleet.in_flight == 0


def test_close_cancels_what_runs_and_waits_for_it(servers):
    srv = fakes.llamacpp(servers())
    release = fakes.held(srv)
    backend = LlamaCppBackend(srv.url)
    fleet = Fleet([backend])
    future = fleet.submit(job(), lambda chunk: None)
    assert eventually(lambda: chats(srv) == 1)
    fleet.close()
    assert fleet.in_flight == 0
    with pytest.raises(JobCancelledError):
        future.result(1)
    with pytest.raises(RuntimeError):
        fleet.execute(job())
    assert not fleet.monitor.running
    release.set()
    backend.close()


def test_a_fleet_starts_no_thread_until_it_is_used(servers):
    srv = fakes.chat(fakes.llamacpp(servers()))
    before = threading.active_count()
    fleet = Fleet([LlamaCppBackend(srv.url)])
    assert threading.active_count() == before
    assert not fleet.monitor.running
    fleet.run(job(), lambda chunk: None)
    assert fleet.monitor.running
    fleet.close()
    for backend in fleet.backends:
        backend.close()


def test_a_backend_given_twice_is_refused():
    backend = LlamaCppBackend("http://127.0.0.1:9")
    with pytest.raises(ValueError, match="two backends"):
        Fleet([backend, backend])
    backend.close()


def test_a_backend_fleet_error_is_one_except_away():
    from provider_agent.backend import BackendError

    assert issubclass(ModelNotLoadedError, BackendError)
    assert issubclass(OutOfCapacityError, BackendError)
    assert issubclass(AllBackendsFailedError, BackendError)


def test_a_fleet_stream_reads_as_text_and_complete_gives_the_whole_reply(
    servers, fleet_of
):
    srv = fakes.chat(fakes.llamacpp(servers()), fakes.openai_chunks("Hello there"))
    backend = LlamaCppBackend(srv.url)
    fleet = fleet_of(backend)
    with fleet.execute(job()) as stream:
        assert list(stream.iter_text()) == ["Hello", "there"]
    assert stream.result is not None and stream.result.finish_reason == "stop"
    request = {"messages": [{"role": "user", "content": "Hi"}], "stream": False}
    reply = fleet.complete(Job.new("tiny", request))
    assert (reply.text, reply.finish_reason) == ("Hellothere", "stop")
    assert reply.result.backend_id == backend.id
    assert srv.last(CHAT).json()["stream"] is True
    assert fleet.in_flight == 0


def test_a_cancel_during_the_first_discovery_stops_the_job(servers, fleet_of):
    srv = fakes.chat(fakes.llamacpp(servers()))
    listing_started = fakes.slowed(srv, "/v1/models", 0.5)
    fleet = fleet_of(LlamaCppBackend(srv.url))
    the_job = job()
    errors: List[BaseException] = []
    worker = threading.Thread(target=lambda: _catch(errors, fleet.execute, the_job))
    worker.start()
    assert listing_started.wait(5)
    assert fleet.cancel(str(the_job.job_id))  # the string form works too
    worker.join(5)
    assert isinstance(errors[0], JobCancelledError)
    assert chats(srv) == 0
    assert fleet.in_flight == 0


def _catch(errors: List[BaseException], fn: Callable[..., Any], *args: Any) -> None:
    try:
        fn(*args)
    except BaseException as exc:  # noqa: BLE001
        errors.append(exc)


def test_a_submitted_job_cancelled_before_it_ran_frees_its_slot(servers, fleet_of):
    srv = fakes.chat(fakes.llamacpp(servers()))
    fleet = fleet_of(LlamaCppBackend(srv.url), max_concurrent=1)
    fleet.refresh()
    go, gate, in_callback = threading.Event(), threading.Event(), threading.Event()
    first = fleet.submit(job(), lambda chunk: go.wait(5))

    def hold_the_worker(future: Any) -> None:  # runs in the pool's one thread
        in_callback.set()
        gate.wait(5)

    first.add_done_callback(hold_the_worker)
    go.set()
    assert in_callback.wait(5)
    assert fleet.in_flight == 0  # the first job let go; its thread is busy
    queued = fleet.submit(job(), lambda chunk: None)
    assert fleet.in_flight == 1
    assert queued.cancel()
    assert fleet.in_flight == 0
    gate.set()
    assert fleet.run(job(), lambda chunk: None).output_tokens == 2


def test_a_dropped_stream_frees_its_slot_after_a_failover_without_the_collector(
    servers, fleet_of
):
    bad, good = fakes.vllm(servers()), fakes.llamacpp(servers())
    bad.route("POST", CHAT, _status(503))
    release = fakes.held(good)
    fleet = fleet_of(VllmBackend(bad.url), LlamaCppBackend(good.url))
    gc.disable()
    try:
        stream = fleet.execute(job())
        assert stream.backend_id.startswith("llamacpp:")
        del stream
        assert fleet.in_flight == 0  # freed by reference counting alone
    finally:
        gc.enable()
        release.set()


def test_a_stream_cut_after_its_headers_is_the_stream_s_error(servers, fleet_of):
    # The reply's status line and headers came: the job is that backend's now.
    bad, good = fakes.vllm(servers()), fakes.chat(fakes.llamacpp(servers()))

    def headers_then_close(reply: Reply) -> None:
        reply.start(200)
        reply.close()

    bad.route("POST", CHAT, headers_then_close)
    fleet = fleet_of(VllmBackend(bad.url), LlamaCppBackend(good.url))
    with pytest.raises((StreamError, TransportError)):
        fleet.run(job(), lambda chunk: None)
    assert chats(good) == 0
    assert fleet.in_flight == 0


def test_a_bad_sink_is_refused_before_any_request(servers, fleet_of):
    srv = fakes.chat(fakes.llamacpp(servers()))
    fleet = fleet_of(LlamaCppBackend(srv.url))
    for call in (fleet.run, fleet.submit):
        with pytest.raises(TypeError):
            call(job(), "not a sink")
    assert chats(srv) == 0
    assert fleet.in_flight == 0


def test_limits_must_be_whole_positive_numbers():
    backend = LlamaCppBackend("http://127.0.0.1:9")
    with pytest.raises(TypeError):
        Fleet([backend], max_concurrent=2.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Fleet([backend], max_concurrent=0)
    with pytest.raises(ValueError):
        Member(backend, max_concurrent=0)
    backend.close()
