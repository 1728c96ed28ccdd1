"""Reading a reply's text out of its stream, in either wire format.

A read ends wherever the network cut it, often inside an event, so text cannot be
taken from chunks: ``TextReader`` is a ``UsageParser`` (the same event cutting, the
same usage, error and terminator) that also parses every event for its text.

OpenAI streams carry text in the first choice's ``delta.content`` and reasoning in
``delta.reasoning_content`` (llama.cpp, older vLLM) or ``delta.reasoning`` (vLLM,
Ollama, LM Studio, OpenRouter). Anthropic streams carry text in
``content_block_delta`` events whose delta is a ``text_delta``, and reasoning in
``thinking_delta`` deltas.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List

from ._replies import sub
from .data import WireFormat
from .usage import UsageParser, sse_events

__all__ = ["TextDelta", "TextReader"]

_REASONING_KEYS = ("reasoning_content", "reasoning")


class TextDelta(str):
    """One piece of a reply's text, as a ``str``; ``reasoning`` is True for a
    piece of the model's reasoning rather than of its answer."""

    reasoning: bool

    def __new__(cls, text: str, reasoning: bool = False) -> TextDelta:
        piece = super().__new__(cls, text)
        piece.reasoning = reasoning
        return piece

    def __repr__(self) -> str:
        return f"TextDelta({str(self)!r}, reasoning={self.reasoning})"


class TextReader(UsageParser):
    """Follows one stream like ``UsageParser`` and collects its text pieces in
    ``pieces`` as each event completes (the caller takes them from there)."""

    def __init__(self, wire_format: WireFormat) -> None:
        super().__init__(wire_format)
        self.pieces: List[TextDelta] = []
        # Every event may hold text: the empty marker, found in every read,
        # sends each complete event to _parse, none skipped.
        self._markers = (b"",)

    def take(self) -> List[TextDelta]:
        """The pieces read since the last call."""
        pieces, self.pieces = self.pieces, []
        return pieces

    def skim(self, data: bytes) -> None:
        self.feed(data)  # every event's text is wanted, wherever it is

    def _parse(self, block: bytes) -> None:
        for name, data in sse_events(block):
            self._on_event(name, data)
            if not data.lstrip().startswith("{"):
                continue  # "[DONE]", or data that is not an object
            try:
                payload = json.loads(data)
            except ValueError:
                continue
            if isinstance(payload, dict):
                self._read_text(name, payload)

    def _read_text(self, name: str, payload: Dict[str, Any]) -> None:
        if self.wire_format is WireFormat.OPENAI:
            choices = payload.get("choices")
            if isinstance(choices, list) and choices:
                delta = sub(choices[0], "delta")
                # One key or the other, never both: some servers send the same
                # reasoning under each name.
                reasoning = next(
                    (delta[key] for key in _REASONING_KEYS if delta.get(key)), None
                )
                self._add(reasoning, True)
                self._add(delta.get("content"), False)
        elif payload.get("type", name) == "content_block_delta":
            delta = sub(payload, "delta")
            if delta.get("type") == "text_delta":
                self._add(delta.get("text"), False)
            elif delta.get("type") == "thinking_delta":
                self._add(delta.get("thinking"), True)

    def _add(self, text: Any, reasoning: bool) -> None:
        if isinstance(text, str) and text:
            self.pieces.append(TextDelta(text, reasoning))
