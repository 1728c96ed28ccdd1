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
from typing import Any, Dict, Iterator, List, Optional, Tuple

from sseclient import SSEClient

from ._replies import as_int, describe_error
from .data import WireFormat

#: An unfinished event larger than this is dropped rather than buffered further:
#: usage is advisory, memory is not.
MAX_PENDING = 1 << 20

#: What an event this parser acts on holds, per wire format: every other event
#: is relayed unparsed. To act on one more kind of event, add what it always
#: contains (and other events do not) here.
MARKERS = {
    # Every OpenAI chunk holds "finish_reason":null; only a string value counts.
    WireFormat.OPENAI: (
        b"usage",
        b"error",
        b"[DONE]",
        b'"finish_reason":"',
        b'"finish_reason": "',
    ),
    WireFormat.ANTHROPIC: (b"message_", b"error"),
}
#: What an event anywhere in a stream may hold that matters even with more of
#: the stream after it: an in-band error. What the other markers mark (usage,
#: the finish reason, the terminator) is read from a stream's last events, and
#: its first (Anthropic's ``message_start``): see ``UsageParser.skim``.
ANYWHERE = (b"error",)
#: How much of the end of a skimmed piece is read whole: its last events, for a
#: running usage, with room for keep-alives and comments after it.
SKIM_TAIL = 1024
#: How far back a marker split across two reads is looked for; longer than any.
OVERLAP = 32

#: The two-byte runs that end an event: two line ends in a row, whether lines end
#: in LF, CRLF or CR (every blank line holds one, and each of them is one).
_BLANK_LINES = (b"\n\n", b"\r\r", b"\n\r")


def sse_events(block: bytes) -> Iterator[Tuple[str, str]]:
    """The (name, data) of each event in a run of complete events."""
    if b"\r" in block:
        block = block.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    # sseclient-py decodes strictly; a stray invalid byte must not hide an event.
    clean = block.decode("utf-8", "replace").encode("utf-8")
    for event in SSEClient(iter([clean])).events():
        yield event.event, event.data


def last_event_end(data: bytes, before: bytes = b"") -> int:
    """Where the last complete event in ``data`` ends, or -1; ``before`` is the
    byte fed just before ``data`` (a blank line may straddle the two)."""
    if b"\r" in data:
        at = max(data.rfind(blank) for blank in _BLANK_LINES)
    else:  # LF line ends: one search, not three through the whole of data
        at = data.rfind(b"\n\n")
    if at >= 0:
        end = at + 2
    elif before + data[:1] in _BLANK_LINES:
        end = 1
    else:
        return -1
    # A CR ending the blank line may be the first half of a CRLF.
    if data[end - 1 : end] == b"\r" and data[end : end + 1] == b"\n":
        end += 1
    return end


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
        self._markers = MARKERS[wire_format]
        # The unfinished event at the end of what was fed: its pieces, their
        # size, its last OVERLAP bytes and whether it holds a marker.
        self._pending: List[bytes] = []
        self._pending_size = 0
        self._tail = b""
        self._marked = False

    def feed(self, chunk: bytes) -> None:
        """Take the next bytes of the stream."""
        # Most reads are whole events that hold no marker: they are looked at
        # once, for a marker and for their end, and neither copied nor kept.
        for marker in self._markers:
            if marker in chunk:
                break
        else:
            if not self._pending and chunk.endswith(b"\n\n"):
                return
        if chunk:
            self._feed(chunk)

    def skim(self, data: bytes) -> None:
        """Take bytes from the middle of the stream, that more of it follows.

        Only what may matter there is read: an in-band error, and the events
        that end in its last ``SKIM_TAIL`` bytes (a running usage, as vLLM sends
        with every chunk). The events before them are looked at for
        ``ANYWHERE`` only: one search through them where ``feed`` makes one for
        each marker (five for OpenAI). Usage, the finish reason and the
        terminator are in a stream's first and last events, which are for
        ``feed``.
        """
        pending = self._pending
        if self._marked_in(data, ANYWHERE) or (
            pending and self._marked_in(self._tail + data[:OVERLAP], ANYWHERE)
        ):
            self.feed(data)
            return
        end = last_event_end(data, pending[-1][-1:] if pending else b"")
        start = last_event_end(data[: end - SKIM_TAIL]) if end > SKIM_TAIL else -1
        if start < 0 or self._marked:
            self.feed(data)  # a few large events, or a marked one begun before
            return
        self._drop_pending()  # the unfinished event it held ends before start
        self.feed(data[start:])

    def _feed(self, chunk: bytes) -> None:
        """The other reads: a marker, an event split across reads, CR line ends."""
        pending = self._pending
        marked = self._marked_in(chunk)
        if pending and not marked and not self._marked:
            marked = self._marked_in(self._tail + chunk[:OVERLAP])
        end = last_event_end(chunk, pending[-1][-1:] if pending else b"")
        if end < 0:
            self._keep(chunk, marked)
            return
        if marked or self._marked:
            self._parse(b"".join(pending) + chunk[:end])
        rest = chunk[end:]
        marked = marked and self._marked_in(rest)
        self._drop_pending()
        if rest:
            self._keep(rest, marked)

    def _marked_in(self, data: bytes, markers: Tuple[bytes, ...] = ()) -> bool:
        for marker in markers or self._markers:
            if marker in data:
                return True
        return False

    def _keep(self, data: bytes, marked: bool) -> None:
        """Buffer the start of an unfinished event, within MAX_PENDING."""
        self._pending_size += len(data)
        if self._pending_size > MAX_PENDING:
            self._drop_pending()
            return
        self._pending.append(data)
        self._tail = (self._tail + data[-OVERLAP:])[-OVERLAP:]
        self._marked = self._marked or marked

    def _drop_pending(self) -> None:
        self._pending, self._pending_size = [], 0
        self._tail, self._marked = b"", False

    def close(self) -> None:
        """The stream ended: parse what is left, even without a final blank line."""
        rest = b"".join(self._pending)
        self._drop_pending()
        if rest.strip():
            self._parse(rest + b"\n\n")

    def _parse(self, block: bytes) -> None:
        """Act on the complete events in ``block`` that hold a marker."""
        if b"\r" in block:
            block = block.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        # A block may hold a batch of events: only those with a marker are parsed.
        events: Dict[int, int] = {}  # where each starts: where it ends
        for marker in self._markers:
            at = block.find(marker)
            while at >= 0:
                start = block.rfind(b"\n\n", 0, at)
                start = 0 if start < 0 else start + 2
                end = block.find(b"\n\n", at)
                end = len(block) if end < 0 else end + 2
                events[start] = end
                at = block.find(marker, end)
        for start in sorted(events):
            for name, data in sse_events(block[start : events[start]] + b"\n\n"):
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
        usage = payload.get("usage")
        if isinstance(usage, dict):
            prompt = as_int(usage.get("prompt_tokens"), 0)
            completion = as_int(usage.get("completion_tokens"), 0)
            if prompt is not None:
                self.input_tokens = prompt
            if completion is not None:
                self.output_tokens = completion
        choices = payload.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            self._finished(choices[0].get("finish_reason"))

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

    def _anthropic_usage(self, usage: Any) -> None:
        if isinstance(usage, dict):
            self.input_tokens = _larger(self.input_tokens, _anthropic_input(usage))
            self.output_tokens = _larger(
                self.output_tokens, as_int(usage.get("output_tokens"), 0)
            )

    def _finished(self, reason: Any) -> None:
        if isinstance(reason, str) and reason:
            self.finish_reason = reason
