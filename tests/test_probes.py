"""Asking a server its version, and which kind of server a bare URL is."""

from __future__ import annotations

import pytest

from provider_agent.backend import (
    LlamaCppBackend,
    LmStudioBackend,
    OllamaBackend,
    UnreachableError,
    VllmBackend,
)
from provider_agent.backend.identify import detect_kind
from provider_agent.backend.version import server_version

from . import fakes
from .server import Reply, ScriptedServer


def test_the_version_of_each_kind_that_says_it(server: ScriptedServer) -> None:
    server.json("GET", "/props", {"build_info": "b6123-abc1234", "total_slots": 2})
    server.json("GET", "/version", {"version": "0.32.0"})
    server.json("GET", "/api/version", {"version": "0.33.0"})
    assert server_version(LlamaCppBackend(server.url)) == "b6123-abc1234"
    assert server_version(VllmBackend(server.url)) == "0.32.0"
    assert server_version(OllamaBackend(server.url)) == "0.33.0"
    # LM Studio has no route for it: nothing is asked.
    before = len(server.requests)
    assert server_version(LmStudioBackend(server.url)) is None
    assert len(server.requests) == before


@pytest.mark.parametrize(
    "reply",
    [
        ({"error": "not found"}, 404),
        ({"version": 3}, 200),
        ({"version": "  "}, 200),
        (["0.1"], 200),
        (b"<html>", 200),
    ],
)
def test_a_version_that_is_not_said_is_none(server: ScriptedServer, reply) -> None:
    payload, status = reply
    server.json("GET", "/version", payload, status)
    assert server_version(VllmBackend(server.url)) is None


def test_a_version_question_never_fails(silent_url: str) -> None:
    assert server_version(VllmBackend("http://127.0.0.1:9")) is None
    assert server_version(VllmBackend(silent_url), timeout=0.2) is None


def test_detect_kind_from_what_the_server_says(server: ScriptedServer) -> None:
    server.json("GET", "/health", {"status": "ok"}, headers={"Server": "llama.cpp"})
    assert detect_kind(server.url) == "llamacpp"


def test_detect_vllm_by_its_empty_health_from_uvicorn(server: ScriptedServer) -> None:
    def health(reply: Reply) -> None:
        reply.start(200, {"server": "uvicorn"}, content_type=None, length=0)

    server.route("GET", "/health", health)
    assert detect_kind(server.url + "/v1") == "vllm"


def test_detect_lmstudio_by_its_unexpected_endpoint(server: ScriptedServer) -> None:
    server.json("GET", "/health", {"error": "Unexpected endpoint or method. (GET)"})
    assert detect_kind(server.url) == "lmstudio"


def test_detect_ollama_by_its_root(server: ScriptedServer) -> None:
    def root(reply: Reply) -> None:
        body = b"Ollama is running"
        reply.start(200, content_type="text/plain", length=len(body))
        reply.raw(body)

    server.route("GET", "/", root)
    assert detect_kind(server.url) == "ollama"


def test_detect_by_the_owner_of_the_model_cards(server: ScriptedServer) -> None:
    fakes.vllm(server)
    server.routes.pop(("GET", "/health"))  # 404: the listing has to tell
    assert detect_kind(server.url) == "vllm"


def test_a_server_that_says_nothing_is_not_guessed(server: ScriptedServer) -> None:
    server.json("GET", "/health", {"status": "ok"})
    assert detect_kind(server.url) is None


def test_detecting_where_nothing_answers_says_why() -> None:
    with pytest.raises(UnreachableError):
        detect_kind("http://127.0.0.1:9")
