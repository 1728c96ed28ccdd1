"""Ollama (default ``http://127.0.0.1:11434``).

Endpoints: ``GET /api/version`` as the probe (``{"version": ...}``), ``GET /api/tags``
for the installed models (``capabilities`` and ``details.context_length`` since
0.30), ``GET /api/ps`` for the loaded ones (``context_length``: the window really in
use), ``POST /api/show`` for older servers (``model_info["<arch>.context_length"]``),
``POST /v1/chat/completions`` and ``POST /v1/messages`` (0.14+). Embedding-only models
(``embedding`` without ``completion``) are left out. A local Ollama takes no key.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from ._replies import as_int, dict_items, sub
from .base import Backend
from .data import BackendModel
from .errors import BackendError


class OllamaBackend(Backend):
    kind = "ollama"
    default_url = "http://127.0.0.1:11434"
    health_path = "/api/version"
    probe_key = "version"
    models_path = "/api/tags"

    def __init__(self, url: Optional[str] = None, **options: Any) -> None:
        super().__init__(url, None, **options)

    def _parse_models(self, payload: Any) -> List[BackendModel]:
        tags = dict_items(self.id, payload, "models", "the model listing")
        loaded = self._loaded_windows()
        models = []
        for tag in tags:
            name = tag.get("model") or tag.get("name")
            if not isinstance(name, str):
                continue
            capabilities = tag.get("capabilities")
            window = as_int(sub(tag, "details").get("context_length"))
            if capabilities is None or window is None:
                shown = self._show(name)
                if capabilities is None:
                    capabilities = shown.get("capabilities")
                window = window or _trained_window(shown)
            if (
                isinstance(capabilities, list)
                and "embedding" in capabilities
                and ("completion" not in capabilities)
            ):
                continue
            models.append(BackendModel(name, loaded.get(name) or window, self.native))
        return models

    def _loaded_windows(self) -> Dict[str, int]:
        """The runtime window of each loaded model (``/api/ps``)."""
        try:
            running = dict_items(
                self.id, self._get_json("/api/ps"), "models", "/api/ps"
            )
        except BackendError:
            return {}
        windows = {}
        for item in running:
            name, window = (
                item.get("model") or item.get("name"),
                as_int(item.get("context_length")),
            )
            if isinstance(name, str) and window:
                windows[name] = window
        return windows

    def _show(self, name: str) -> Dict[str, Any]:
        try:
            shown = self._request_json(
                "POST", "/api/show", body={"model": name, "name": name}
            )
        except BackendError:
            return {}
        return shown if isinstance(shown, dict) else {}


def _trained_window(shown: Dict[str, Any]) -> Optional[int]:
    info = shown.get("model_info")
    if not isinstance(info, dict):
        return None
    arch = info.get("general.architecture")
    return as_int(info.get(f"{arch}.context_length"))
