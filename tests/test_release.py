"""What a layer above a backend relies on: the stream says once when it lets go of
its connection, a cancel frees it even when nobody reads, the result names its
backend, and a stopped probe ends at once."""

from __future__ import annotations

import gc
import threading
import time
from typing import Iterator, List

import pytest

from provider_agent.backend import (
    Job,
    JobCancelledError,
    LlamaCppBackend,
    StreamError,
    VeniceBackend,
    WireFormat,
)
from provider_agent.backend._stopper import Stopper, under

from . import fakes
from .server import ScriptedServer

CHAT = "/v1/chat/completions"


def a_job() -> Job:
    return Job.new("tiny", {"messages": [{"role": "user", "content": "Hi"}]})


@pytest.fixture
def llama(server: ScriptedServer) -> Iterator[LlamaCppBackend]:
    with LlamaCppBackend(server.url) as backend:
        yield backend


@pytest.mark.parametrize("ending", ["end", "close", "cancel", "drop", "error"])
def test_the_release_callback_runs_exactly_once_on_every_path(ending, server, llama):
    release = threading.Event()
    chunks = fakes.openai_chunks()
    if ending == "error":
        server.stream("POST", CHAT, [chunks[0]])  # no terminator
    else:
        server.stream("POST", CHAT, [chunks[0], release, *chunks[1:]])
    calls: List[int] = []
    stream = llama.execute(a_job())
    stream.add_release_callback(lambda: calls.append(1))
    assert next(stream) == chunks[0]
    if ending == "end":
        release.set()
        assert b"".join(stream).endswith(b"[DONE]\n\n")
    elif ending == "close":
        stream.close()
    elif ending == "cancel":
        stream.cancel()
    elif ending == "drop":
        del stream
        gc.collect()
    else:
        with pytest.raises(StreamError):
            list(stream)
    assert calls == [1]
    if ending != "drop":
        stream.close()
        stream.cancel()
        assert calls == [1]
    release.set()


def test_a_callback_added_after_the_release_runs_at_once(server, llama):
    fakes.chat(server)
    stream = llama.execute(a_job())
    list(stream)
    calls: List[int] = []
    stream.add_release_callback(lambda: calls.append(1))
    assert calls == [1]


def test_cancel_with_nobody_reading_frees_the_connection_and_the_next_read_raises(
    server, llama
):
    release = fakes.held(server)
    stream = llama.execute(a_job())
    next(stream)
    stream.cancel()
    assert repr(stream).endswith(f"closed relayed={stream.bytes_relayed}>")
    with pytest.raises(JobCancelledError):
        next(stream)
    assert stream.result is None
    release.set()


def test_a_cancel_from_another_thread_wakes_the_reader(server, llama):
    release = fakes.held(server)
    stream = llama.execute(a_job())
    next(stream)
    threading.Timer(0.2, stream.cancel).start()
    started = time.monotonic()
    with pytest.raises(JobCancelledError):
        list(stream)
    assert time.monotonic() - started < 3
    release.set()


def test_the_result_names_the_backend_that_served_it(server, llama):
    fakes.chat(server)
    result = llama.run(a_job(), lambda chunk: None)
    assert result.backend_id == llama.id
    assert result.to_dict()["backend_id"] == llama.id


def test_speaks_says_which_formats_a_backend_takes():
    with VeniceBackend("sk-test") as venice:
        assert venice.speaks(WireFormat.OPENAI)
        assert not venice.speaks(WireFormat.ANTHROPIC)
    with LlamaCppBackend() as llama:
        assert all(llama.speaks(f) for f in WireFormat)


def test_health_takes_a_timeout_of_its_own(silent_url):
    with LlamaCppBackend(silent_url, health_timeout=30) as backend:
        started = time.monotonic()
        health = backend.health(timeout=0.3)
    assert not health.reachable
    assert "deadline" in (health.last_error or "")
    assert time.monotonic() - started < 3


def test_a_stopper_ends_the_probes_it_covers(silent_url):
    stopper = Stopper()
    results = []

    def probe() -> None:
        with under(stopper):
            results.append(backend.health())

    with LlamaCppBackend(silent_url, health_timeout=30) as backend:
        worker = threading.Thread(target=probe)
        worker.start()
        time.sleep(0.2)
        started = time.monotonic()
        stopper.stop()
        worker.join(5)
        assert time.monotonic() - started < 2
        assert not results[0].reachable
        # A probe started under a stopped stopper ends at once too.
        worker = threading.Thread(target=probe)
        worker.start()
        worker.join(5)
        assert len(results) == 2 and not results[1].reachable


def test_a_job_started_outside_a_stopper_is_not_cut_by_it(server, llama):
    # A monitor's stopper (its probes) must never reach a job of the caller's.
    release = fakes.held(server)
    stopper = Stopper()
    stream = llama.execute(a_job())
    with under(stopper):
        llama.health()
    stopper.stop()
    release.set()
    assert b"".join(stream).endswith(b"[DONE]\n\n")


def test_a_job_started_under_a_stopper_is_cut_by_it_at_any_stage(server, llama):
    # A fleet runs a job's attempt under the job's own stopper: cancelling it
    # reaches the attempt streaming, and one that has not started yet.
    release = fakes.held(server)
    stopper = Stopper()
    with under(stopper):
        stream = llama.execute(a_job())
    next(stream)
    threading.Timer(0.1, stopper.stop).start()
    with pytest.raises(JobCancelledError):
        list(stream)
    posts = sum(1 for r in server.requests if r.method == "POST")
    late = a_job()
    with pytest.raises(JobCancelledError), under(stopper):
        llama.execute(late)  # stopped before it began: never sent
    assert not llama.cancel(late.job_id)  # and forgotten
    release.set()
    assert sum(1 for r in server.requests if r.method == "POST") == posts


def test_a_cancel_racing_a_read_ends_it_as_cancelled_every_time(server, llama):
    release = fakes.held(server)
    for i in range(300):
        stream = llama.execute(a_job())
        next(stream)
        canceller = threading.Thread(target=stream.cancel)
        canceller.start()
        if i % 2:
            time.sleep(0.0001)  # the read, sometimes, is under way first
        with pytest.raises(JobCancelledError):
            next(stream)
        canceller.join()
    release.set()
