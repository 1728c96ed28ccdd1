"""Which kind of server answered a probe, where the server says so itself.

So that a backend of one kind pointed at a server of another is not taken for up.
Only a positive sign counts; a server that says nothing, or a proxy's own
``Server`` header, is not recognised and the probe goes on as usual:

- llama-server sends ``Server: llama.cpp`` on every reply
  (``tools/server/server-http.cpp``), and its model cards are ``owned_by``
  ``"llamacpp"``;
- vLLM runs on uvicorn (``server: uvicorn``) and its ``/health`` is an empty 200;
  its model cards are ``owned_by`` ``"vllm"``;
- LM Studio answers a path it lacks with 200 ``{"error": "Unexpected endpoint or
  method. (GET /path)"}``.
"""

from __future__ import annotations

import json
from typing import Mapping, Optional

#: How each kind a probe can recognise is called in a message.
NAMES = {"llamacpp": "llama.cpp", "vllm": "vLLM", "lmstudio": "LM Studio"}

_OWNERS = {"llamacpp": "llamacpp", "vllm": "vllm"}


def server_kind(status: int, headers: Mapping[str, str], body: bytes) -> Optional[str]:
    """The backend kind a probe reply shows it came from, or None."""
    names = {name.lower(): value for name, value in headers.items()}
    server = names.get("server", "").strip().lower()
    if server.startswith("llama.cpp"):
        return "llamacpp"
    if server.startswith("uvicorn") and 200 <= status < 300 and not body.strip():
        return "vllm"
    if b"Unexpected endpoint or method" in body[:300]:
        return "lmstudio"
    return _listing_owner(body)


def _listing_owner(body: bytes) -> Optional[str]:
    """The kind whose name every card of a model listing has as its owner."""
    if not body.lstrip().startswith(b"{"):
        return None
    try:
        payload = json.loads(body)
    except ValueError:
        return None
    cards = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(cards, list) or not cards:
        return None
    owners = {card.get("owned_by") for card in cards if isinstance(card, dict)}
    kinds = [kind for kind, owner in _OWNERS.items() if owners == {owner}]
    return kinds[0] if kinds else None


def mismatch(
    expected: str, status: int, headers: Mapping[str, str], body: bytes
) -> Optional[str]:
    """A probe problem when the reply came from another kind of server, else None."""
    seen = server_kind(status, headers, body)
    if seen is None or seen == expected:
        return None
    return f"this is a {NAMES[seen]} server, not {expected}"
