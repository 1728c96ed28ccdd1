"""vLLM's OpenAI-compatible server (default ``http://127.0.0.1:8000``).

Endpoints: ``GET /health`` (200 with an empty body; 503 once the engine is dead;
connection refused while the model loads), ``GET /v1/models`` (context window in
``max_model_len``; LoRA adapters have none and take their ``parent``'s),
``POST /v1/chat/completions`` and ``POST /v1/messages``. With ``--api-key`` the key
goes in ``Authorization: Bearer`` only, on both routes.
"""

from __future__ import annotations

from typing import Any, List, Optional

from ._replies import as_int
from .base import Backend
from .data import BackendModel


class VllmBackend(Backend):
    kind = "vllm"
    default_url = "http://127.0.0.1:8000"
    health_path = "/health"
    anthropic_key_header = False  # vLLM reads Bearer only (vllm-project/vllm#51572)

    def _probe_error(self, status: int, body: bytes) -> Optional[str]:
        if status == 503:
            return "engine dead (HTTP 503)"
        return super()._probe_error(status, body)

    def _parse_models(self, payload: Any) -> List[BackendModel]:
        cards = self._cards(payload)
        windows = {card.get("id"): as_int(card.get("max_model_len")) for card in cards}
        return self._models(
            cards, lambda c: windows.get(c["id"]) or windows.get(c.get("parent"))
        )
