"""llama.cpp's ``llama-server`` (default ``http://127.0.0.1:8080``).

Endpoints: ``GET /health`` (200 ``{"status":"ok"}``; 503 while the model loads),
``GET /v1/models`` (context window: ``data[].meta.n_ctx``, the per-slot window, not
``n_ctx_train``; older builds lack it and ``GET /props`` gives
``default_generation_settings.n_ctx``), ``POST /v1/chat/completions`` and
``POST /v1/messages``. With ``--api-key`` the key goes in ``Authorization`` or
``X-Api-Key``. In router mode an unknown model is a 400 "model 'x' not found".
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from ._replies import as_int, sub
from .base import Backend
from .data import BackendModel
from .errors import BackendError


class LlamaCppBackend(Backend):
    kind = "llamacpp"
    default_url = "http://127.0.0.1:8080"
    health_path = "/health"
    model_not_found_pattern = r"\bmodel '[^']*' not found"  # router mode

    def _probe_error(self, status: int, body: bytes) -> Optional[str]:
        if status == 503:
            return "loading (HTTP 503)"
        return super()._probe_error(status, body)

    def _parse_models(self, payload: Any) -> List[BackendModel]:
        cards = self._cards(payload)

        def window(card: Dict[str, Any]) -> Optional[int]:
            meta = sub(card, "meta")
            n_ctx = as_int(meta.get("n_ctx"))
            if n_ctx is None and meta and len(cards) == 1:
                return self._props_n_ctx()  # an older build, single-model mode
            return n_ctx

        return self._models(cards, window)

    def _props_n_ctx(self) -> Optional[int]:
        """The per-slot window from ``/props``, for builds whose listing lacks it."""
        try:
            props = self._get_json("/props")
        except BackendError:
            return None
        return as_int(sub(props, "default_generation_settings").get("n_ctx"))
