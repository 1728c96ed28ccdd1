"""Building server-sent events the way the engines write them."""

from __future__ import annotations

import json
from typing import Any, List, Optional

DONE = b"data: [DONE]\n\n"


def js(payload: Any) -> bytes:
    """Compact JSON, UTF-8 kept raw (as the servers write it)."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def data(payload: Any, event: Optional[str] = None) -> bytes:
    """One ``data:`` event, with an ``event:`` line when named."""
    head = b"event: " + event.encode() + b"\n" if event else b""
    return head + b"data: " + js(payload) + b"\n\n"


def event(name: str, payload: Any) -> bytes:
    """An Anthropic-style named event."""
    return data(payload, event=name)


def text_block(text: str, index: int = 0) -> List[bytes]:
    """An Anthropic text content block: its start, one text delta, its stop."""
    return [
        event(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": index,
                "content_block": {"type": "text", "text": ""},
            },
        ),
        event(
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": index,
                "delta": {"type": "text_delta", "text": text},
            },
        ),
        event("content_block_stop", {"type": "content_block_stop", "index": index}),
    ]
