"""Each backend keeps one session: many jobs leave the open socket count flat."""

from __future__ import annotations

import gc
import logging
import os
import threading
import time
import warnings

import pytest

from provider_agent.backend import (
    Job,
    LlamaCppBackend,
    OpenRouterBackend,
    TransportError,
)

from .polling import eventually
from .server import ScriptedServer

EVENTS = [
    b'data: {"choices":[{"index":0,"delta":{"content":"Hi"}}]}\n\n',
    b'data: {"choices":[],"usage":{"prompt_tokens":2,"completion_tokens":1}}\n\n',
    b"data: [DONE]\n\n",
]


def _tcp_local_ports() -> dict:
    """inode -> local port of every TCP socket on the machine (Linux /proc)."""
    ports = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            ports[fields[9]] = int(fields[1].rsplit(":", 1)[1], 16)
    return ports


def client_sockets(server_port: int) -> int:
    """Sockets this process holds open, other than the test server's own."""
    ports = _tcp_local_ports()
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # closed while listing
        if target.startswith("socket:["):
            if ports.get(target[8:-1]) != server_port:
                count += 1
    return count


def job() -> Job:
    return Job.new("tiny", {"messages": [{"role": "user", "content": "Hi"}]})


def test_a_thousand_jobs_leave_the_socket_count_flat(server: ScriptedServer) -> None:
    server.stream("POST", "/v1/chat/completions", EVENTS)
    backend = LlamaCppBackend(server.url)
    backend.run(job(), lambda chunk: None)
    before = client_sockets(server.port)
    results = [backend.run(job(), lambda chunk: None) for _ in range(1000)]
    after = client_sockets(server.port)
    assert all(r.output_tokens == 1 for r in results)
    assert after <= before + 2, (before, after)
    # The session reuses its connection instead of opening one per job.
    assert server.connections <= 3
    backend.close()


def test_leaving_the_loop_early_does_not_leak(server: ScriptedServer) -> None:
    server.stream("POST", "/v1/chat/completions", [EVENTS[0], 0.5] + EVENTS[1:])
    backend = LlamaCppBackend(server.url)
    before = client_sockets(server.port)
    threads = threading.active_count()
    kept = []
    for _ in range(50):
        with backend.execute(job()) as stream:
            for _chunk in stream:
                break
        kept.append(stream)  # still referenced, yet its connection is closed
    assert client_sockets(server.port) <= before + 2
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(50):
            for _chunk in backend.execute(job()):
                break  # dropped without close(): the stream closes itself
        gc.collect()
    assert client_sockets(server.port) <= before + 2
    # Closed by the stream, not left for the socket's finaliser to find, and no
    # deadline timer left waiting for a stream nobody reads.
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]
    assert eventually(lambda: threading.active_count() <= threads + 2)
    backend.close()


def test_the_pool_is_reused_after_an_early_exit(server: ScriptedServer) -> None:
    server.stream("POST", "/v1/chat/completions", EVENTS)
    backend = LlamaCppBackend(server.url)
    with backend.execute(job()) as stream:
        next(stream)
    result = backend.run(job(), lambda chunk: None)
    assert result.input_tokens == 2
    backend.close()


def test_concurrent_jobs_share_one_backend(
    server: ScriptedServer, caplog: pytest.LogCaptureFixture
) -> None:
    release = threading.Event()
    server.stream("POST", "/v1/chat/completions", [EVENTS[0], release, *EVENTS[1:]])
    backend = LlamaCppBackend(server.url)
    results: list = []
    errors: list = []

    def one() -> None:
        try:
            results.append(backend.run(job(), lambda chunk: None))
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    caplog.set_level(logging.WARNING)
    threads = [threading.Thread(target=one) for _ in range(24)]
    for t in threads:
        t.start()
    # Every job is in flight at once, each holding its own connection.
    assert eventually(lambda: len(server.requests) == 24)
    release.set()
    for t in threads:
        t.join(10)
    assert errors == [] and len(results) == 24
    assert all(r.output_tokens == 1 for r in results)
    assert server.connections == 24
    # No "connection pool is full" warnings below max_connections.
    assert [r.getMessage() for r in caplog.records] == []
    backend.close()


def _closing_kept_alive_connections(server: ScriptedServer) -> None:
    """Answers the first request on each connection; closes the connection on
    the next one without a reply, as llama-server does after every stream
    (it advertises keep-alive, then closes)."""

    def route(reply) -> None:
        if reply.nth_on_connection > 1:
            reply.close()
            return
        reply.start()
        for event in EVENTS:
            reply.write(event)
        reply.end()

    server.route("POST", "/v1/chat/completions", route)


def test_a_request_on_a_connection_the_server_closed_goes_out_again(
    server: ScriptedServer,
) -> None:
    _closing_kept_alive_connections(server)
    with LlamaCppBackend(server.url) as backend:
        for n in range(3):
            job = Job.new("m", {"messages": [], "n": n})
            with backend.execute(job) as stream:
                assert b"".join(stream) == b"".join(EVENTS)
    # Jobs 2 and 3 each went out on a pooled connection the server then
    # closed unanswered, and again, with the same body, on a new one.
    bodies = [request.json()["n"] for request in server.requests]
    assert bodies == [0, 1, 1, 2, 2]
    assert server.connections == 3


def test_a_new_connection_closed_without_a_reply_is_not_retried(
    server: ScriptedServer,
) -> None:
    server.route("POST", "/v1/chat/completions", lambda reply: reply.close())
    with LlamaCppBackend(server.url) as backend:
        with pytest.raises(TransportError, match="closed connection without"):
            backend.execute(Job.new("m", {"messages": []}))
    assert len(server.requests) == 1


def test_a_pooled_connection_found_dropped_then_reset_is_not_retried(
    server: ScriptedServer,
) -> None:
    # The first reply is followed by a close the client sees before its next
    # job: that job opens a new socket (on the same pooled connection object),
    # which the server resets. A new socket's failure is never retried.
    def route(reply) -> None:
        if server.connections > 1:
            reply.reset()
            return
        reply.start()
        for event in EVENTS:
            reply.write(event)
        reply.end()
        reply.close()

    server.route("POST", "/v1/chat/completions", route)
    with LlamaCppBackend(server.url) as backend:
        with backend.execute(Job.new("m", {"messages": []})) as stream:
            assert b"".join(stream) == b"".join(EVENTS)
        time.sleep(0.2)
        with pytest.raises(TransportError):
            backend.execute(Job.new("m", {"messages": []}))
    assert len(server.requests) == 2


def test_a_remote_api_is_never_sent_a_request_twice(server: ScriptedServer) -> None:
    # A request that reached a paid API may be billed even if no reply came.
    server.json("GET", "/key", {"data": {}})
    _closing_kept_alive_connections(server)
    server.routes[("POST", "/chat/completions")] = server.routes.pop(
        ("POST", "/v1/chat/completions")
    )
    with OpenRouterBackend("k", server.url) as backend:
        with backend.execute(Job.new("m", {"messages": []})) as stream:
            assert b"".join(stream) == b"".join(EVENTS)
        with pytest.raises(TransportError):
            backend.execute(Job.new("m", {"messages": []}))
    assert len(server.requests) == 2
