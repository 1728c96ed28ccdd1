"""What the shared session sends, whatever the environment says."""

from __future__ import annotations

from pathlib import Path

import pytest

from provider_agent.backend import LlamaCppBackend, OpenRouterBackend

from .server import ScriptedServer


def test_netrc_never_replaces_the_key(
    server: ScriptedServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password hunter2\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    server.json("GET", "/api/v1/key", {"data": {"label": "k"}})
    backend = OpenRouterBackend("sk-or-own", base_url=server.url + "/api/v1")
    assert backend.health().reachable
    assert server.last().headers["Authorization"] == "Bearer sk-or-own"


def test_local_backends_ignore_proxy_variables(
    server: ScriptedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A proxy that does not exist: a backend that used it would be unreachable.
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY")
    monkeypatch.delenv("no_proxy")
    server.json("GET", "/health", {"status": "ok"})
    assert LlamaCppBackend(server.url).health().reachable


def test_requests_ask_for_the_servers_own_bytes(server: ScriptedServer) -> None:
    server.json("GET", "/health", {"status": "ok"})
    LlamaCppBackend(server.url).health()
    headers = server.last().headers
    assert headers["Accept-Encoding"] == "identity"
    assert headers["User-Agent"].startswith("provider-agent/")
    assert "Authorization" not in headers


def test_extra_headers_are_sent(server: ScriptedServer) -> None:
    server.json("GET", "/api/v1/key", {"data": {}})
    backend = OpenRouterBackend(
        "sk-or", base_url=server.url + "/api/v1", headers={"X-Title": "my app"}
    )
    backend.health()
    assert server.last().headers["X-Title"] == "my app"
