"""One job from the command line: its request, and the line that sums it up.

``prompt_request`` makes a chat request of a prompt (and a system prompt) in
either wire format; ``read_request`` reads a whole request body from JSON text;
``summary_line`` is the one line of usage and timing ``provider-agent exec``
prints after a reply.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional

from ..backend import JobResult, WireFormat

__all__ = ["ANTHROPIC_MAX_TOKENS", "prompt_request", "read_request", "summary_line"]

#: The ``max_tokens`` of an Anthropic request made of a prompt: the format
#: requires one.
ANTHROPIC_MAX_TOKENS = 1024


def prompt_request(
    prompt: str, system: Optional[str], wire_format: WireFormat
) -> Dict[str, Any]:
    """A chat request asking ``prompt``, with ``system`` as the system prompt."""
    messages: List[Dict[str, str]] = [{"role": "user", "content": prompt}]
    if wire_format is WireFormat.ANTHROPIC:
        request: Dict[str, Any] = {"messages": messages}
        if system:
            request["system"] = system
        request["max_tokens"] = ANTHROPIC_MAX_TOKENS
        return request
    if system:
        messages.insert(0, {"role": "system", "content": system})
    return {"messages": messages}


def read_request(text: str, source: str) -> Dict[str, Any]:
    """The request body in ``text`` (a JSON object). Raises ``ValueError``
    naming ``source`` when it is not one."""
    try:
        body = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"{source}: not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ValueError(f"{source}: a request body is a JSON object")
    return body


def summary_line(result: JobResult) -> str:
    """Who served the job, its tokens, timings and finish reason, one line."""

    def known(value: Optional[int]) -> str:
        return "?" if value is None else str(value)

    parts = [
        result.backend_id or "?",
        f"tokens in {known(result.input_tokens)} out {known(result.output_tokens)}",
        f"first byte {known(result.first_byte_ms)} ms",
        f"total {result.duration_ms} ms",
        f"finish {result.finish_reason or '?'}",
    ]
    return "  ".join(parts)
