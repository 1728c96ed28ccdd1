"""Deadlines: ``Job.deadline_ms`` bounds the whole call, whatever the upstream does.

The upstream here hangs before its headers, hangs after them, or trickles a byte
every 100 ms so that no socket read ever times out. The deadline must still fire
within a small margin, close the connection and raise BackendTimeoutError (also a
builtin TimeoutError), after handing over every byte that arrived in time. Health
probes and model listings have their own bounds; the connect timeout is separate.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Iterator, List, Tuple

import pytest

from provider_agent.backend import (
    BACKENDS,
    BackendError,
    BackendTimeoutError,
    Job,
    UnreachableError,
    VllmBackend,
)

from .kinds import chat_path, make_backend
from .server import Reply, ScriptedServer

KINDS = sorted(BACKENDS)
DEADLINE_MS = 500
#: The accepted window around a deadline: it may not fire early (beyond timer
#: jitter) and must fire within the aimed-for margin plus scheduling slack.
EARLY, LATE = 0.05, 0.5
STREAM = b'data: {"choices":[{"delta":{"content":"ok"}}]}\n\ndata: [DONE]\n\n'


def a_job(deadline_ms: int = DEADLINE_MS) -> Job:
    return Job.new(
        "m", {"messages": [{"role": "user", "content": "Hi"}]}, deadline_ms=deadline_ms
    )


def assert_at_deadline(elapsed: float, deadline_s: float) -> None:
    assert deadline_s - EARLY <= elapsed <= deadline_s + LATE, elapsed


class Upstream:
    """Route helpers that record when the client closed the connection."""

    def __init__(self) -> None:
        self.closed_at: List[float] = []
        self.done = threading.Event()
        self.written: List[Tuple[float, bytes]] = []

    def _wait_for_close(self, reply: Reply, limit: float = 5.0) -> None:
        # The client has sent its whole request: the next recv returns b"" only
        # when it closes (or shuts down) its side.
        sock: socket.socket = reply._h.connection  # the test server's own socket
        sock.settimeout(limit)
        try:
            while sock.recv(4096):
                pass
        except OSError:
            pass
        self.closed_at.append(time.monotonic())
        self.done.set()

    def hang(self, reply: Reply) -> None:
        """Accept the request and never answer."""
        self._wait_for_close(reply)

    def headers_then_hang(self, reply: Reply, first: bytes = b"") -> None:
        reply.start(200)
        if first:
            reply.write(first)
        self._wait_for_close(reply)

    def trickle(self, reply: Reply, content_type: str = "text/event-stream") -> None:
        """One byte every 100 ms, for up to 5 s or until the client goes away."""
        reply.start(200, content_type=content_type)
        letters = b"abcdefghijklmnopqrstuvwxyz"
        give_up = time.monotonic() + 5
        try:
            index = 0
            while time.monotonic() < give_up:
                byte = letters[index % 26 : index % 26 + 1]
                reply.write(byte)
                self.written.append((time.monotonic(), byte))
                index += 1
                time.sleep(0.1)
        except OSError:
            pass
        self.closed_at.append(time.monotonic())
        self.done.set()

    def wait(self) -> float:
        assert self.done.wait(3), "the client never closed the connection"
        return self.closed_at[0]


@pytest.fixture
def upstream() -> Upstream:
    return Upstream()


@pytest.mark.parametrize("kind", KINDS)
def test_hang_before_headers(kind: str, server: ScriptedServer, upstream: Upstream):
    server.route("POST", chat_path(kind), upstream.hang)
    with make_backend(kind, server.url) as backend:
        started = time.monotonic()
        with pytest.raises(BackendError) as info:
            backend.execute(a_job())
        elapsed = time.monotonic() - started
        assert type(info.value) is BackendTimeoutError
        assert info.value.backend == backend.id
        assert str(info.value).startswith(backend.id + ": ")
    assert_at_deadline(elapsed, DEADLINE_MS / 1000)
    # ... and the connection was closed at the deadline, not left open.
    assert_at_deadline(upstream.wait() - started, DEADLINE_MS / 1000)


def test_headers_then_hang(server: ScriptedServer, upstream: Upstream):
    first = b'data: {"choices":[{"delta":{"content":"he"}}]}\n\n'
    server.route(
        "POST", "/v1/chat/completions", lambda r: upstream.headers_then_hang(r, first)
    )
    received: List[bytes] = []
    with VllmBackend(server.url) as backend:
        started = time.monotonic()
        with pytest.raises(BackendTimeoutError) as info:
            with backend.execute(a_job()) as stream:
                for chunk in stream:
                    received.append(chunk)
        elapsed = time.monotonic() - started
    assert b"".join(received) == first
    assert info.value.backend == backend.id
    assert_at_deadline(elapsed, DEADLINE_MS / 1000)
    assert_at_deadline(upstream.wait() - started, DEADLINE_MS / 1000)


@pytest.mark.parametrize("kind", ["vllm", "openrouter"])
def test_trickle_is_cut_at_the_deadline(
    kind: str, server: ScriptedServer, upstream: Upstream
):
    server.route("POST", chat_path(kind), upstream.trickle)
    received: List[bytes] = []
    deadline_ms = 700
    with make_backend(kind, server.url) as backend:
        started = time.monotonic()
        with pytest.raises(BackendTimeoutError):
            for chunk in backend.execute(a_job(deadline_ms)):
                received.append(chunk)
        elapsed = time.monotonic() - started
    assert_at_deadline(elapsed, deadline_ms / 1000)
    # The connection was closed: the trickle stopped soon after the deadline.
    assert upstream.wait() - started < deadline_ms / 1000 + 1.0
    got = b"".join(received)
    written = b"".join(byte for _, byte in upstream.written)
    # Every byte handed over is upstream's, in order ...
    assert got == written[: len(got)]
    # ... and every byte sent well before the deadline was handed over.
    in_time = [
        t for t, _ in upstream.written if t < started + deadline_ms / 1000 - 0.15
    ]
    assert len(in_time) >= 3
    assert len(got) >= len(in_time)


def test_timeout_is_a_builtin_timeout_error(server: ScriptedServer, upstream: Upstream):
    assert issubclass(BackendTimeoutError, TimeoutError)
    server.route("POST", "/v1/chat/completions", upstream.hang)
    with VllmBackend(server.url) as backend:
        with pytest.raises(TimeoutError) as info:
            backend.execute(a_job(300))
    assert isinstance(info.value, BackendTimeoutError)
    assert type(info.value).__module__ == "provider_agent.backend.errors"


def test_run_is_bounded_by_the_deadline(server: ScriptedServer, upstream: Upstream):
    server.route("POST", "/v1/chat/completions", upstream.trickle)
    sunk: List[bytes] = []
    with VllmBackend(server.url) as backend:
        started = time.monotonic()
        with pytest.raises(BackendTimeoutError):
            backend.run(a_job(), sunk.append)
        elapsed = time.monotonic() - started
    assert_at_deadline(elapsed, DEADLINE_MS / 1000)
    assert (
        sunk and b"".join(sunk) == b"abcdefghijklmnopqrstuvwxyz"[: len(b"".join(sunk))]
    )


# -- connect: short and separate ---------------------------------------------------


@pytest.fixture
def unanswered_url() -> Iterator[str]:
    """A listening socket whose backlog is full: the kernel drops further SYNs, so
    a connect to it hangs until its timeout."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    address = listener.getsockname()
    fillers = []
    try:
        for _ in range(16):
            filler = socket.socket()
            filler.settimeout(0.2)
            fillers.append(filler)
            try:
                filler.connect(address)
            except OSError:  # socket.timeout included: the backlog is full
                break
        else:
            pytest.fail("could not fill the listen backlog")
        yield f"http://127.0.0.1:{address[1]}"
    finally:
        for sock in fillers:
            sock.close()
        listener.close()


def test_connect_timeout_is_short_and_separate_from_the_deadline(unanswered_url: str):
    with VllmBackend(unanswered_url, connect_timeout=0.3) as backend:
        started = time.monotonic()
        with pytest.raises(BackendError) as info:
            backend.execute(a_job(5000))
        elapsed = time.monotonic() - started
    assert type(info.value) is UnreachableError
    assert 0.25 <= elapsed <= 1.2, elapsed  # the connect timeout, not the deadline


def test_connect_timeout_applies_to_list_models(unanswered_url: str):
    backend = VllmBackend(unanswered_url, connect_timeout=0.3, request_timeout=5)
    with backend:
        started = time.monotonic()
        with pytest.raises(BackendError) as info:
            backend.list_models()
        elapsed = time.monotonic() - started
    assert type(info.value) is UnreachableError
    assert 0.25 <= elapsed <= 1.2, elapsed


def test_connect_timeout_applies_to_health(unanswered_url: str):
    with VllmBackend(unanswered_url, connect_timeout=0.3, health_timeout=5) as backend:
        started = time.monotonic()
        health = backend.health()
        elapsed = time.monotonic() - started
    assert health.reachable is False
    assert health.latency_ms is None
    assert 0.25 <= elapsed <= 1.2, elapsed


def test_deadline_shorter_than_connect_timeout_wins(unanswered_url: str):
    # The job's deadline bounds the connect as well: when it passes first, it is
    # a timeout, not an unreachable backend. (Five rounds: the connect timeout is
    # cut to the deadline, so the two race; the deadline must win every time.)
    with VllmBackend(unanswered_url, connect_timeout=3.0) as backend:
        for _ in range(5):
            started = time.monotonic()
            with pytest.raises(BackendError) as info:
                backend.execute(a_job(200))
            elapsed = time.monotonic() - started
            assert type(info.value) is BackendTimeoutError, repr(info.value)
            assert_at_deadline(elapsed, 0.2)


# -- health and model listings ------------------------------------------------------


def test_health_returns_within_its_timeout_when_the_server_hangs(
    server: ScriptedServer, upstream: Upstream
):
    server.route("GET", "/health", upstream.hang)
    with VllmBackend(server.url, health_timeout=0.5) as backend:
        started = time.monotonic()
        health = backend.health()
        elapsed = time.monotonic() - started
    assert health.reachable is False
    assert health.latency_ms is None
    assert isinstance(health.last_error, str) and health.last_error
    assert_at_deadline(elapsed, 0.5)


def test_health_returns_within_its_timeout_when_the_body_trickles(
    server: ScriptedServer, upstream: Upstream
):
    server.route("GET", "/health", lambda r: upstream.trickle(r, "application/json"))
    with VllmBackend(server.url, health_timeout=0.5) as backend:
        started = time.monotonic()
        health = backend.health()
        elapsed = time.monotonic() - started
    assert health.reachable is False
    assert isinstance(health.last_error, str) and health.last_error
    assert_at_deadline(elapsed, 0.5)


def test_list_models_hang_is_a_timeout(server: ScriptedServer, upstream: Upstream):
    server.route("GET", "/v1/models", upstream.hang)
    with VllmBackend(server.url, request_timeout=0.5) as backend:
        started = time.monotonic()
        with pytest.raises(BackendError) as info:
            backend.list_models()
        elapsed = time.monotonic() - started
    assert type(info.value) is BackendTimeoutError
    assert_at_deadline(elapsed, 0.5)
    assert_at_deadline(upstream.wait() - started, 0.5)


def test_list_models_trickle_is_a_timeout(server: ScriptedServer, upstream: Upstream):
    server.route("GET", "/v1/models", lambda r: upstream.trickle(r, "application/json"))
    with VllmBackend(server.url, request_timeout=0.5) as backend:
        started = time.monotonic()
        with pytest.raises(BackendError) as info:
            backend.list_models()
        elapsed = time.monotonic() - started
    assert type(info.value) is BackendTimeoutError
    assert_at_deadline(elapsed, 0.5)


# -- the backend after a timeout ----------------------------------------------------


def test_backend_works_after_a_timeout(server: ScriptedServer, upstream: Upstream):
    server.route("POST", "/v1/chat/completions", upstream.hang)
    with VllmBackend(server.url) as backend:
        with pytest.raises(BackendTimeoutError):
            backend.execute(a_job(300))
        server.stream("POST", "/v1/chat/completions", [STREAM])
        received: List[bytes] = []
        result = backend.run(a_job(5000), received.append)
        assert b"".join(received) == STREAM
        assert result.bytes_relayed == len(STREAM)
        # The listing goes through the same session.
        server.json("GET", "/v1/models", {"data": [{"id": "m", "max_model_len": 4096}]})
        assert [m.model_id for m in backend.list_models()] == ["m"]


def test_backend_works_after_a_trickle_timeout(
    server: ScriptedServer, upstream: Upstream
):
    server.route("POST", "/v1/chat/completions", upstream.trickle)
    with VllmBackend(server.url) as backend:
        with pytest.raises(BackendTimeoutError):
            for _ in backend.execute(a_job(300)):
                pass
        server.stream("POST", "/v1/chat/completions", [STREAM])
        received: List[bytes] = []
        backend.run(a_job(5000), received.append)
    assert b"".join(received) == STREAM


def test_an_old_deadline_never_cuts_a_reused_connection(server: ScriptedServer):
    server.stream("POST", "/v1/chat/completions", [STREAM])
    with VllmBackend(server.url) as backend:
        backend.run(a_job(300), lambda chunk: None)  # done long before its deadline
        # The next job reuses that connection and outlives the first one's deadline.
        server.stream("POST", "/v1/chat/completions", [STREAM[:10], 0.5, STREAM[10:]])
        received: List[bytes] = []
        backend.run(a_job(5000), received.append)
    assert b"".join(received) == STREAM
    assert server.connections == 1  # it really was the same connection
