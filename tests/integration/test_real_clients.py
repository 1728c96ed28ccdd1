"""The official ``openai`` and ``anthropic`` SDKs read what our relay produced.

A Flask app (the sync web app case) serves ``execute()``'s iterator; each SDK is
pointed at it, and the text it assembles must equal the text in the events the
relay handed over, for both engines and both wire formats.
"""

from __future__ import annotations

from typing import Iterator, Tuple

import pytest

from provider_agent.backend import Backend, LlamaCppBackend, VllmBackend

from .conftest import VLLM_MODEL
from .engines import Engine
from .helpers import anthropic_text, openai_text, payloads

pytestmark = pytest.mark.integration

PROMPT = [{"role": "user", "content": "hello world"}]


@pytest.fixture(params=["llamacpp", "vllm"])
def relay_app(request: pytest.FixtureRequest) -> Iterator[Tuple[str, str]]:
    """(base URL of a Flask relay in front of the engine, model name)."""
    from .flask_relay import Served, create_app

    backend: Backend
    if request.param == "llamacpp":
        engine: Engine = request.getfixturevalue("llama")
        backend, model = LlamaCppBackend(engine.url), "tiny"
    else:
        engine = request.getfixturevalue("vllm")
        key = request.getfixturevalue("vllm_key")
        backend, model = VllmBackend(engine.url, api_key=key), VLLM_MODEL
    served = Served(create_app(backend))
    request.node.served = served
    yield served.url, model
    served.close()
    backend.close()


def test_openai_sdk_reads_the_relayed_stream(
    relay_app: Tuple[str, str], request: pytest.FixtureRequest
) -> None:
    import openai

    url, model = relay_app
    client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    with client:
        stream = client.chat.completions.create(
            model=model,
            messages=PROMPT,  # type: ignore[arg-type]
            max_tokens=12,
            stream=True,
            stream_options={"include_usage": True},
            extra_body={"ignore_eos": True},
        )
        chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    (relayed,) = request.node.served.relayed
    assert text == openai_text(relayed)
    assert text, "the model said nothing: the comparison would prove nothing"
    usage = payloads(relayed)[-1]["usage"]
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == usage["completion_tokens"] == 12
    assert chunks[-1].usage.prompt_tokens == usage["prompt_tokens"]


def test_anthropic_sdk_reads_the_relayed_stream(
    relay_app: Tuple[str, str], request: pytest.FixtureRequest
) -> None:
    import anthropic

    url, model = relay_app
    client = anthropic.Anthropic(base_url=url, api_key="unused", max_retries=0)
    with client:
        events = list(
            client.messages.create(
                model=model,
                messages=PROMPT,  # type: ignore[arg-type]
                max_tokens=12,
                stream=True,
                extra_body={"ignore_eos": True},
            )
        )
    text = "".join(
        e.delta.text
        for e in events
        if e.type == "content_block_delta" and e.delta.type == "text_delta"
    )
    (relayed,) = request.node.served.relayed
    assert text == anthropic_text(relayed)
    assert text, "the model said nothing: the comparison would prove nothing"
    assert events[-1].type == "message_stop"
    deltas = [e for e in events if e.type == "message_delta"]
    assert deltas[-1].usage.output_tokens == 12


# Only vLLM: the SDK's ``messages.stream()`` helper builds the message from
# ``message_start`` and fails without it, and llama.cpp leaves it out whenever
# its first token is half a character (about one stream in six here). The
# relay passes streams through as they are; the raw events above still parse.
@pytest.mark.parametrize("relay_app", ["vllm"], indirect=True)
def test_anthropic_sdk_stream_helper_assembles_the_message(
    relay_app: Tuple[str, str], request: pytest.FixtureRequest
) -> None:
    import anthropic

    url, model = relay_app
    client = anthropic.Anthropic(base_url=url, api_key="unused", max_retries=0)
    with (
        client,
        client.messages.stream(
            model=model,
            messages=PROMPT,  # type: ignore[arg-type]
            max_tokens=12,
            extra_body={"ignore_eos": True},
        ) as stream,
    ):
        message = stream.get_final_message()
    (relayed,) = request.node.served.relayed
    text = "".join(block.text for block in message.content if block.type == "text")
    assert text == anthropic_text(relayed)
    assert message.usage.output_tokens == 12
