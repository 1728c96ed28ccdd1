"""Which kind of server a probe reply shows it came from: only a positive sign
counts, so a proxy or an unknown server is never taken for another kind."""

from __future__ import annotations

from typing import Dict, Optional

import pytest

from provider_agent.backend._identity import mismatch, server_kind

from .sse import js

LLAMA_CARD = {"id": "tiny", "object": "model", "owned_by": "llamacpp"}
VLLM_CARD = {"id": "tiny", "object": "model", "owned_by": "vllm"}


@pytest.mark.parametrize(
    "status, headers, body, kind",
    [
        (200, {"Server": "llama.cpp"}, b'{"status":"ok"}', "llamacpp"),
        (503, {"Server": "llama.cpp"}, b'{"error":{"code":503}}', "llamacpp"),
        (200, {"server": "uvicorn"}, b"", "vllm"),
        (200, {"server": "uvicorn"}, b"\n", "vllm"),
        # uvicorn serves many apps: only with vLLM's empty health body
        (200, {"server": "uvicorn"}, b'{"status":"ok"}', None),
        (404, {"server": "uvicorn"}, b"", None),
        (200, {}, js({"error": "Unexpected endpoint or method. (GET /x)"}), "lmstudio"),
        (200, {"Server": "nginx"}, js({"data": [LLAMA_CARD, LLAMA_CARD]}), "llamacpp"),
        (200, {}, js({"object": "list", "data": [VLLM_CARD]}), "vllm"),
        (200, {}, js({"data": [LLAMA_CARD, VLLM_CARD]}), None),
        (200, {}, js({"data": []}), None),
        (200, {}, js({"data": {"label": "a key"}}), None),
        (200, {}, js({"data": ["not a card"]}), None),
        (200, {}, b"[1, 2]", None),
        (200, {}, b"{not json", None),
        (200, {"Server": "nginx"}, b'{"status":"ok"}', None),
        (200, {}, js({"version": "0.33.0"}), None),
    ],
)
def test_server_kind(
    status: int, headers: Dict[str, str], body: bytes, kind: Optional[str]
) -> None:
    assert server_kind(status, headers, body) == kind


def test_mismatch_names_both_kinds() -> None:
    headers = {"Server": "llama.cpp"}
    assert mismatch("vllm", 200, headers, b"{}") == (
        "this is a llama.cpp server, not vllm"
    )
    assert mismatch("llamacpp", 200, headers, b"{}") is None
    assert mismatch("vllm", 200, {}, b"") is None
