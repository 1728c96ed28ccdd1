"""Shared fixtures: scripted HTTP servers on 127.0.0.1."""

from __future__ import annotations

from typing import Iterator

import pytest

from .server import ScriptedServer


@pytest.fixture(autouse=True)
def _loopback_without_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # Remote adapters honour proxy variables; loopback test traffic must not.
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    srv = ScriptedServer()
    yield srv
    srv.stop()
