"""One contract, every registered backend kind.

Each kind in ``BACKENDS`` has a ``Fake`` below: how its real server answers (health
route and body, model listings with the context window where that server keeps it,
chat and messages routes, realistic SSE streams, its own error replies), taken from
``shared/reference/backends.md``. The tests replay a fake on a ``ScriptedServer``
and check that the adapter keeps the contract of the issue. A kind registered without
a fake fails ``test_every_registered_kind_has_a_fake`` and each parametrised test.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

import pytest

from provider_agent.backend import (
    BACKENDS,
    Backend,
    BackendModel,
    BadStatusError,
    Job,
    ModelNotFoundError,
    UnreachableError,
    UnsupportedWireFormatError,
    WireFormat,
    create_backend,
)

from .server import Reply, ScriptedServer
from .sse import DONE, data, event, js, text_block

OPENAI = WireFormat.OPENAI
ANTHROPIC = WireFormat.ANTHROPIC
REMOTE_KEY = "sk-contract-remote-0123456789"
UNKNOWN_MODEL = "no-such-model"


# -- wire helpers --------------------------------------------------------------


@dataclass(frozen=True)
class Canned:
    """One complete non-stream reply."""

    status: int
    body: bytes
    content_type: Optional[str] = "application/json"
    delay: float = 0.0
    headers: Optional[Dict[str, str]] = None


def reply_json(
    payload: Any, status: int = 200, headers: Optional[Dict[str, str]] = None
) -> Canned:
    return Canned(status, js(payload), headers=headers)


#: What llama-server sends with every reply (tools/server/server-http.cpp).
LLAMA_SERVER = {"Server": "llama.cpp"}
#: What vLLM's uvicorn sends (seen on a real vLLM).
UVICORN = {"server": "uvicorn"}


def _lms_unexpected(method: str, path: str) -> Canned:
    """LM Studio's answer to a path it does not know: 200 and an error string."""
    return reply_json({"error": f"Unexpected endpoint or method. ({method} {path})"})


def serve(server: ScriptedServer, method: str, path: str, answer: Any) -> None:
    """Install ``answer`` (a Canned, a route function or a JSON payload)."""
    if isinstance(answer, Canned):
        canned = answer

        def send(reply: Reply) -> None:
            if canned.delay:
                time.sleep(canned.delay)
            reply.start(
                canned.status,
                canned.headers,
                content_type=canned.content_type,
                length=len(canned.body),
            )
            reply.raw(canned.body)

        server.route(method, path, send)
    elif callable(answer):
        server.route(method, path, answer)
    else:
        server.json(method, path, answer)


# -- what a fake describes -----------------------------------------------------


@dataclass(frozen=True)
class Unhealthy:
    """A probe reply that must read as not reachable; ``error_has`` is a lower-case
    phrase the health's ``last_error`` must contain ("" = any text)."""

    reply: Canned
    error_has: str


@dataclass(frozen=True)
class Listing:
    """Routes a model listing may read, and the models it must yield."""

    routes: Dict[Tuple[str, str], Any]
    expected: List[Tuple[str, Optional[int]]]


@dataclass(frozen=True)
class ErrorCase:
    wire: WireFormat
    reply: Canned


@dataclass(frozen=True)
class Fake:
    kind: str
    remote: bool
    default_url: str
    #: What comes after the ScriptedServer's URL in the base URL the adapter gets.
    prefix: str
    takes_key: bool
    key_env: Optional[str]
    health_path: str
    healthy: Canned
    unhealthy: Dict[str, Unhealthy]
    listings: Dict[str, Listing]
    chat_path: str
    messages_path: Optional[str]
    openai_stream: List[Any]
    openai_usage: Tuple[Optional[int], Optional[int]]
    anthropic_stream: List[Any]
    anthropic_usage: Tuple[Optional[int], Optional[int]]
    #: Backend-specific request fields that must pass through untouched.
    extras: Dict[str, Any]
    #: A model id the caller names in the body (must be kept as is).
    caller_model: str
    model_not_found: Dict[str, ErrorCase]
    server_error: Canned
    bad_request: Canned
    notes: List[str] = field(default_factory=list)


# -- vLLM ----------------------------------------------------------------------

_VLLM_PERMISSION = [
    {
        "id": "modelperm-4f1e",
        "object": "model_permission",
        "created": 1760000000,
        "allow_create_engine": False,
        "allow_sampling": True,
        "allow_logprobs": True,
        "allow_search_indices": False,
        "allow_view": True,
        "allow_fine_tuning": False,
        "organization": "*",
        "group": None,
        "is_blocking": False,
    }
]


def _vllm_card(model_id: str, **extra: Any) -> Dict[str, Any]:
    card = {
        "id": model_id,
        "object": "model",
        "created": 1760000000,
        "owned_by": "vllm",
        "root": "/models/Qwen3-8B",
        "parent": None,
        "max_model_len": 32768,
        "permission": _VLLM_PERMISSION,
    }
    card.update(extra)
    return card


_VLLM_LORA = _vllm_card("sql-lora", root="/adapters/sql-lora", parent="Qwen/Qwen3-8B")
del _VLLM_LORA["max_model_len"]

_VLLM_CHUNK = {
    "id": "chatcmpl-9f1c2b",
    "object": "chat.completion.chunk",
    "created": 1760000000,
    "model": "Qwen/Qwen3-8B",
}

VLLM = Fake(
    kind="vllm",
    remote=False,
    default_url="http://127.0.0.1:8000",
    prefix="",
    takes_key=True,
    key_env=None,
    health_path="/health",
    healthy=Canned(200, b"", content_type=None, headers=UVICORN),
    unhealthy={
        "engine-dead-503": Unhealthy(
            Canned(503, b"", content_type=None, headers=UVICORN), "503"
        ),
        "llama-server-on-the-port": Unhealthy(
            reply_json({"status": "ok"}, headers=LLAMA_SERVER),
            "this is a llama.cpp server, not vllm",
        ),
        "lm-studio-on-the-port": Unhealthy(
            _lms_unexpected("GET", "/health"), "this is a lm studio server, not vllm"
        ),
    },
    listings={
        "lora-takes-parent-window": Listing(
            routes={
                ("GET", "/v1/models"): {
                    "object": "list",
                    "data": [
                        _vllm_card("Qwen/Qwen3-8B"),
                        _vllm_card("qwen3"),  # a --served-model-name alias
                        _VLLM_LORA,
                    ],
                }
            },
            expected=[
                ("Qwen/Qwen3-8B", 32768),
                ("qwen3", 32768),
                ("sql-lora", 32768),
            ],
        )
    },
    chat_path="/v1/chat/completions",
    messages_path="/v1/messages",
    openai_stream=[
        data(
            {
                **_VLLM_CHUNK,
                "choices": [
                    {
                        "index": 0,
                        "delta": {"role": "assistant", "content": ""},
                        "logprobs": None,
                        "finish_reason": None,
                    }
                ],
                "prompt_token_ids": None,
            }
        ),
        data(
            {
                **_VLLM_CHUNK,
                "choices": [
                    {
                        "index": 0,
                        "delta": {"reasoning": "User wants a greeting."},
                        "logprobs": None,
                        "finish_reason": None,
                        "token_ids": None,
                    }
                ],
            }
        ),
        data(
            {
                **_VLLM_CHUNK,
                "choices": [
                    {
                        "index": 0,
                        "delta": {"content": "Héllo ✓"},
                        "logprobs": None,
                        "finish_reason": None,
                        "token_ids": None,
                    }
                ],
            }
        ),
        data(
            {
                **_VLLM_CHUNK,
                "choices": [
                    {
                        "index": 0,
                        "delta": {"content": ""},
                        "logprobs": None,
                        "finish_reason": "stop",
                        "stop_reason": None,
                        "token_ids": None,
                    }
                ],
            }
        ),
        data(
            {
                **_VLLM_CHUNK,
                "choices": [],
                "usage": {
                    "prompt_tokens": 12,
                    "total_tokens": 40,
                    "completion_tokens": 28,
                },
            }
        ),
        DONE,
    ],
    openai_usage=(12, 28),
    anthropic_stream=[
        event(
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": "chatcmpl-9f1c2b",
                    "content": [],
                    "model": "Qwen/Qwen3-8B",
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {"input_tokens": 12, "output_tokens": 0},
                },
            },
        ),
        *text_block("Héllo ✓"),
        event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn"},
                "usage": {"input_tokens": 12, "output_tokens": 28},
            },
        ),
        event("message_stop", {"type": "message_stop"}),
        DONE,  # vLLM's Anthropic route appends a stray OpenAI terminator
    ],
    anthropic_usage=(12, 28),
    extras={
        "chat_template_kwargs": {"enable_thinking": False},
        "structured_outputs": {"choice": ["yes", "no"]},
        "top_k": 20,
        "min_p": 0.05,
        "priority": -1,
        "guided_json": {"type": "object"},
    },
    caller_model="Qwen/Qwen3-8B",
    model_not_found={
        "openai-404": ErrorCase(
            OPENAI,
            reply_json(
                {
                    "error": {
                        "message": "The model `no-such-model` does not exist.",
                        "type": "NotFoundError",
                        "param": "model",
                        "code": 404,
                    }
                },
                404,
            ),
        ),
        "openai-404-legacy-flat": ErrorCase(
            OPENAI,
            reply_json(
                {
                    "object": "error",
                    "message": "The model `no-such-model` does not exist.",
                    "type": "NotFoundError",
                    "param": None,
                    "code": 404,
                },
                404,
            ),
        ),
        "anthropic-404": ErrorCase(
            ANTHROPIC,
            reply_json(
                {
                    "type": "error",
                    "error": {
                        "type": "NotFoundError",
                        "message": "The model `no-such-model` does not exist. "
                        "Valid aliases: Qwen/Qwen3-8B.",
                    },
                },
                404,
            ),
        ),
    },
    server_error=reply_json(
        {
            "error": {
                "message": "EngineCore encountered an issue.",
                "type": "InternalServerError",
                "param": None,
                "code": 500,
            }
        },
        500,
    ),
    bad_request=reply_json(
        {
            "error": {
                "message": "This model's maximum context length is 32768 tokens. "
                "However, you requested 40000 tokens.",
                "type": "BadRequestError",
                "param": None,
                "code": 400,
            }
        },
        400,
    ),
)


# -- llama.cpp -----------------------------------------------------------------

_LLAMA_META = {
    "vocab_type": 2,
    "n_vocab": 151936,
    "n_ctx": 4096,
    "n_ctx_train": 40960,
    "n_embd": 4096,
    "n_params": 8190735360,
    "size": 5027783680,
    "ftype": "Q4_K_M",
}
_LLAMA_OLD_META = {k: v for k, v in _LLAMA_META.items() if k != "n_ctx"}


def _llama_listing(meta: Dict[str, Any]) -> Dict[str, Any]:
    return {
        "models": [
            {
                "name": "qwen3-8b",
                "model": "qwen3-8b",
                "modified_at": "",
                "size": "",
                "digest": "",
                "type": "model",
                "description": "",
                "tags": [""],
                "capabilities": ["completion"],
                "parameters": "",
                "details": {
                    "parent_model": "",
                    "format": "gguf",
                    "family": "",
                    "families": [""],
                    "parameter_size": "",
                    "quantization_level": "",
                },
            }
        ],
        "object": "list",
        "data": [
            {
                "id": "qwen3-8b",
                "aliases": ["qwen3-8b"],
                "tags": [],
                "object": "model",
                "created": 1760000000,
                "owned_by": "llamacpp",
                "meta": meta,
            }
        ],
    }


def _llama_props(n_ctx: int) -> Dict[str, Any]:
    return {
        "default_generation_settings": {"n_ctx": n_ctx, "params": {"top_k": 40}},
        "total_slots": 4,
        "model_alias": "qwen3-8b",
        "model_path": "/models/qwen3-8b-q4_k_m.gguf",
        "modalities": {"vision": False, "audio": False, "video": False},
        "build_info": "b9465-23e6dab86",
        "is_sleeping": False,
    }


_LLAMA_CHUNK = {
    "created": 1780390177,
    "id": "chatcmpl-uI7JqW",
    "model": "qwen3-8b",
    "system_fingerprint": "b9465-23e6dab86",
    "object": "chat.completion.chunk",
}

LLAMACPP = Fake(
    kind="llamacpp",
    remote=False,
    default_url="http://127.0.0.1:8080",
    prefix="",
    takes_key=True,
    key_env=None,
    health_path="/health",
    healthy=reply_json({"status": "ok"}, headers=LLAMA_SERVER),
    unhealthy={
        "loading-503": Unhealthy(
            reply_json(
                {
                    "error": {
                        "message": "Loading model",
                        "type": "unavailable_error",
                        "code": 503,
                    }
                },
                503,
                LLAMA_SERVER,
            ),
            "loading",
        ),
        "loading-503-old-build": Unhealthy(
            reply_json({"status": "loading model"}, 503, LLAMA_SERVER), "loading"
        ),
        "vllm-on-the-port": Unhealthy(
            Canned(200, b"", content_type=None, headers=UVICORN),
            "this is a vllm server, not llamacpp",
        ),
        "lm-studio-on-the-port": Unhealthy(
            _lms_unexpected("GET", "/health"), "this is a lm studio server"
        ),
    },
    listings={
        "slot-n-ctx-not-n-ctx-train": Listing(
            routes={
                ("GET", "/v1/models"): _llama_listing(_LLAMA_META),
                ("GET", "/props"): _llama_props(4096),
            },
            expected=[("qwen3-8b", 4096)],
        ),
        "old-build-props-n-ctx": Listing(
            routes={
                ("GET", "/v1/models"): _llama_listing(_LLAMA_OLD_META),
                ("GET", "/props"): _llama_props(2048),
            },
            expected=[("qwen3-8b", 2048)],
        ),
    },
    chat_path="/v1/chat/completions",
    messages_path="/v1/messages",
    openai_stream=[
        b":\n\n",  # keep-alive ping
        data(
            {
                "choices": [
                    {
                        "finish_reason": None,
                        "index": 0,
                        "delta": {"role": "assistant", "content": None},
                    }
                ],
                **_LLAMA_CHUNK,
            }
        ),
        data(
            {
                "choices": [
                    {"finish_reason": None, "index": 0, "delta": {"content": "Hi ✓"}}
                ],
                **_LLAMA_CHUNK,
            }
        ),
        b":\n\n",
        # finish, usage (+ timings) and [DONE] in one write, as llama-server does
        data(
            {
                "choices": [{"finish_reason": "stop", "index": 0, "delta": {}}],
                **_LLAMA_CHUNK,
            }
        )
        + data(
            {
                "choices": [],
                **_LLAMA_CHUNK,
                "usage": {
                    "completion_tokens": 5,
                    "prompt_tokens": 17,
                    "total_tokens": 22,
                },
                "timings": {
                    "cache_n": 0,
                    "prompt_n": 17,
                    "prompt_ms": 35.1,
                    "prompt_per_token_ms": 2.06,
                    "prompt_per_second": 484.3,
                    "predicted_n": 5,
                    "predicted_ms": 75.2,
                    "predicted_per_token_ms": 15.04,
                    "predicted_per_second": 66.5,
                },
            }
        )
        + DONE,
    ],
    openai_usage=(17, 5),
    # The real llama-server sends NO message_start on /v1/messages.
    anthropic_stream=[
        b":\n\n",
        *text_block("Hi ✓"),
        event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": 5},
            },
        ),
        event("message_stop", {"type": "message_stop"}),
    ],
    anthropic_usage=(None, 5),
    extras={
        "cache_prompt": True,
        "samplers": ["top_k", "min_p", "temperature"],
        "json_schema": {"type": "object", "properties": {"a": {"type": "integer"}}},
        "n_probs": 0,
        "id_slot": -1,
        "chat_template_kwargs": {"enable_thinking": False},
    },
    caller_model="qwen3-8b",
    model_not_found={
        "router-400-openai": ErrorCase(
            OPENAI,
            reply_json(
                {
                    "error": {
                        "code": 400,
                        "message": "model 'no-such-model' not found",
                        "type": "invalid_request_error",
                    }
                },
                400,
            ),
        ),
        "router-400-anthropic": ErrorCase(
            ANTHROPIC,
            reply_json(
                {
                    "error": {
                        "code": 400,
                        "message": "model 'no-such-model' not found",
                        "type": "invalid_request_error",
                    }
                },
                400,
            ),
        ),
    },
    server_error=reply_json(
        {
            "error": {
                "code": 500,
                "message": "failed to decode the batch",
                "type": "server_error",
            }
        },
        500,
    ),
    bad_request=reply_json(
        {
            "error": {
                "code": 400,
                "message": "the request exceeds the available context size, "
                "try increasing it",
                "type": "exceed_context_size_error",
                "n_prompt_tokens": 5000,
                "n_ctx": 4096,
            }
        },
        400,
    ),
)


# -- LM Studio -----------------------------------------------------------------

_LMS_OPENAI_LIST = {
    "object": "list",
    "data": [
        {"id": "google/gemma-4-26b-a4b", "object": "model", "owned_by": "google"},
        {"id": "qwen/qwen3-8b", "object": "model", "owned_by": "qwen"},
        {
            "id": "text-embedding-nomic-embed-text-v1.5",
            "object": "model",
            "owned_by": "nomic-ai",
        },
    ],
}

_LMS_V1 = {
    "models": [
        {
            "type": "llm",
            "publisher": "google",
            "key": "google/gemma-4-26b-a4b",
            "display_name": "Gemma 4 26B A4B",
            "architecture": "gemma4",
            "quantization": {"name": "Q4_K_M", "bits_per_weight": 4},
            "size_bytes": 17990911801,
            "params_string": "26B-A4B",
            "loaded_instances": [
                {
                    "id": "google/gemma-4-26b-a4b",
                    "config": {
                        "context_length": 4096,
                        "eval_batch_size": 512,
                        "parallel": 4,
                        "flash_attention": True,
                    },
                }
            ],
            "max_context_length": 262144,
            "format": "gguf",
            "capabilities": {
                "vision": True,
                "trained_for_tool_use": True,
                "reasoning": {"allowed_options": ["off", "on"], "default": "on"},
            },
        },
        {
            "type": "llm",
            "publisher": "qwen",
            "key": "qwen/qwen3-8b",
            "display_name": "Qwen3 8B",
            "architecture": "qwen3",
            "quantization": {"name": "Q4_K_M", "bits_per_weight": 4},
            "size_bytes": 5027783680,
            "params_string": "8B",
            "loaded_instances": [],
            "max_context_length": 40960,
            "format": "gguf",
            "capabilities": {"vision": False, "trained_for_tool_use": True},
        },
        {
            "type": "embedding",
            "publisher": "nomic-ai",
            "key": "text-embedding-nomic-embed-text-v1.5",
            "display_name": "Nomic Embed Text v1.5",
            "architecture": "nomic-bert",
            "quantization": {"name": "Q4_K_M", "bits_per_weight": 4},
            "size_bytes": 84106624,
            "loaded_instances": [],
            "max_context_length": 2048,
            "format": "gguf",
        },
    ]
}

_LMS_V0 = {
    "object": "list",
    "data": [
        {
            "id": "meta-llama-3.1-8b-instruct",
            "object": "model",
            "type": "llm",
            "publisher": "lmstudio-community",
            "arch": "llama",
            "compatibility_type": "gguf",
            "quantization": "Q4_K_M",
            "state": "not-loaded",
            "max_context_length": 131072,
        },
        {
            "id": "text-embedding-nomic-embed-text-v1.5",
            "object": "model",
            "type": "embeddings",
            "publisher": "nomic-ai",
            "arch": "nomic-bert",
            "compatibility_type": "gguf",
            "quantization": "Q4_K_M",
            "state": "not-loaded",
            "max_context_length": 2048,
        },
    ],
}


_LMS_CHUNK = {
    "id": "chatcmpl-um3b2l9t12bzrtha63q8",
    "object": "chat.completion.chunk",
    "created": 1747835957,
    "model": "google/gemma-4-26b-a4b",
    "system_fingerprint": "google/gemma-4-26b-a4b",
}

LMSTUDIO = Fake(
    kind="lmstudio",
    remote=False,
    default_url="http://127.0.0.1:1234",
    prefix="",
    takes_key=True,
    key_env=None,
    health_path="/v1/models",
    healthy=reply_json(_LMS_OPENAI_LIST),
    unhealthy={
        "200-unexpected-endpoint": Unhealthy(
            _lms_unexpected("GET", "/v1/models"), "unexpected endpoint"
        ),
        "llama-server-on-the-port": Unhealthy(
            reply_json(_llama_listing(_LLAMA_META), headers=LLAMA_SERVER),
            "this is a llama.cpp server, not lmstudio",
        ),
        "llama-server-behind-a-proxy": Unhealthy(
            reply_json(_llama_listing(_LLAMA_META), headers={"Server": "nginx"}),
            "this is a llama.cpp server, not lmstudio",
        ),
        "vllm-on-the-port": Unhealthy(
            reply_json(
                {"object": "list", "data": [_vllm_card("tiny")]}, headers=UVICORN
            ),
            "this is a vllm server, not lmstudio",
        ),
        "200-html-page": Unhealthy(
            Canned(
                200,
                b"<!doctype html><html><head><title>Router admin</title></head>"
                b"<body>Login</body></html>",
                content_type="text/html; charset=utf-8",
            ),
            "",
        ),
    },
    listings={
        "api-v1-loaded-window": Listing(
            routes={
                ("GET", "/api/v1/models"): _LMS_V1,
                ("GET", "/api/v0/models"): _LMS_V0,
                ("GET", "/v1/models"): _LMS_OPENAI_LIST,
            },
            # the loaded instance's window, not max_context_length; a model with
            # no loaded instance keeps the maximum the server reports
            expected=[("google/gemma-4-26b-a4b", 4096), ("qwen/qwen3-8b", 40960)],
        ),
        "api-v0-fallback": Listing(
            routes={
                ("GET", "/api/v1/models"): _lms_unexpected("GET", "/api/v1/models"),
                ("GET", "/api/v0/models"): _LMS_V0,
                ("GET", "/v1/models"): _LMS_OPENAI_LIST,
            },
            expected=[("meta-llama-3.1-8b-instruct", 131072)],
        ),
    },
    chat_path="/v1/chat/completions",
    messages_path="/v1/messages",
    openai_stream=[
        data(
            {
                **_LMS_CHUNK,
                "choices": [
                    {
                        "index": 0,
                        "delta": {"role": "assistant", "content": "\n"},
                        "logprobs": None,
                        "finish_reason": None,
                    }
                ],
            }
        ),
        data(
            {
                **_LMS_CHUNK,
                "choices": [
                    {
                        "index": 0,
                        "delta": {"content": "Grüß dich ✓"},
                        "logprobs": None,
                        "finish_reason": None,
                    }
                ],
            }
        ),
        data(
            {
                **_LMS_CHUNK,
                "choices": [
                    {
                        "index": 0,
                        "delta": {},
                        "logprobs": None,
                        "finish_reason": "stop",
                    }
                ],
            }
        ),
        data(
            {
                **_LMS_CHUNK,
                "choices": [],
                "usage": {
                    "prompt_tokens": 23,
                    "completion_tokens": 9,
                    "total_tokens": 32,
                },
            }
        ),
        DONE,
    ],
    openai_usage=(23, 9),
    anthropic_stream=[
        event(
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": "msg_lms_01",
                    "type": "message",
                    "role": "assistant",
                    "model": "google/gemma-4-26b-a4b",
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {"input_tokens": 23, "output_tokens": 0},
                },
            },
        ),
        *text_block("Grüß dich ✓"),
        event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": 9},
            },
        ),
        event("message_stop", {"type": "message_stop"}),
    ],
    anthropic_usage=(23, 9),
    extras={
        "ttl": 300,
        "top_k": 40,
        "repeat_penalty": 1.1,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": {"type": "object"}},
        },
    },
    caller_model="google/gemma-4-26b-a4b",
    model_not_found={
        "openai-404": ErrorCase(
            OPENAI,
            reply_json(
                {
                    "error": {
                        "message": 'Model "no-such-model" not found. Please specify '
                        "a valid model.\n\nYour models:\n\tgoogle/gemma-4-26b-a4b",
                        "type": "invalid_request_error",
                        "param": "model",
                        "code": "model_not_found",
                    }
                },
                404,
            ),
        )
    },
    server_error=reply_json(
        {
            "error": {
                "message": "The model has crashed without additional information.",
                "type": "server_error",
                "param": None,
                "code": "internal_error",
            }
        },
        500,
    ),
    bad_request=reply_json(
        {
            "error": {
                "message": "The number of tokens to keep from the initial prompt is "
                "greater than the context length.",
                "type": "invalid_request_error",
                "param": None,
                "code": "context_length_exceeded",
            }
        },
        400,
    ),
)


# -- Ollama --------------------------------------------------------------------


def _ollama_tag(
    name: str,
    family: str,
    capabilities: Optional[List[str]],
    context_length: Optional[int],
    **details: Any,
) -> Dict[str, Any]:
    tag_details: Dict[str, Any] = {
        "parent_model": "",
        "format": "gguf",
        "family": family,
        "families": [family],
        "parameter_size": "8.2B",
        "quantization_level": "Q4_K_M",
    }
    if context_length is not None:
        tag_details["context_length"] = context_length
    tag_details.update(details)
    tag: Dict[str, Any] = {
        "name": name,
        "model": name,
        "modified_at": "2026-05-01T10:00:00Z",
        "size": 5225388164,
        "digest": "500a1f067a9f",
        "details": tag_details,
    }
    if capabilities is not None:
        tag["capabilities"] = capabilities
    return tag


_OLLAMA_TAGS = {
    "models": [
        _ollama_tag("qwen3:8b", "qwen3", ["completion", "tools", "thinking"], 40960),
        _ollama_tag("llama3.2:3b", "llama", ["completion", "tools"], 131072),
        _ollama_tag(
            "nomic-embed-text:latest",
            "nomic-bert",
            ["embedding"],
            2048,
            embedding_length=768,
        ),
    ]
}

_OLLAMA_PS = {
    "models": [
        {
            "name": "qwen3:8b",
            "model": "qwen3:8b",
            "size": 6654289920,
            "digest": "500a1f067a9f",
            "details": {"format": "gguf", "family": "qwen3"},
            "expires_at": "2026-05-01T10:05:00Z",
            "size_vram": 6654289920,
            "context_length": 8192,
        }
    ]
}

# An Ollama older than 0.30: /api/tags has neither capabilities nor context_length.
_OLLAMA_OLD_TAGS = {
    "models": [
        _ollama_tag("llama3.2:3b", "llama", None, None),
        _ollama_tag("nomic-embed-text:latest", "nomic-bert", None, None),
    ]
}
_OLLAMA_SHOW = {
    "llama3.2:3b": {
        "capabilities": ["completion", "tools"],
        "model_info": {"general.architecture": "llama", "llama.context_length": 131072},
        "parameters": 'stop "<|eot_id|>"',
    },
    "nomic-embed-text:latest": {
        "capabilities": ["embedding"],
        "model_info": {
            "general.architecture": "nomic-bert",
            "nomic-bert.context_length": 2048,
        },
    },
}


def _ollama_show(reply: Reply) -> None:
    asked = reply.request.json()
    name = asked.get("model") or asked.get("name")
    if name in _OLLAMA_SHOW:
        status, body = 200, js(_OLLAMA_SHOW[name])
    else:
        status, body = 404, js({"error": f"model '{name}' not found"})
    reply.start(status, content_type="application/json", length=len(body))
    reply.raw(body)


_OLLAMA_CHUNK = {
    "id": "chatcmpl-123",
    "object": "chat.completion.chunk",
    "created": 1760000000,
    "model": "qwen3:8b",
    "system_fingerprint": "fp_ollama",
}

OLLAMA = Fake(
    kind="ollama",
    remote=False,
    default_url="http://127.0.0.1:11434",
    prefix="",
    takes_key=False,
    key_env=None,
    health_path="/api/version",
    healthy=reply_json({"version": "0.33.0"}),
    unhealthy={
        "lm-studio-on-the-port": Unhealthy(_lms_unexpected("GET", "/api/version"), ""),
        "llama-server-404": Unhealthy(
            reply_json(
                {
                    "error": {
                        "message": "File Not Found",
                        "type": "not_found_error",
                        "code": 404,
                    }
                },
                404,
                LLAMA_SERVER,
            ),
            "this is a llama.cpp server, not ollama",
        ),
        "404-behind-a-proxy": Unhealthy(
            reply_json({"error": {"message": "File Not Found"}}, 404),
            "http 404 for get /api/version",
        ),
        "html-page": Unhealthy(
            Canned(
                200,
                b"<html><head><title>It works</title></head></html>",
                content_type="text/html",
            ),
            "",
        ),
    },
    listings={
        "tags-and-ps": Listing(
            routes={
                ("GET", "/api/tags"): _OLLAMA_TAGS,
                ("GET", "/api/ps"): _OLLAMA_PS,
                ("POST", "/api/show"): _ollama_show,
            },
            # qwen3 is loaded: its runtime window (/api/ps) wins over the trained one
            expected=[("qwen3:8b", 8192), ("llama3.2:3b", 131072)],
        ),
        "old-server-api-show": Listing(
            routes={
                ("GET", "/api/tags"): _OLLAMA_OLD_TAGS,
                ("GET", "/api/ps"): {"models": []},
                ("POST", "/api/show"): _ollama_show,
            },
            expected=[("llama3.2:3b", 131072)],
        ),
    },
    chat_path="/v1/chat/completions",
    messages_path="/v1/messages",
    openai_stream=[
        data(
            {
                **_OLLAMA_CHUNK,
                "choices": [
                    {
                        "index": 0,
                        "delta": {"role": "assistant", "content": "Hi ✓"},
                        "finish_reason": None,
                    }
                ],
            }
        ),
        data(
            {
                **_OLLAMA_CHUNK,
                "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            }
        ),
        data(
            {
                **_OLLAMA_CHUNK,
                "choices": [],
                "usage": {
                    "prompt_tokens": 31,
                    "completion_tokens": 7,
                    "total_tokens": 38,
                },
            }
        ),
        DONE,
    ],
    openai_usage=(31, 7),
    anthropic_stream=[
        event(
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": "msg_0a1b2c",
                    "type": "message",
                    "role": "assistant",
                    "model": "qwen3:8b",
                    "content": [],
                    # an estimate; message_delta carries the real count
                    "usage": {"input_tokens": 29, "output_tokens": 0},
                },
            },
        ),
        *text_block("Hi ✓"),
        event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn"},
                "usage": {"input_tokens": 31, "output_tokens": 7},
            },
        ),
        event("message_stop", {"type": "message_stop"}),
    ],
    anthropic_usage=(31, 7),
    extras={
        "options": {"num_ctx": 8192, "temperature": 0, "stop": ["\n\n"]},
        "keep_alive": "5m",
        "reasoning_effort": "low",
    },
    caller_model="qwen3:8b",
    model_not_found={
        "openai-404": ErrorCase(
            OPENAI,
            reply_json(
                {
                    "error": {
                        "message": "model 'no-such-model' not found",
                        "type": "not_found_error",
                        "param": None,
                        "code": None,
                    }
                },
                404,
            ),
        ),
        "anthropic-404": ErrorCase(
            ANTHROPIC,
            reply_json(
                {
                    "type": "error",
                    "error": {
                        "type": "not_found_error",
                        "message": "model 'no-such-model' not found",
                    },
                    "request_id": "req_0123",
                },
                404,
            ),
        ),
    },
    server_error=reply_json(
        {
            "error": {
                "message": "llama runner process has terminated: exit status 2",
                "type": "api_error",
                "param": None,
                "code": None,
            }
        },
        500,
    ),
    # the model exists but cannot chat: a bad request, not a missing model
    bad_request=reply_json(
        {
            "error": {
                "message": '"nomic-embed-text" does not support chat',
                "type": "invalid_request_error",
                "param": None,
                "code": None,
            }
        },
        400,
    ),
)


# -- OpenRouter ----------------------------------------------------------------


def _or_card(model_id: str, window: Optional[int], max_out: Optional[int]) -> Any:
    return {
        "id": model_id,
        "canonical_slug": model_id,
        "name": model_id.split("/")[-1],
        "created": 1692901234,
        "context_length": window,
        "architecture": {
            "modality": "text->text",
            "input_modalities": ["text"],
            "output_modalities": ["text"],
            "tokenizer": "Other",
            "instruct_type": None,
        },
        "pricing": {"prompt": "0.000003", "completion": "0.000015", "request": "0"},
        "top_provider": {
            "context_length": window,
            "max_completion_tokens": max_out,
            "is_moderated": False,
        },
        "supported_parameters": ["temperature", "top_p", "max_tokens", "tools"],
        "default_parameters": None,
        "expiration_date": None,
    }


_OR_CHUNK = {
    "id": "gen-1760000000-abc123",
    "provider": "Anthropic",
    "model": "anthropic/claude-sonnet-4",
    "object": "chat.completion.chunk",
    "created": 1760000000,
}
_OR_USAGE_CHUNK = data(
    {
        **_OR_CHUNK,
        "choices": [
            {
                "index": 0,
                "delta": {"role": "assistant", "content": ""},
                "finish_reason": "stop",
                "native_finish_reason": "end_turn",
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": 42,
            "completion_tokens": 11,
            "total_tokens": 53,
            "cost": 0.000291,
            "is_byok": False,
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0},
        },
    }
)

OPENROUTER = Fake(
    kind="openrouter",
    remote=True,
    default_url="https://openrouter.ai/api/v1",
    prefix="/api/v1",
    takes_key=True,
    key_env="OPENROUTER_API_KEY",
    health_path="/api/v1/key",
    healthy=reply_json(
        {
            "data": {
                "label": "sk-or-v1-abc...123",
                "limit": None,
                "limit_remaining": None,
                "usage": 0.1234,
                "is_free_tier": False,
                "is_provisioning_key": False,
            }
        }
    ),
    unhealthy={
        "key-rejected-401": Unhealthy(
            reply_json(
                {"error": {"message": "No auth credentials found", "code": 401}}, 401
            ),
            "401",
        ),
    },
    listings={
        "context-length": Listing(
            routes={
                ("GET", "/api/v1/models"): {
                    "data": [
                        _or_card("openai/gpt-4", 8192, 4096),
                        _or_card("anthropic/claude-sonnet-4", 200000, 64000),
                        _or_card("someone/silent-model", None, None),
                    ]
                }
            },
            expected=[
                ("openai/gpt-4", 8192),
                ("anthropic/claude-sonnet-4", 200000),
                ("someone/silent-model", None),  # the server says nothing
            ],
        )
    },
    chat_path="/api/v1/chat/completions",
    messages_path="/api/v1/messages",
    openai_stream=[
        b": OPENROUTER PROCESSING\n\n",
        b": OPENROUTER PROCESSING\n\n",
        data(
            {
                **_OR_CHUNK,
                "choices": [
                    {
                        "index": 0,
                        "delta": {"role": "assistant", "content": "Hi ✓"},
                        "finish_reason": None,
                        "native_finish_reason": None,
                        "logprobs": None,
                    }
                ],
            }
        ),
        # one event split across two writes
        _OR_USAGE_CHUNK[:57],
        _OR_USAGE_CHUNK[57:],
        DONE,
    ],
    openai_usage=(42, 11),
    anthropic_stream=[
        b": OPENROUTER PROCESSING\n\n",
        event(
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": "gen-1760000000-def456",
                    "type": "message",
                    "role": "assistant",
                    "model": "anthropic/claude-sonnet-4",
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {
                        "input_tokens": 42,
                        "output_tokens": 1,
                        "cache_read_input_tokens": 0,
                        "cache_creation_input_tokens": 0,
                    },
                },
            },
        ),
        event("ping", {"type": "ping"}),
        *text_block("Hi ✓"),
        event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": 11},
            },
        ),
        event("message_stop", {"type": "message_stop"}),
    ],
    anthropic_usage=(42, 11),
    extras={
        "provider": {
            "order": ["anthropic", "amazon-bedrock"],
            "allow_fallbacks": False,
            "data_collection": "deny",
            "max_price": {"prompt": 1.5, "completion": 2},
        },
        "models": ["anthropic/claude-sonnet-4", "openai/gpt-4"],
        "plugins": [{"id": "web", "max_results": 3}],
        "transforms": ["middle-out"],
        "reasoning": {"effort": "low"},
    },
    caller_model="anthropic/claude-sonnet-4",
    model_not_found={
        "openai-400-not-a-valid-model-id": ErrorCase(
            OPENAI,
            reply_json(
                {
                    "error": {
                        "message": "no-such-model is not a valid model ID",
                        "code": 400,
                    },
                    "user_id": "user_2abcDEF",
                },
                400,
            ),
        )
    },
    server_error=reply_json(
        {"error": {"code": 500, "message": "Internal Server Error"}}, 500
    ),
    bad_request=reply_json(
        {
            "error": {
                "code": 400,
                "message": "This endpoint's maximum context length is 8192 tokens. "
                "However, you requested about 9000 tokens.",
                "metadata": {"provider_name": "OpenAI"},
            },
            "user_id": "user_2abcDEF",
        },
        400,
    ),
)


# -- Venice --------------------------------------------------------------------


def _venice_card(
    model_id: str, kind: str, spec_window: int, mirror: Optional[int]
) -> Dict[str, Any]:
    card: Dict[str, Any] = {
        "id": model_id,
        "object": "model",
        "owned_by": "venice.ai",
        "type": kind,
        "created": 1727966436,
        "model_spec": {
            "availableContextTokens": spec_window,
            "maxCompletionTokens": 65536,
            "name": model_id,
            "privacy": "private",
            "offline": False,
            "capabilities": {
                "supportsFunctionCalling": True,
                "supportsReasoning": False,
                "supportsVision": False,
            },
            "pricing": {"input": {"usd": 0.15, "diem": 0.15}},
            "traits": [],
        },
    }
    if mirror is not None:
        card["context_length"] = mirror
    return card


_VENICE_CHUNK = {
    "id": "chatcmpl-venice-77",
    "object": "chat.completion.chunk",
    "created": 1760000000,
    "model": "llama-3.2-3b",
}

VENICE = Fake(
    kind="venice",
    remote=True,
    default_url="https://api.venice.ai/api/v1",
    prefix="/api/v1",
    takes_key=True,
    key_env="VENICE_API_KEY",
    # /models needs no key, so only an authenticated route proves the key works
    health_path="/api/v1/api_keys/rate_limits",
    healthy=reply_json(
        {
            "data": {
                "accessPermitted": True,
                "apiTier": {"id": "paid", "isCharged": True},
                "balances": {"USD": 10.5, "DIEM": 0},
                "keyExpiration": None,
                "nextEpochBegins": "2026-08-23T00:00:00.000Z",
                "rateLimits": [
                    {
                        "apiModelId": "llama-3.2-3b",
                        "rateLimits": [{"amount": 500, "type": "RPM"}],
                    }
                ],
            }
        }
    ),
    unhealthy={
        "key-rejected-401": Unhealthy(
            reply_json({"error": "Authentication failed"}, 401), "401"
        ),
    },
    listings={
        "model-spec": Listing(
            routes={
                ("GET", "/api/v1/models"): {
                    "object": "list",
                    "type": "text",
                    "data": [
                        _venice_card("llama-3.2-3b", "text", 131072, 131072),
                        _venice_card("qwen3-235b", "text", 32768, None),
                        _venice_card("text-embedding-bge-m3", "embedding", 8192, None),
                    ],
                }
            },
            expected=[("llama-3.2-3b", 131072), ("qwen3-235b", 32768)],
        )
    },
    chat_path="/api/v1/chat/completions",
    messages_path=None,
    openai_stream=[
        data(
            {
                **_VENICE_CHUNK,
                "choices": [
                    {
                        "index": 0,
                        "delta": {"role": "assistant", "content": "Hi ✓"},
                        "finish_reason": None,
                    }
                ],
            }
        ),
        data(
            {
                **_VENICE_CHUNK,
                "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            }
        ),
        data(
            {
                **_VENICE_CHUNK,
                "choices": [],
                "usage": {
                    "prompt_tokens": 55,
                    "completion_tokens": 13,
                    "total_tokens": 68,
                },
            }
        ),
        DONE,
    ],
    openai_usage=(55, 13),
    anthropic_stream=[],
    anthropic_usage=(None, None),
    extras={
        "venice_parameters": {
            "include_venice_system_prompt": False,
            "enable_web_search": "auto",
            "enable_web_citations": True,
            "character_slug": None,
        },
        "min_temp": 0.1,
        "max_temp": 0.9,
    },
    # a model feature suffix: never normalised or split
    caller_model="llama-3.2-3b:enable_web_search=on&include_venice_system_prompt=false",
    model_not_found={
        "openai-404": ErrorCase(
            OPENAI, reply_json({"error": "Specified model not found"}, 404)
        )
    },
    server_error=reply_json(
        {"error": "Inference processing failed, please try again"}, 500
    ),
    bad_request=reply_json(
        {
            "error": "Invalid request parameters",
            "details": {
                "_errors": [],
                "temperature": {"_errors": ["Number must be less than or equal to 2"]},
            },
            "issues": [],
        },
        400,
    ),
)


FAKES: Dict[str, Fake] = {
    fake.kind: fake for fake in (VLLM, LLAMACPP, LMSTUDIO, OLLAMA, OPENROUTER, VENICE)
}


# -- parametrisation: every registered kind ------------------------------------


def fake_for(kind: str) -> Fake:
    fake = FAKES.get(kind)
    if fake is None:
        pytest.fail(
            f"backend kind {kind!r} is registered in BACKENDS but has no Fake in "
            "tests/test_contract.py: describe how its server answers"
        )
    return fake


def per_kind(select: Optional[Callable[[Fake], bool]] = None) -> List[Any]:
    """One param per registered kind; a kind without a fake is always included
    (and fails), so the contract cannot silently skip it."""
    params = []
    for kind in BACKENDS:
        fake = FAKES.get(kind)
        if fake is None or select is None or select(fake):
            params.append(pytest.param(kind, id=kind))
    return params


def per_case(attr: str) -> List[Any]:
    """One param per (kind, named case in ``fake.<attr>``)."""
    params = []
    for kind in BACKENDS:
        fake = FAKES.get(kind)
        if fake is None:
            params.append(pytest.param(kind, None, id=f"{kind}-no-fake"))
            continue
        for name, case in getattr(fake, attr).items():
            params.append(pytest.param(kind, case, id=f"{kind}-{name}"))
    return params


@pytest.fixture
def connect(server):
    """Build the adapter of a kind against ``server``; closed at teardown."""
    opened: List[Backend] = []

    def connect_(kind: str, api_key: Optional[str] = None) -> Backend:
        fake = fake_for(kind)
        cls: Any = BACKENDS[kind]
        base = server.url + fake.prefix
        if fake.remote:
            backend = cls(api_key or REMOTE_KEY, base_url=base)
        elif fake.takes_key:
            backend = cls(base, api_key)
        else:
            backend = cls(base)
        opened.append(backend)
        return backend

    yield connect_
    for backend in opened:
        backend.close()


def header(request: Any, name: str) -> Optional[str]:
    for key, value in request.headers.items():
        if key.lower() == name.lower():
            return str(value)
    return None


def install_listing(server: ScriptedServer, listing: Listing) -> None:
    for (method, path), answer in listing.routes.items():
        serve(server, method, path, answer)


def first_listing(fake: Fake) -> Listing:
    return next(iter(fake.listings.values()))


def openai_request(fake: Fake) -> Dict[str, Any]:
    request: Dict[str, Any] = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Say hi ✓ — «ok» 你好"},
        ],
        "temperature": 0.2,
        "max_tokens": 64,
        "stream": True,  # anything else is refused (test_execute_refuses_stream_off)
        "x_custom": {
            "nested": [1, 2.5, None, True, {"deep": {"ü": "é", "n": 10**15}}],
            "empty_object": {},
            "empty_list": [],
        },
    }
    request.update(copy.deepcopy(fake.extras))
    return request


def anthropic_request() -> Dict[str, Any]:
    return {
        "max_tokens": 64,
        "system": "Be brief.",
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Say hi ✓"}]}
        ],
        "temperature": 0.5,
        "metadata": {"user_id": "user-42"},
    }


def request_log(server: ScriptedServer) -> List[Tuple[str, str]]:
    return [(r.method, r.path.split("?", 1)[0]) for r in server.requests]


# -- the fakes themselves --------------------------------------------------------


def test_every_registered_kind_has_a_fake():
    assert sorted(FAKES) == sorted(BACKENDS)
    for kind, fake in FAKES.items():
        assert fake.kind == kind
        assert fake.listings, kind
        assert fake.model_not_found, kind
        assert fake.unhealthy, kind
        assert fake.openai_stream, kind
        assert bool(fake.anthropic_stream) == (fake.messages_path is not None), kind


# -- identity and construction ---------------------------------------------------


@pytest.mark.parametrize("kind", per_kind())
def test_identity(kind, server, connect):
    fake = fake_for(kind)
    backend = connect(kind)
    assert type(backend) is BACKENDS[kind]
    assert backend.kind == kind
    if fake.remote:
        assert backend.id == kind
    else:
        assert backend.id == f"{kind}:{server.url}"
    expected = {OPENAI} | ({ANTHROPIC} if fake.messages_path else set())
    assert set(backend.wire_formats) == expected
    assert server.requests == []  # building a backend does no I/O


@pytest.mark.parametrize("kind", per_kind())
def test_create_backend_builds_each_kind(kind, server, monkeypatch):
    fake = fake_for(kind)
    serve(server, "GET", fake.health_path, fake.healthy)
    base = server.url + fake.prefix
    if fake.key_env:
        monkeypatch.setenv(fake.key_env, "sk-from-env-42")
    with create_backend(kind, url=base) as backend:
        assert type(backend) is BACKENDS[kind]
        assert backend.kind == kind
        assert backend.id == (kind if fake.remote else f"{kind}:{server.url}")
        health = backend.health()
    assert health.reachable is True, health
    assert request_log(server) == [("GET", fake.health_path)]
    if fake.key_env:
        assert header(server.last(), "Authorization") == "Bearer sk-from-env-42"


@pytest.mark.parametrize("kind", per_kind(lambda f: f.takes_key))
def test_create_backend_with_explicit_key(kind, server, monkeypatch):
    fake = fake_for(kind)
    if fake.key_env:
        monkeypatch.delenv(fake.key_env, raising=False)
    serve(server, "GET", fake.health_path, fake.healthy)
    base = server.url + fake.prefix
    with create_backend(kind, url=base, api_key="sk-explicit-7") as backend:
        assert backend.health().reachable is True
    assert header(server.last(), "Authorization") == "Bearer sk-explicit-7"


@pytest.mark.parametrize("kind", per_kind())
def test_create_backend_default_url(kind, monkeypatch):
    fake = fake_for(kind)
    if fake.key_env:
        monkeypatch.setenv(fake.key_env, "sk-default-url")
    with create_backend(kind) as backend:
        assert backend.url == fake.default_url
        if not fake.remote:
            assert backend.id == f"{kind}:{fake.default_url}"


def test_create_backend_unknown_kind_lists_the_valid_ones():
    with pytest.raises(ValueError) as info:
        create_backend("no-such-kind", url="http://127.0.0.1:9")
    for kind in BACKENDS:
        assert kind in str(info.value)


# -- health --------------------------------------------------------------------


@pytest.mark.parametrize("kind", per_kind())
def test_health_reachable(kind, server, connect):
    fake = fake_for(kind)
    healthy = Canned(
        fake.healthy.status,
        fake.healthy.body,
        fake.healthy.content_type,
        delay=0.15,
    )
    serve(server, "GET", fake.health_path, healthy)
    health = connect(kind).health()
    assert health.reachable is True
    assert health.last_error is None
    assert type(health.latency_ms) is int
    assert 140 <= health.latency_ms < 3000  # the probe's real latency is measured
    # one cheap probe on the kind's own route, never a completion
    assert request_log(server) == [("GET", fake.health_path)]
    assert fake.health_path not in (fake.chat_path, fake.messages_path)


@pytest.mark.parametrize("kind", per_kind())
def test_health_unreachable_is_data_not_an_exception(kind, server, connect):
    backend = connect(kind)
    server.stop()  # nothing listens on the port any more: connection refused
    health = backend.health()
    assert health.reachable is False
    assert isinstance(health.last_error, str)
    assert 0 < len(health.last_error) <= 300
    assert REMOTE_KEY not in health.last_error


@pytest.mark.parametrize("kind, case", per_case("unhealthy"))
def test_health_kind_specific_unhealthy(kind, case, server, connect):
    fake = fake_for(kind)
    serve(server, "GET", fake.health_path, case.reply)
    health = connect(kind).health()
    assert health.reachable is False
    assert isinstance(health.last_error, str) and health.last_error
    assert case.error_has in health.last_error.lower()
    assert request_log(server) == [("GET", fake.health_path)]


@pytest.mark.parametrize("kind", per_kind(lambda f: f.remote))
def test_remote_probe_proves_the_key(kind, server, connect):
    fake = fake_for(kind)
    serve(server, "GET", fake.health_path, fake.healthy)
    connect(kind, api_key="sk-probe-key").health()
    assert header(server.last(fake.health_path), "Authorization") == (
        "Bearer sk-probe-key"
    )


# -- list_models -----------------------------------------------------------------


@pytest.mark.parametrize("kind, listing", per_case("listings"))
def test_list_models(kind, listing, server, connect):
    fake = fake_for(kind)
    install_listing(server, listing)
    models = connect(kind).list_models()
    assert all(type(m) is BackendModel for m in models)
    assert [(m.model_id, m.context_window) for m in models] == listing.expected
    assert all(m.native is (not fake.remote) for m in models)
    assert all(
        m.context_window is None or type(m.context_window) is int for m in models
    )
    # only listing routes were read
    allowed = set(listing.routes)
    assert server.requests
    assert set(request_log(server)) <= allowed


# -- execute: OpenAI -------------------------------------------------------------


@pytest.mark.parametrize("kind", per_kind())
def test_openai_job_relay_body_and_usage(kind, server, connect):
    fake = fake_for(kind)
    server.stream("POST", fake.chat_path, fake.openai_stream)
    request = openai_request(fake)
    original = copy.deepcopy(request)
    job = Job.new("job-model-" + kind, request, OPENAI, deadline_ms=10_000)
    with connect(kind).execute(job) as stream:
        chunks = list(stream)
    assert all(type(c) is bytes and c for c in chunks)
    assert b"".join(chunks) == b"".join(fake.openai_stream)
    assert stream.result is not None
    usage = (stream.result.input_tokens, stream.result.output_tokens)
    assert usage == fake.openai_usage
    assert type(stream.result.duration_ms) is int

    assert request_log(server) == [("POST", fake.chat_path)]
    sent = server.last(fake.chat_path)
    assert header(sent, "Content-Type") == "application/json"
    expected = dict(
        original,
        stream=True,
        model=job.model_id,
        stream_options={"include_usage": True},
    )
    assert sent.json() == expected
    assert job.request == original  # the caller's dict is not modified


@pytest.mark.parametrize("kind", per_kind())
def test_openai_job_keeps_callers_model_and_stream_options(kind, server, connect):
    fake = fake_for(kind)
    server.stream("POST", fake.chat_path, fake.openai_stream)
    request = openai_request(fake)
    request["model"] = fake.caller_model
    request["stream_options"] = {"continuous_usage_stats": True}
    del request["stream"]
    original = copy.deepcopy(request)
    job = Job.new("job-model-ignored", request, OPENAI, deadline_ms=10_000)
    received: List[bytes] = []
    result = connect(kind).run(job, received.append)
    assert b"".join(received) == b"".join(fake.openai_stream)
    assert result.duration_ms >= 0
    sent = server.last(fake.chat_path).json()
    assert sent == dict(original, stream=True)
    assert sent["model"] == fake.caller_model
    assert sent["stream_options"] == {"continuous_usage_stats": True}


# -- execute: Anthropic ----------------------------------------------------------


@pytest.mark.parametrize("kind", per_kind(lambda f: f.messages_path is not None))
def test_anthropic_job_goes_to_messages_route(kind, server, connect):
    fake = fake_for(kind)
    assert fake.messages_path is not None
    server.stream("POST", fake.messages_path, fake.anthropic_stream)
    request = anthropic_request()
    original = copy.deepcopy(request)
    job = Job.new("job-model-" + kind, request, ANTHROPIC, deadline_ms=10_000)
    received: List[bytes] = []
    result = connect(kind).run(job, received.append)
    # relayed as is, never transcoded
    assert b"".join(received) == b"".join(fake.anthropic_stream)
    assert (result.input_tokens, result.output_tokens) == fake.anthropic_usage
    assert request_log(server) == [("POST", fake.messages_path)]
    sent = server.last(fake.messages_path).json()
    assert sent == dict(original, stream=True, model=job.model_id)
    assert "stream_options" not in sent


@pytest.mark.parametrize("kind", per_kind(lambda f: f.messages_path is None))
def test_anthropic_job_refused_before_any_io(kind, server, connect):
    backend = connect(kind)
    job = Job.new("llama-3.2-3b", anthropic_request(), ANTHROPIC, deadline_ms=10_000)
    with pytest.raises(UnsupportedWireFormatError) as info:
        backend.execute(job)
    assert info.value.backend == backend.id
    assert server.requests == []
    assert server.connections == 0


# -- auth ------------------------------------------------------------------------


def _discard(chunk: bytes) -> None:
    pass


def _every_call(kind: str, server: ScriptedServer, backend: Backend) -> None:
    """health, list_models and one job per wire format the kind speaks."""
    fake = fake_for(kind)
    serve(server, "GET", fake.health_path, fake.healthy)
    install_listing(server, first_listing(fake))
    server.stream("POST", fake.chat_path, fake.openai_stream)
    assert backend.health().reachable is True
    backend.list_models()
    backend.run(Job.new("m", openai_request(fake), OPENAI, 10_000), _discard)
    if fake.messages_path:
        server.stream("POST", fake.messages_path, fake.anthropic_stream)
        backend.run(Job.new("m", anthropic_request(), ANTHROPIC, 10_000), _discard)


@pytest.mark.parametrize("kind", per_kind(lambda f: f.takes_key))
def test_key_sent_as_bearer_on_every_call(kind, server, connect):
    key = "sk-bearer-check-5555"
    _every_call(kind, server, connect(kind, api_key=key))
    paths = {path for _, path in request_log(server)}
    fake = fake_for(kind)
    assert fake.chat_path in paths and fake.health_path in paths
    for request in server.requests:
        assert header(request, "Authorization") == f"Bearer {key}", request.path


@pytest.mark.parametrize("kind", per_kind(lambda f: not f.remote))
def test_no_key_no_authorization_header(kind, server, connect):
    _every_call(kind, server, connect(kind))
    assert server.requests
    for request in server.requests:
        assert header(request, "Authorization") is None, request.path
        assert header(request, "x-api-key") is None, request.path


# -- errors ------------------------------------------------------------------------


def _job_for(fake: Fake, wire: WireFormat) -> Tuple[Job, str]:
    if wire is ANTHROPIC:
        assert fake.messages_path is not None
        return Job.new(UNKNOWN_MODEL, anthropic_request(), wire, 10_000), (
            fake.messages_path
        )
    return Job.new(UNKNOWN_MODEL, openai_request(fake), wire, 10_000), fake.chat_path


@pytest.mark.parametrize("kind, case", per_case("model_not_found"))
def test_unknown_model_is_model_not_found(kind, case, server, connect):
    fake = fake_for(kind)
    job, path = _job_for(fake, case.wire)
    serve(server, "POST", path, case.reply)
    backend = connect(kind)
    with pytest.raises(ModelNotFoundError) as info:
        backend.execute(job)
    error = info.value
    assert error.model_id == UNKNOWN_MODEL
    assert error.status == case.reply.status
    assert error.body == case.reply.body.decode()
    assert error.backend == backend.id
    assert request_log(server) == [("POST", path)]


@pytest.mark.parametrize("kind", per_kind())
def test_server_error_is_bad_status(kind, server, connect):
    fake = fake_for(kind)
    serve(server, "POST", fake.chat_path, fake.server_error)
    backend = connect(kind)
    with pytest.raises(BadStatusError) as info:
        backend.execute(Job.new("m", openai_request(fake), OPENAI, 10_000))
    assert type(info.value) is BadStatusError
    assert info.value.status == 500
    assert info.value.body == fake.server_error.body.decode()
    assert info.value.backend == backend.id


@pytest.mark.parametrize("kind", per_kind())
def test_other_bad_request_is_not_model_not_found(kind, server, connect):
    fake = fake_for(kind)
    serve(server, "POST", fake.chat_path, fake.bad_request)
    with pytest.raises(BadStatusError) as info:
        connect(kind).execute(Job.new("m", openai_request(fake), OPENAI, 10_000))
    assert type(info.value) is BadStatusError
    assert info.value.status == fake.bad_request.status
    assert info.value.body == fake.bad_request.body.decode()


@pytest.mark.parametrize("kind", per_kind())
def test_unreachable_list_and_execute_raise_unreachable(kind, server, connect):
    fake = fake_for(kind)
    backend = connect(kind)
    server.stop()
    with pytest.raises(UnreachableError) as info:
        backend.list_models()
    assert info.value.backend == backend.id
    with pytest.raises(UnreachableError):
        backend.execute(Job.new("m", openai_request(fake), OPENAI, 10_000))
