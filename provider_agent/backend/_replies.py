"""Reading the backends' non-stream replies: JSON bodies and error bodies.

Each backend shapes errors its own way (``{"error": "text"}``, ``{"error": {...}}``,
a flat ``{"object": "error", ...}``, an HTML page from a proxy); these helpers turn
any of them into one line of text, and a reply that is not JSON into ProtocolError.
"""

from __future__ import annotations

import json
import re
from typing import Any, Dict, List, Optional

from .errors import ProtocolError

_TITLE = re.compile(rb"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)


def as_int(value: Any, minimum: int = 1) -> Optional[int]:
    """``value`` when it is a JSON integer of at least ``minimum``, else None
    (a bool, a string or a float is not a count)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        return None
    return value


def describe_error(error: Any) -> str:
    """A one-line description of an error object of any of the backends' shapes."""
    if isinstance(error, dict):
        message = error.get("message") or error.get("error") or error.get("detail")
        if isinstance(message, (dict, list)):
            return describe_error(message)
        kind = error.get("type") or error.get("code")
        text = str(message) if message else json.dumps(error)[:200]
        return f"{kind}: {text}" if kind and str(kind) not in text else text
    return str(error)[:500]


def sub(payload: Any, key: str) -> Dict[str, Any]:
    """``payload[key]`` when both are JSON objects, else an empty dict."""
    value = payload.get(key) if isinstance(payload, dict) else None
    return value if isinstance(value, dict) else {}


def error_message(body: bytes, content_type: str = "") -> str:
    """One line saying what an error body says."""
    text = body.decode("utf-8", "replace").strip()
    try:
        payload = json.loads(text)
    except ValueError:
        payload = None
    if isinstance(payload, dict):
        if "error" in payload or payload.get("object") == "error":
            return describe_error(payload.get("error") or payload)
        for key in ("message", "detail"):
            if payload.get(key):
                return describe_error(payload[key])
    if "html" in content_type.lower() or text[:1] == "<":
        title = _TITLE.search(body)
        name = title.group(1).decode("utf-8", "replace").strip() if title else ""
        return f"an HTML page{': ' + ' '.join(name.split())[:100] if name else ''}"
    line = " ".join(text.split())
    return line[:200] if line else "empty body"


def load_json(backend: str, body: bytes, truncated: bool, what: str) -> Any:
    """Parse a JSON reply; ProtocolError when it is too large or not JSON."""
    if truncated:
        raise ProtocolError(backend, f"{what} is larger than {len(body)} bytes")
    try:
        return json.loads(body)
    except ValueError as exc:
        snippet = body[:200].decode("utf-8", "replace")
        raise ProtocolError(
            backend, f"{what} is not valid JSON ({exc.__class__.__name__})", snippet
        ) from exc


def dict_items(backend: str, payload: Any, key: str, what: str) -> List[Dict[str, Any]]:
    """The objects in ``payload[key]``; ProtocolError when it is not a list."""
    items = payload.get(key) if isinstance(payload, dict) else None
    if not isinstance(items, list):
        raise ProtocolError(backend, f"{what} has no {key!r} list")
    return [item for item in items if isinstance(item, dict)]
