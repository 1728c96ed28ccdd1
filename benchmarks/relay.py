"""Relay overhead: provider_agent's execute() against a bare requests loop.

Both read the same stream from the same local server in the same run; the script
prints each one's time per job and the ratio, so a slower relay shows up as a ratio
above 1 whatever the machine is doing. Run from the repository root:

    python -m benchmarks.relay [--jobs 300] [--events 200]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Callable, List

import requests

from provider_agent.backend import Job, LlamaCppBackend
from tests.server import ScriptedServer


def make_events(count: int) -> List[bytes]:
    chunk = {"choices": [{"index": 0, "delta": {"content": "token "}}]}
    events = [b"data: " + json.dumps(chunk).encode() + b"\n\n"] * count
    usage = {"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": count}}
    events.append(b"data: " + json.dumps(usage).encode() + b"\n\ndata: [DONE]\n\n")
    return events


def baseline(url: str) -> Callable[[], int]:
    """The least a relay can do: POST, then hand over each read as it comes."""
    session = requests.Session()
    body = {"messages": [{"role": "user", "content": "Hi"}], "stream": True}

    def one_job() -> int:
        response = session.post(
            url + "/v1/chat/completions", json=body, stream=True, timeout=10
        )
        size = 0
        while True:
            data = response.raw.read1(65536)
            if not data:
                break
            size += len(data)
        response.close()
        return size

    return one_job


def relay(url: str) -> Callable[[], int]:
    backend = LlamaCppBackend(url)
    request = {"messages": [{"role": "user", "content": "Hi"}]}

    def one_job() -> int:
        size = 0
        for chunk in backend.execute(Job.new("tiny", request)):
            size += len(chunk)
        return size

    return one_job


def timed(fn: Callable[[], int], jobs: int) -> List[float]:
    fn()  # warm the connection pool
    samples = []
    for _ in range(jobs):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--events", type=int, default=200)
    args = parser.parse_args()
    server = ScriptedServer()
    server.stream("POST", "/v1/chat/completions", make_events(args.events))
    try:
        # Interleave rounds so that both sides see the same machine noise.
        base: List[float] = []
        ours: List[float] = []
        for _ in range(3):
            base += timed(baseline(server.url), args.jobs // 3)
            ours += timed(relay(server.url), args.jobs // 3)
    finally:
        server.stop()
    b, o = statistics.median(base), statistics.median(ours)
    print(f"events per job     {args.events}")
    print(f"baseline (requests) {b * 1000:8.3f} ms/job (median of {len(base)})")
    print(f"provider_agent      {o * 1000:8.3f} ms/job (median of {len(ours)})")
    print(f"ratio               {o / b:8.2f}x  (target: below 1.5x)")


if __name__ == "__main__":
    main()
