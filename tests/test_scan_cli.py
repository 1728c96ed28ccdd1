"""``provider_agent.scan`` and the ``provider-agent scan`` command."""

from __future__ import annotations

import json
import threading
import time
from typing import Iterator

import pytest
from click.testing import CliRunner

from provider_agent.backend import LlamaCppBackend, OllamaBackend, VllmBackend
from provider_agent.cli import main
from provider_agent.scan import local_backends, scan

from .server import Reply, ScriptedServer

HOST = "127.0.0.3"  # a loopback address of its own, so default ports are free


def llamacpp_fake(srv: ScriptedServer) -> None:
    srv.json("GET", "/health", {"status": "ok"})
    srv.json(
        "GET",
        "/v1/models",
        {"data": [{"id": "tiny", "meta": {"n_ctx": 256, "n_ctx_train": 512}}]},
    )


def ollama_fake(srv: ScriptedServer) -> None:
    srv.json("GET", "/api/version", {"version": "0.33.0"})
    srv.json(
        "GET",
        "/api/tags",
        {
            "models": [
                {
                    "name": "qwen3:8b",
                    "model": "qwen3:8b",
                    "capabilities": ["completion"],
                    "details": {"context_length": 40960},
                }
            ]
        },
    )
    srv.json("GET", "/api/ps", {"models": []})


@pytest.fixture
def default_ports() -> Iterator[None]:
    """llama.cpp and Ollama fakes on their default ports of HOST."""
    servers = [ScriptedServer(HOST, 8080), ScriptedServer(HOST, 11434)]
    llamacpp_fake(servers[0])
    ollama_fake(servers[1])
    yield
    for srv in servers:
        srv.stop()


def test_local_backends_cover_the_four_local_kinds() -> None:
    backends = local_backends(HOST)
    assert [b.id for b in backends] == [
        f"vllm:http://{HOST}:8000",
        f"llamacpp:http://{HOST}:8080",
        f"lmstudio:http://{HOST}:1234",
        f"ollama:http://{HOST}:11434",
    ]


def test_scan_command_finds_what_listens_on_the_default_ports(
    default_ports: None,
) -> None:
    result = CliRunner().invoke(
        main,
        ["scan", "--host", HOST],
        env={"PROVIDER_AGENT_TERMINAL": "1", "NO_COLOR": "1"},
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["KIND", "URL", "STATUS", "LATENCY", "VERSION", "MODELS"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert set(rows) == {"vllm", "llamacpp", "lmstudio", "ollama"}
    assert " up " in rows["llamacpp"] and "tiny (ctx 256)" in rows["llamacpp"]
    assert " up " in rows["ollama"] and "qwen3:8b (ctx 40960)" in rows["ollama"]
    assert " 0.33.0 " in rows["ollama"]  # what its /api/version says
    assert " down " in rows["vllm"] and "Connection refused" in rows["vllm"]
    assert " down " in rows["lmstudio"]


def test_scan_command_json(default_ports: None) -> None:
    result = CliRunner().invoke(main, ["scan", "--host", HOST, "--json"])
    assert result.exit_code == 0, result.output
    found = {item["kind"]: item for item in json.loads(result.output)}
    assert found["llamacpp"]["health"]["reachable"] is True
    assert found["llamacpp"]["models"] == [
        {"model_id": "tiny", "context_window": 256, "native": True}
    ]
    assert found["vllm"]["health"] == {
        "reachable": False,
        "latency_ms": None,
        "last_error": "cannot connect: Connection refused",
    }


def test_scan_probes_concurrently() -> None:
    def slow_health(reply: Reply) -> None:
        time.sleep(1.0)
        reply.start(200, content_type="application/json", length=2)
        reply.raw(b"{}")

    # Four servers: backends at one URL are one backend, probed once.
    servers = [ScriptedServer() for _ in range(4)]
    for srv in servers:
        srv.route("GET", "/health", slow_health)
    backends = [LlamaCppBackend(srv.url) for srv in servers]
    started = time.monotonic()
    results = scan(backends, with_models=False)
    elapsed = time.monotonic() - started
    for backend in backends:
        backend.close()
    for srv in servers:
        srv.stop()
    assert [r.health.reachable for r in results] == [True] * 4
    assert all(len(srv.requests) == 1 for srv in servers)
    assert elapsed < 3.0  # four one-second probes at once, not one after another


def test_scan_keeps_a_failed_listing_as_data(server: ScriptedServer) -> None:
    server.json("GET", "/health", b"")
    server.json("GET", "/v1/models", b"<html>oops</html>")
    [result] = scan([VllmBackend(server.url)])
    assert result.health.reachable
    assert result.models == []
    assert result.error is not None and "not valid JSON" in result.error


def test_scan_command_with_named_backends(server: ScriptedServer) -> None:
    llamacpp_fake(server)
    result = CliRunner().invoke(
        main,
        [
            "scan",
            "--backend",
            f"llamacpp={server.url}",
            "--backend",
            "ollama=http://127.0.0.1:9",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    kinds = [
        (item["kind"], item["health"]["reachable"])
        for item in json.loads(result.output)
    ]
    assert kinds == [("llamacpp", True), ("ollama", False)]


def test_scan_command_refuses_an_unknown_kind() -> None:
    result = CliRunner().invoke(main, ["scan", "--backend", "tgi=http://x"])
    assert result.exit_code == 2
    assert "valid kinds" in result.output and "llamacpp" in result.output


def test_a_remote_backend_without_its_key_is_a_row_with_its_error(
    server: ScriptedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VENICE_API_KEY", raising=False)
    llamacpp_fake(server)
    result = CliRunner().invoke(
        main, ["scan", "--backend", "venice", "--backend", f"llamacpp={server.url}"]
    )
    assert result.exit_code == 0, result.output  # the other one answered
    venice, llamacpp = result.output.splitlines()
    assert venice.split("\t")[:3] == ["venice", "https://api.venice.ai/api/v1", "down"]
    assert "VENICE_API_KEY" in venice
    assert llamacpp.split("\t")[2] == "up"
    assert "Traceback" not in result.output


def test_the_cli_never_prints_the_key(
    server: ScriptedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "sk-or-v1-SECRET-abcdef"
    monkeypatch.setenv("OPENROUTER_API_KEY", secret)
    server.json("GET", "/api/v1/key", {"error": {"message": f"bad key {secret}"}}, 401)
    for flag in ([], ["--json"]):
        result = CliRunner().invoke(
            main, ["scan", "--backend", f"openrouter={server.url}/api/v1", *flag]
        )
        assert result.exit_code == 1, result.output  # nothing answered
        assert "API key rejected" in result.output
        assert secret not in result.output
    assert server.last("/api/v1/key").headers["Authorization"] == f"Bearer {secret}"


def test_scan_of_nothing_is_empty() -> None:
    assert scan([]) == []


def test_health_probes_do_not_share_state_between_threads(
    server: ScriptedServer,
) -> None:
    server.json("GET", "/api/version", {"version": "0.33.0"})
    backend = OllamaBackend(server.url)
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(backend.health()))
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.reachable for r in results] == [True] * 8
