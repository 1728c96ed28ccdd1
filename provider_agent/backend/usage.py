"""Reading usage, errors and the terminator from a stream, beside the relay.

The relay hands bytes over as they arrive; this parser is fed the same bytes
afterwards and never holds any back. It cuts the input into complete events itself
(events may be split across reads, several may share one, lines may end in CRLF or
CR) and hands each run of complete events to sseclient-py for the field parsing.

OpenAI streams end with ``data: [DONE]``; usage is the ``usage`` object of the final
chunk (``prompt_tokens``, ``completion_tokens``). Anthropic streams end with a
``message_stop`` event; input tokens come from ``message_start`` and output tokens
(sometimes input too) from ``message_delta``: the larger value wins, because some
servers send an estimate first and llama.cpp sends no ``message_start`` when its first
token is half a UTF-8 character. Input tokens include the prompt-cache fields
(``cache_read_input_tokens``, ``cache_creation_input_tokens``), as OpenAI's
``prompt_tokens`` does.
An ``error`` object in a data event, or an ``error`` event, is an in-band error.
The finish reason is the first choice's non-null ``finish_reason`` (OpenAI) or
``message_delta``'s ``delta.stop_reason`` (Anthropic).
"""

from __future__ import annotations

import json
import re
from typing import Any, Iterator, Optional, Tuple

from sseclient import SSEClient

from ._replies import as_int, describe_error
from .data import WireFormat

#: An unfinished event larger than this is dropped rather than buffered further:
#: usage is advisory, memory is not.
MAX_PENDING = 1 << 20


_MARKERS = {
    WireFormat.OPENAI: (b"usage", b"error", b"[DONE]"),
    WireFormat.ANTHROPIC: (b"message_", b"error"),
}
#: Every OpenAI chunk holds ``"finish_reason":null``; only a string value counts.
_FINISH = re.compile(rb'"finish_reason"\s*:\s*"')


def sse_events(block: bytes) -> Iterator[Tuple[str, str]]:
    """The (name, data) of each event in a run of complete events."""
    # sseclient-py decodes strictly; a stray invalid byte must not hide an event.
    clean = block.decode("utf-8", "replace").encode("utf-8")
    for event in SSEClient(iter([clean])).events():
        yield event.event, event.data


def _larger(old: Optional[int], new: Optional[int]) -> Optional[int]:
    if new is None:
        return old
    return new if old is None else max(old, new)


def _anthropic_input(usage: dict) -> Optional[int]:  # type: ignore[type-arg]
    """All the prompt's tokens: Anthropic counts those read from or written to
    the prompt cache apart from ``input_tokens`` (llama.cpp does too), where
    OpenAI's ``prompt_tokens`` includes them."""
    counts = [
        as_int(usage.get(field), 0)
        for field in (
            "input_tokens",
            "cache_read_input_tokens",
            "cache_creation_input_tokens",
        )
    ]
    if counts[0] is None:
        return None
    return sum(count or 0 for count in counts)


class UsageParser:
    """Follows one stream: its usage, its in-band error, whether it terminated."""

    def __init__(self, wire_format: WireFormat) -> None:
        self.wire_format = wire_format
        self.input_tokens: Optional[int] = None
        self.output_tokens: Optional[int] = None
        self.error: Optional[str] = None
        self.finish_reason: Optional[str] = None
        self.terminated = False
        self._pending = b""
        self._held_cr = False

    def feed(self, chunk: bytes) -> None:
        """Take the next bytes of the stream."""
        if self._held_cr:
            chunk = b"\r" + chunk
            self._held_cr = False
        if chunk.endswith(b"\r"):
            # It may be the first half of a CRLF split across reads.
            chunk, self._held_cr = chunk[:-1], True
        chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        start = max(len(self._pending) - 1, 0)
        self._pending += chunk
        end = self._pending.rfind(b"\n\n", start)
        if end >= 0:
            complete, self._pending = self._pending[: end + 2], self._pending[end + 2 :]
            self._parse(complete)
        elif len(self._pending) > MAX_PENDING:
            self._pending = b""

    def close(self) -> None:
        """The stream ended: parse what is left, even without a final blank line."""
        rest = self._pending + (b"\n" if self._held_cr else b"")
        self._pending, self._held_cr = b"", False
        if rest.strip():
            self._parse(rest + b"\n\n")

    def _parse(self, block: bytes) -> None:
        # Most events carry only text. Every event this parser acts on holds one
        # of these markers, so the others skip the parse (and the relay's time).
        if not any(marker in block for marker in _MARKERS[self.wire_format]) and not (
            self.wire_format is WireFormat.OPENAI and _FINISH.search(block)
        ):
            return
        for name, data in sse_events(block):
            self._on_event(name, data)

    def _on_event(self, name: str, data: str) -> None:
        if data.strip() == "[DONE]":
            if self.wire_format is WireFormat.OPENAI:
                self.terminated = True
            return  # vLLM's Anthropic route also appends one: not a terminator there
        try:
            payload = json.loads(data)
        except ValueError:
            return
        if not isinstance(payload, dict):
            return
        if self.wire_format is WireFormat.OPENAI:
            self._on_openai(payload)
        else:
            self._on_anthropic(name, payload)

    def _on_openai(self, payload: dict) -> None:  # type: ignore[type-arg]
        if payload.get("error") or payload.get("object") == "error":
            self.error = describe_error(payload.get("error") or payload)
        choices = payload.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            self._finished(choices[0].get("finish_reason"))
        usage = payload.get("usage")
        if isinstance(usage, dict):
            prompt = as_int(usage.get("prompt_tokens"), 0)
            completion = as_int(usage.get("completion_tokens"), 0)
            if prompt is not None:
                self.input_tokens = prompt
            if completion is not None:
                self.output_tokens = completion

    def _on_anthropic(self, name: str, payload: dict) -> None:  # type: ignore[type-arg]
        kind = payload.get("type", name)
        if name == "error" or kind == "error":
            self.error = describe_error(payload.get("error") or payload)
        elif kind == "message_start":
            message = payload.get("message")
            usage = message.get("usage") if isinstance(message, dict) else None
            self._anthropic_usage(usage)
        elif kind == "message_delta":
            self._anthropic_usage(payload.get("usage"))
            delta = payload.get("delta")
            if isinstance(delta, dict):
                self._finished(delta.get("stop_reason"))
        elif kind == "message_stop":
            self.terminated = True

    def _finished(self, reason: Any) -> None:
        if isinstance(reason, str) and reason:
            self.finish_reason = reason

    def _anthropic_usage(self, usage: Any) -> None:
        if isinstance(usage, dict):
            self.input_tokens = _larger(self.input_tokens, _anthropic_input(usage))
            self.output_tokens = _larger(
                self.output_tokens, as_int(usage.get("output_tokens"), 0)
            )
