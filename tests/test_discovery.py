"""Discovery and the capabilities message, from a config and from a snapshot."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import List

import pytest

from provider_agent import __version__
from provider_agent.backend import (
    BackendHealth,
    BackendModel,
    Job,
    LlamaCppBackend,
    OpenRouterBackend,
    VllmBackend,
)
from provider_agent.fleet import (
    BackendStatus,
    Config,
    Fleet,
    Member,
    ModelPrice,
    PricingConfig,
    discover,
)
from provider_agent.fleet.discovery import build_discovery

from . import fakes
from .server import ScriptedServer

EXAMPLE = Path(__file__).parent / "data" / "agent.example.toml"


def closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def test_a_vllm_at_a_closed_port_yields_an_empty_but_valid_message(monkeypatch):
    # The original agent's own test: its example config, nothing listening.
    monkeypatch.delenv("OPENROUTER_API_KEY", raising=False)
    text = EXAMPLE.read_text().replace(
        "http://localhost:8000", f"http://127.0.0.1:{closed_port()}"
    )
    message = discover(Config.from_toml(text, "agent.toml")).to_capabilities()
    assert message == {
        "type": "capabilities",
        "models": [],
        "limits": {"max_concurrent_total": 8, "max_tokens_per_minute": 200_000},
        "metadata": {"agent_version": __version__},
    }


def up(backend_id: str, *models: BackendModel) -> BackendStatus:
    return BackendStatus(backend_id, BackendHealth(True, 3, None), 0.0, models)


def down(backend_id: str) -> BackendStatus:
    return BackendStatus(backend_id, BackendHealth(False, None, "refused"), 0.0)


def model(model_id: str, window=None, native=True) -> BackendModel:
    return BackendModel(model_id, window, native)


@pytest.fixture
def members() -> List[Member]:
    made = [
        Member(LlamaCppBackend("http://127.0.0.1:8080")),
        Member(VllmBackend("http://127.0.0.1:8000"), max_concurrent=2),
        Member(
            OpenRouterBackend("sk-test"),
            models=frozenset({"shared", "remote-only", "free"}),
        ),
    ]
    yield made
    for member in made:
        member.backend.close()


PRICING = PricingConfig(
    500_000,
    750_000,
    {"free": ModelPrice(0, 0), "special": ModelPrice(1, 2)},
)


def test_each_model_once_under_the_highest_priority_kind(members):
    llama, vllm, openrouter = (m.id for m in members)
    statuses = {
        llama: up(llama, model("shared", 256), model("special")),
        vllm: up(vllm, model("shared", 4096)),
        openrouter: up(
            openrouter,
            model("shared", 131072, False),
            model("remote-only", None, False),
            model("free", 8, False),
            model("not-allowed", 8, False),
        ),
    }
    found = build_discovery(members, statuses, pricing=PRICING, max_concurrent=8)
    assert found.to_capabilities()["models"] == [
        {
            "model_id": "remote-only",
            "input_per_1m": 500_000,
            "output_per_1m": 750_000,
            "max_concurrent": 8,
            "backend": "openrouter",
        },
        {
            "model_id": "shared",
            "input_per_1m": 500_000,
            "output_per_1m": 750_000,
            "max_concurrent": 8,  # 8 (llama.cpp, no own limit) + 2 + 8, capped
            "backend": "vllm",
            "context_window": 4096,
        },
        {
            "model_id": "special",
            "input_per_1m": 1,
            "output_per_1m": 2,
            "max_concurrent": 8,
            "backend": "llamacpp",
        },
    ]


def test_a_model_on_one_limited_backend_advertises_its_limit(members):
    vllm = members[1].id
    found = build_discovery(
        members, {vllm: up(vllm, model("m", 10))}, pricing=PRICING, max_concurrent=8
    )
    assert found.models[0].max_concurrent == 2


def test_a_window_unknown_to_the_lister_comes_from_the_smallest_other(members):
    llama, vllm, openrouter = (m.id for m in members)
    statuses = {
        vllm: up(vllm, model("shared")),
        llama: up(llama, model("shared", 512)),
        openrouter: up(openrouter, model("shared", 128, False)),
    }
    found = build_discovery(members, statuses, pricing=None, max_concurrent=8)
    assert (found.models[0].backend, found.models[0].context_window) == ("vllm", 128)
    assert found.models[0].input_per_1m is None  # no pricing configured


def test_down_and_unlisted_backends_are_left_out(members):
    llama, vllm, openrouter = (m.id for m in members)
    statuses = {
        llama: down(llama),
        vllm: BackendStatus(vllm, BackendHealth(True, 2, None), 0.0, None, "HTTP 500"),
    }
    found = build_discovery(members, statuses, pricing=PRICING, max_concurrent=8)
    assert found.models == ()
    assert found.healthy == [vllm]
    assert found.to_capabilities()["models"] == []


def test_a_fleet_from_a_config_routes_and_advertises(monkeypatch, tmp_path):
    servers = [fakes.chat(fakes.llamacpp(ScriptedServer(), ["tiny"])) for _ in "ab"]
    path = tmp_path / "agent.toml"
    path.write_text(
        f"""
[[backends]]
kind = "llamacpp"
url = "{servers[0].url}"
max_concurrent = 1

[[backends]]
kind = "llamacpp"
url = "{servers[1].url}"

[[backends]]
kind = "venice"
api_key_env = "PROVIDER_AGENT_TEST_UNSET_KEY"

[pricing]
default_input_per_1m = 10
default_output_per_1m = 20

[limits]
max_concurrent = 3
"""
    )
    monkeypatch.delenv("PROVIDER_AGENT_TEST_UNSET_KEY", raising=False)
    with Fleet.from_config(str(path)) as fleet:
        assert len(fleet.backends) == 2  # venice's key is unset: left out
        assert fleet.max_concurrent == 3
        message = fleet.capabilities()
        assert message["models"] == [
            {
                "model_id": "tiny",
                "input_per_1m": 10,
                "output_per_1m": 20,
                "max_concurrent": 3,
                "backend": "llamacpp",
                "context_window": 256,
            }
        ]
        job = Job.new("tiny", {"messages": [{"role": "user", "content": "Hi"}]})
        assert fleet.run(job, lambda chunk: None).output_tokens == 2
    for srv in servers:
        srv.stop()
