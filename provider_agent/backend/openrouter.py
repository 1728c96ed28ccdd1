"""OpenRouter (``https://openrouter.ai/api/v1``), with the operator's own key.

Endpoints: ``GET /key`` as the probe (it proves the key works), ``GET /models``
(context window in ``data[].context_length``; embedding models are not listed by
default), ``POST /chat/completions`` and ``POST /messages``. The key goes in
``Authorization: Bearer``. An unknown model is a 400 "... is not a valid model ID".
"""

from __future__ import annotations

from typing import Any, List

from ._replies import as_int, sub
from .data import BackendModel
from .remote import RemoteBackend


class OpenRouterBackend(RemoteBackend):
    kind = "openrouter"
    default_url = "https://openrouter.ai/api/v1"
    key_env_var = "OPENROUTER_API_KEY"
    health_path = "/key"
    models_path = "/models"
    chat_path = "/chat/completions"
    messages_path = "/messages"
    anthropic_key_header = False  # documented as Bearer only
    model_not_found_pattern = r"is not a valid model id"

    def _parse_models(self, payload: Any) -> List[BackendModel]:
        return self._models(
            self._cards(payload),
            lambda c: (
                as_int(c.get("context_length"))
                or as_int(sub(c, "top_provider").get("context_length"))
            ),
        )
