"""LM Studio's local server (default ``http://127.0.0.1:1234``).

LM Studio has no health route and answers HTTP 200 with ``{"error": "Unexpected
endpoint or method. ..."}`` on unknown paths, so the probe is ``GET /v1/models`` and
a healthy reply must hold a ``data`` list. Models are listed from the native
``GET /api/v1/models`` (0.4+: the loaded window in
``loaded_instances[].config.context_length``, else ``max_context_length``), falling
back to ``GET /api/v0/models`` (0.3.6+: ``max_context_length``) and then
``/v1/models`` (no window). Embedding models are left out. Chat goes to
``POST /v1/chat/completions``, Anthropic jobs to ``POST /v1/messages`` (0.4.1+).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from ._replies import as_int
from .base import Backend
from .data import BackendModel
from .errors import BadStatusError, ProtocolError

_EMBEDDING_TYPES = ("embedding", "embeddings")


class LmStudioBackend(Backend):
    kind = "lmstudio"
    default_url = "http://127.0.0.1:1234"
    health_path = "/v1/models"
    probe_key = "data"  # unknown paths answer 200 {"error": "Unexpected endpoint..."}

    def list_models(self) -> List[BackendModel]:
        native = self._try_json("/api/v1/models")
        if isinstance(native, dict) and isinstance(native.get("models"), list):
            return [m for m in map(self._from_v1, native["models"]) if m]
        legacy = self._try_json("/api/v0/models")
        if isinstance(legacy, dict) and isinstance(legacy.get("data"), list):
            return [m for m in map(self._from_v0, legacy["data"]) if m]
        return self._parse_models(self._get_json(self.models_path))

    def _try_json(self, path: str) -> Any:
        """An older LM Studio lacks the newer listings: that is not an error."""
        try:
            return self._get_json(path)
        except (BadStatusError, ProtocolError):
            return None

    def _parse_models(self, payload: Any) -> List[BackendModel]:
        return self._models(self._cards(payload), lambda card: None)  # no windows

    def _from_v1(self, item: Any) -> Optional[BackendModel]:
        if not isinstance(item, dict) or item.get("type") in _EMBEDDING_TYPES:
            return None
        key = item.get("key") or item.get("id")
        if not isinstance(key, str):
            return None
        window = None
        for instance in item.get("loaded_instances") or []:
            config = instance.get("config") if isinstance(instance, dict) else None
            if isinstance(config, dict):
                window = as_int(config.get("context_length"))
                if window:
                    break
        return BackendModel(
            key, window or as_int(item.get("max_context_length")), self.native
        )

    def _from_v0(self, item: Dict[str, Any]) -> Optional[BackendModel]:
        if not isinstance(item, dict) or item.get("type") in _EMBEDDING_TYPES:
            return None
        model_id = item.get("id")
        if not isinstance(model_id, str):
            return None
        window = as_int(item.get("loaded_context_length")) or as_int(
            item.get("max_context_length")
        )
        return BackendModel(model_id, window, self.native)
