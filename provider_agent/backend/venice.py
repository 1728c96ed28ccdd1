"""Venice.ai (``https://api.venice.ai/api/v1``), with the operator's own key.

Endpoints: ``GET /api_keys/rate_limits`` as the probe (the model list needs no key,
so only an authenticated route proves the key works), ``GET /models?type=text``
(context window in ``model_spec.availableContextTokens``, mirrored in
``context_length``; embedding models are ``type: "embedding"``) and
``POST /chat/completions``. Venice has no Anthropic route: Anthropic jobs are
refused. Error bodies are often ``{"error": "text"}``.
"""

from __future__ import annotations

from typing import Any, List

from ._replies import as_int, sub
from .data import BackendModel, WireFormat
from .remote import RemoteBackend

#: Model types that take chat jobs; ``embedding``, ``image``, ``tts``... do not.
_CHAT_TYPES = (None, "text", "code")


class VeniceBackend(RemoteBackend):
    kind = "venice"
    default_url = "https://api.venice.ai/api/v1"
    key_env_var = "VENICE_API_KEY"
    health_path = "/api_keys/rate_limits"
    models_path = "/models"
    chat_path = "/chat/completions"
    messages_path = None
    wire_formats = frozenset({WireFormat.OPENAI})
    model_not_found_pattern = r"model not found|\binvalid model\b"

    def list_models(self) -> List[BackendModel]:
        return self._parse_models(self._get_json(self.models_path, {"type": "text"}))

    def _parse_models(self, payload: Any) -> List[BackendModel]:
        return self._models(
            self._cards(payload),
            lambda c: (
                as_int(sub(c, "model_spec").get("availableContextTokens"))
                or as_int(c.get("context_length"))
            ),
            keep=lambda c: c.get("type") in _CHAT_TYPES,
        )
