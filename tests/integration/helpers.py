"""Reading what the SDK relayed and what the engine sent."""

from __future__ import annotations

import json
import threading
import urllib.request
from typing import Any, Callable, Dict, List, Optional, Tuple

from provider_agent.backend import Backend, Job, JobResult, WireFormat

from .tap import Tap, bodies

Event = Tuple[Optional[str], str]


def events(raw: bytes) -> List[Event]:
    """The (event name, data) pairs of an SSE body written with LF line ends,
    as both engines write them. Strict: a malformed block fails the test."""
    assert raw.endswith(b"\n\n"), raw[-200:]
    parsed = []
    for block in raw[:-2].split(b"\n\n"):
        name, data = None, []
        for line in block.decode("utf-8").split("\n"):
            field, _, value = line.partition(": ")
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)
            else:
                raise AssertionError(f"unexpected SSE line {line!r}")
        parsed.append((name, "\n".join(data)))
    return parsed


def payloads(raw: bytes) -> List[Dict[str, Any]]:
    """The JSON objects of every data event but ``[DONE]``."""
    return [json.loads(data) for _, data in events(raw) if data != "[DONE]"]


def openai_text(raw: bytes) -> str:
    return "".join(
        choice["delta"].get("content") or ""
        for chunk in payloads(raw)
        for choice in chunk["choices"]
    )


def anthropic_text(raw: bytes) -> str:
    return "".join(
        event["delta"]["text"]
        for event in payloads(raw)
        if event["type"] == "content_block_delta"
        and event["delta"]["type"] == "text_delta"
    )


def chat(
    model: str,
    content: str = "hello world",
    max_tokens: int = 8,
    wire_format: WireFormat = WireFormat.OPENAI,
    deadline_ms: int = 60_000,
    **extra: Any,
) -> Job:
    """A chat job. ``ignore_eos`` (both engines take it): a random model may
    otherwise end at any token, and the tests count exact lengths."""
    request: Dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": max_tokens,
        "ignore_eos": True,
        **extra,
    }
    return Job.new(model, request, wire_format, deadline_ms)


def relay(backend: Backend, job: Job) -> Tuple[List[bytes], JobResult]:
    """Run ``job`` through ``execute()``: the chunks handed over, and the result."""
    with backend.execute(job) as stream:
        chunks = list(stream)
    assert stream.result is not None
    return chunks, stream.result


def tapped(
    make: Callable[[str], Backend], engine_port: int, job: Job
) -> Tuple[bytes, bytes, bytes, JobResult]:
    """Run one job through a recording tap: (the reply head the engine sent, its
    decoded body, what the SDK relayed, the result)."""
    tap = Tap(engine_port)
    try:
        with make(tap.url) as backend:
            chunks, result = relay(backend, job)
        (reply,) = tap.replies()
        ((head, body),) = bodies(reply)
    finally:
        tap.close()
    return head, body, b"".join(chunks), result


def assert_up(backend: Backend) -> None:
    """A probe that found the engine healthy, with a plausible latency."""
    health = backend.health()
    assert health.reachable, health.last_error
    assert health.last_error is None
    assert isinstance(health.latency_ms, int) and 0 <= health.latency_ms < 5000


def get_json(url: str, key: Optional[str] = None) -> Any:
    request = urllib.request.Request(url)
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    with urllib.request.urlopen(request, timeout=10) as reply:
        return json.load(reply)


class Background:
    """Runs ``backend.run(job, ...)`` in a thread and records what happened."""

    def __init__(self, backend: Backend, job: Job) -> None:
        self.chunks: List[bytes] = []
        self.first_chunk = threading.Event()
        self.error: Optional[Exception] = None
        self.result: Optional[JobResult] = None

        def sink(chunk: bytes) -> None:
            self.chunks.append(chunk)
            self.first_chunk.set()

        def work() -> None:
            try:
                self.result = backend.run(job, sink)
            except Exception as exc:  # noqa: BLE001 - the test inspects it
                self.error = exc

        self.thread = threading.Thread(target=work, daemon=True)
        self.thread.start()

    def join(self, seconds: float) -> None:
        self.thread.join(seconds)
        assert not self.thread.is_alive(), "the job did not end"
