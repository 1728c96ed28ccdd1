"""``poll_health`` and ``list_all_models``: every probe at once, bounded by one
timeout, against scripted servers, closed ports and ports that never answer."""

from __future__ import annotations

import socket
import threading
import time
from typing import Iterator, List

import pytest

from provider_agent.backend import BackendError, LlamaCppBackend
from provider_agent.fleet import list_all_models, poll_health
from provider_agent.scan import scan

from . import fakes
from .polling import eventually
from .server import ScriptedServer


class Silent:
    """Ports that accept connections (in the kernel's backlog) and never answer."""

    def __init__(self, count: int) -> None:
        self.sockets: List[socket.socket] = []
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sock.listen(16)
            self.sockets.append(sock)

    @property
    def urls(self) -> List[str]:
        return [f"http://127.0.0.1:{s.getsockname()[1]}" for s in self.sockets]

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()


def closed_urls(count: int) -> List[str]:
    urls = []
    for _ in range(count):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        urls.append(f"http://127.0.0.1:{sock.getsockname()[1]}")
        sock.close()
    return urls


@pytest.fixture
def silent() -> Iterator[Silent]:
    ports = Silent(20)
    yield ports
    ports.close()


@pytest.fixture
def healthy() -> Iterator[List[ScriptedServer]]:
    servers = [fakes.llamacpp(ScriptedServer()) for _ in range(20)]
    yield servers
    for srv in servers:
        srv.stop()


def test_sixty_backends_a_third_hanging_take_about_one_timeout(silent, healthy):
    urls = silent.urls + closed_urls(20) + [s.url for s in healthy]
    backends = [LlamaCppBackend(url, health_timeout=30) for url in urls]
    started = time.monotonic()
    health = poll_health(backends, timeout=1.0)
    wall = time.monotonic() - started
    for backend in backends:
        backend.close()
    # A loose bound for behaviour (benchmarks/fleet_poll.py has the figures):
    # a pool of 16 threads needs two timeouts here, one probe at a time sixty.
    assert wall < 1.9, wall
    assert [health[b.id].reachable for b in backends] == [False] * 40 + [True] * 20
    hung = [health[b.id].last_error for b in backends[:20]]
    assert all("deadline" in (e or "") for e in hung), hung


def test_each_backend_s_own_timeout_is_the_default(silent):
    backends = [
        LlamaCppBackend(url, health_timeout=t)
        for url, t in zip(silent.urls[:2], (0.2, 0.6))
    ]
    started = time.monotonic()
    health = poll_health(backends)
    assert time.monotonic() - started < 2
    assert not any(h.reachable for h in health.values())
    for backend in backends:
        backend.close()


def test_backends_sharing_an_id_are_probed_once(server):
    fakes.llamacpp(server)
    backends = [LlamaCppBackend(server.url), LlamaCppBackend(server.url + "/")]
    health = poll_health(backends)
    assert list(health) == [backends[0].id]
    assert sum(1 for r in server.requests if r.path == "/health") == 1
    for backend in backends:
        backend.close()


def test_an_empty_poll_is_empty():
    assert poll_health([]) == {}
    assert list_all_models([]) == {}


def _pollers() -> List[threading.Thread]:
    return [
        t for t in threading.enumerate() if t.name.startswith("provider-agent-poll")
    ]


def test_the_poll_leaves_no_thread_behind(healthy):
    backends = [LlamaCppBackend(s.url) for s in healthy]
    poll_health(backends)
    list_all_models(backends)
    assert eventually(lambda: not _pollers())
    for backend in backends:
        backend.close()


def test_listings_come_back_as_models_or_the_error(server, other):
    fakes.llamacpp(server, ["a", "b"])
    other.json("GET", "/v1/models", b"<html>nope</html>")
    backends = [LlamaCppBackend(server.url), LlamaCppBackend(other.url)]
    listings = list_all_models(backends)
    assert [m.model_id for m in listings[backends[0].id]] == ["a", "b"]
    assert isinstance(listings[backends[1].id], BackendError)
    for backend in backends:
        backend.close()


def test_scan_runs_on_the_same_poll(silent, healthy):
    # 20 hanging backends: a pool of 16 (the scan this replaced) needs two
    # probe timeouts for them, the poll one.
    backends = [LlamaCppBackend(u, health_timeout=1.0) for u in silent.urls]
    backends += [LlamaCppBackend(s.url) for s in healthy]
    started = time.monotonic()
    results = scan(backends)
    assert time.monotonic() - started < 1.9
    assert [r.health.reachable for r in results] == [False] * 20 + [True] * 20
    assert all(r.models[0].model_id == "tiny" for r in results[20:])
    for backend in backends:
        backend.close()


def test_a_listing_that_raises_is_that_backend_s_error(
    server: ScriptedServer, other: ScriptedServer
) -> None:
    class Broken(LlamaCppBackend):
        def list_models(self):  # a bug in an adapter, not a network failure
            raise KeyError("n_ctx")

    fakes.llamacpp(other)
    with Broken(server.url) as broken, LlamaCppBackend(other.url) as fine:
        listings = list_all_models([broken, fine])
    error = listings[broken.id]
    assert isinstance(error, BackendError) and "KeyError" in error.message
    assert [m.model_id for m in listings[fine.id]] == ["tiny"]  # not lost with it
