"""Shared fixtures: scripted HTTP servers on loopback, and no proxies."""

from __future__ import annotations

import socket
from typing import Iterator

import pytest

from .server import ScriptedServer


@pytest.fixture(autouse=True)
def _loopback_without_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # Remote adapters honour proxy variables; loopback test traffic must not.
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,127.0.0.2,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,127.0.0.2,localhost")


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    srv = ScriptedServer()
    yield srv
    srv.stop()


@pytest.fixture
def other() -> Iterator[ScriptedServer]:
    """A second server on another loopback address: another host."""
    srv = ScriptedServer(host="127.0.0.2")
    yield srv
    srv.stop()


@pytest.fixture
def silent_url() -> Iterator[str]:
    """A port that accepts connections (into the kernel's backlog) and never
    answers: a backend that hangs."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()
