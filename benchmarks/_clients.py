"""The clients the benchmarks compare, and the alternating runs they share.

Each client reads one whole stream and returns how many bytes it handed over:

- ``plain``: the floor, a ``requests`` session and ``iter_content(chunk_size=None)``;
- ``relay``: ``Backend.run()`` into a sink;
- ``official``: the ``openai`` package reading the same bytes through its own HTTP
  client (``with_streaming_response`` and ``iter_bytes()``), for comparison.
"""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable, Dict, List, Tuple

import requests
from requests.adapters import HTTPAdapter

from provider_agent.backend import Job, LlamaCppBackend

Client = Callable[[str], int]
MESSAGES = [{"role": "user", "content": "Hi"}]


def plain(url: str, connections: int = 10) -> Client:
    session = requests.Session()
    session.mount("http://", HTTPAdapter(pool_maxsize=connections))

    def read(model: str) -> int:
        body = {"model": model, "messages": MESSAGES, "stream": True}
        response = session.post(
            url + "/v1/chat/completions", json=body, stream=True, timeout=60
        )
        size = 0
        for chunk in response.iter_content(chunk_size=None):
            size += len(chunk)
        response.close()
        return size

    return read


def relay(url: str, connections: int = 32) -> Client:
    backend = LlamaCppBackend(url, max_connections=connections)

    def read(model: str) -> int:
        size = 0

        def sink(chunk: bytes) -> None:
            nonlocal size
            size += len(chunk)

        backend.run(Job.new(model, {"messages": MESSAGES}), sink)
        return size

    return read


def official(url: str) -> Client:
    import openai  # a benchmark-only dependency

    client = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0)

    def read(model: str) -> int:
        size = 0
        with client.chat.completions.with_streaming_response.create(
            model=model,
            messages=MESSAGES,  # type: ignore[arg-type]
            stream=True,
        ) as response:
            for chunk in response.iter_bytes():
                size += len(chunk)
        return size

    return read


CLIENTS: Dict[str, Callable[[str], Client]] = {
    "requests": plain,
    "provider_agent": relay,
    "openai": official,
}


def alternate(
    clients: Dict[str, Callable[[], Any]], rounds: int
) -> Dict[str, List[Tuple[float, float]]]:
    """(wall s, CPU s) of each client's call, over ``rounds`` rounds that run
    every client once in turn (the order rotating), so that all see the same
    machine noise."""
    names = list(clients)
    samples: Dict[str, List[Tuple[float, float]]] = {name: [] for name in names}
    for name in names:
        clients[name]()  # warm up: connect, import, fill caches
    for index in range(rounds):
        for name in names[index % len(names) :] + names[: index % len(names)]:
            cpu, wall = time.process_time(), time.perf_counter()
            clients[name]()
            samples[name].append(
                (time.perf_counter() - wall, time.process_time() - cpu)
            )
    return samples


def median(values: List[float]) -> float:
    return statistics.median(values)
