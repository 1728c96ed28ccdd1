"""Scripted servers dressed as engines: the probe, the listing and the chat route
each kind answers, for the fleet's tests."""

from __future__ import annotations

import threading
from typing import Iterable, List, Optional, Sequence

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
    srv.json(
        "GET",
        "/v1/models",
        {
            "object": "list",
            "data": [
                {
                    "id": m,
                    "object": "model",
                    "owned_by": "llamacpp",
                    "meta": {"n_ctx": n_ctx},
                }
                for m in models
            ],
        },
    )
    return srv


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
    srv.json(
        "GET",
        "/v1/models",
        {
            "object": "list",
            "data": [
                {
                    "id": m,
                    "object": "model",
                    "owned_by": "vllm",
                    "max_model_len": max_model_len,
                }
                for m in models
            ],
        },
        headers=headers,
    )
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
