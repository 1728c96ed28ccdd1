"""Scripted servers dressed as engines: the probe, the listing and the chat route
each kind answers, for the fleet's tests."""

from __future__ import annotations

import threading
import time
from typing import Any, Dict, Iterable, List, Optional, Sequence

from .server import Reply, ScriptedServer
from .sse import DONE, data


def openai_chunks(
    text: str = "Hi there", tokens: Sequence[int] = (5, 2)
) -> List[bytes]:
    """An OpenAI chat stream: a role chunk, one chunk per word, usage, [DONE]."""
    chunks = [data({"choices": [{"index": 0, "delta": {"role": "assistant"}}]})]
    for word in text.split(" "):
        chunks.append(data({"choices": [{"index": 0, "delta": {"content": word}}]}))
    chunks.append(
        data(
            {
                "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": tokens[0], "completion_tokens": tokens[1]},
            }
        )
    )
    chunks.append(DONE)
    return chunks


def llamacpp(
    srv: ScriptedServer, models: Iterable[str] = ("tiny",), n_ctx: int = 256
) -> ScriptedServer:
    """``srv`` answers as a healthy llama-server serving ``models``."""
    srv.json("GET", "/health", {"status": "ok"})
    _listing(srv, models, "llamacpp", {"meta": {"n_ctx": n_ctx}})
    return srv


def _listing(
    srv: ScriptedServer,
    models: Iterable[str],
    owner: str,
    extra: Dict[str, Any],
    headers: Optional[Dict[str, str]] = None,
) -> None:
    """An OpenAI-style ``/v1/models`` listing, each card with ``extra``."""
    cards = [{"id": m, "object": "model", "owned_by": owner, **extra} for m in models]
    srv.json("GET", "/v1/models", {"object": "list", "data": cards}, headers=headers)


def vllm(
    srv: ScriptedServer,
    models: Iterable[str] = ("tiny",),
    max_model_len: int = 4096,
    keep_alive: bool = True,
) -> ScriptedServer:
    """``srv`` answers as a healthy vLLM serving ``models``; without
    ``keep_alive``, it closes each connection after its reply, so that once the
    server stops, nothing of it answers."""
    headers = None if keep_alive else {"Connection": "close"}

    def health(reply: Reply) -> None:
        reply.start(200, headers, content_type=None, length=0)

    srv.route("GET", "/health", health)
    _listing(srv, models, "vllm", {"max_model_len": max_model_len}, headers)
    return srv


def chat(
    srv: ScriptedServer,
    chunks: Optional[Sequence[object]] = None,
    path: str = "/v1/chat/completions",
) -> ScriptedServer:
    """``srv`` streams ``chunks`` (bytes, pauses, events) to every chat request."""
    srv.stream("POST", path, list(chunks) if chunks is not None else openai_chunks())
    return srv


def held(srv: ScriptedServer, path: str = "/v1/chat/completions") -> threading.Event:
    """``srv`` sends the first chunk, then holds the stream until the event is set
    (at most 10 s) before finishing it."""
    release = threading.Event()
    chunks = openai_chunks()
    srv.stream("POST", path, [chunks[0], release, *chunks[1:]])
    return release


def slowed(srv: ScriptedServer, path: str, delay: float) -> threading.Event:
    """``srv``'s GET ``path`` answers ``delay`` s late; the event is set when a
    request for it arrives."""
    route = srv.routes[("GET", path)]
    arrived = threading.Event()

    def late(reply: Reply) -> None:
        arrived.set()
        time.sleep(delay)
        route(reply)

    srv.route("GET", path, late)
    return arrived
