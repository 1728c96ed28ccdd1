"""Polling many backends: ``poll_health`` against a pool capped at 16 threads.

A third of the backends accept the connection and never answer, a third refuse it
(a bound port that does not listen) and a third answer ``/health`` (one port each,
served by a child process so that its threads are not this one's). Each size is
polled by ``poll_health`` and by the old approach, ``ThreadPoolExecutor(16).map``
of ``health(timeout)``, in the same run; the script prints each one's wall time
divided by the probe timeout (target for ``poll_health``: within 1.2x at every
size), its peak thread count, and whether every backend was seen as it is. Run
from the repository root:

    python -m benchmarks.fleet_poll [--timeout 1.0] [--rounds 3] [--sizes 10,100,500]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from multiprocessing.connection import Connection
from typing import Callable, Dict, List, Mapping, Sequence

from provider_agent.backend import Backend, BackendHealth, LlamaCppBackend
from provider_agent.fleet import poll_health

from ._fleet_proc import (
    PeakSampler,
    ServerProcess,
    answer_until_stopped,
    port_of,
    proc_status,
    read_request,
    reserve_ports,
    run_loop_in_thread,
    wait_for_threads,
)

TARGET = 1.2
OLD_POOL = 16
HEALTHY = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    b'Content-Length: 16\r\nConnection: close\r\n\r\n{"status": "ok"}'
)


def serve_backends(conn: Connection, answer: int, hang: int, refuse: int) -> None:
    """The child: ``answer`` healthy llama-servers, ``hang`` silent listeners
    and ``refuse`` closed ports; sends their ports by kind."""

    async def healthy(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if await read_request(reader):
            writer.write(HEALTHY)
            await writer.drain()
        writer.close()

    async def listen() -> List[int]:
        servers = [
            await asyncio.start_server(healthy, "127.0.0.1", 0, backlog=1024)
            for _ in range(answer)
        ]
        return [int(s.sockets[0].getsockname()[1]) for s in servers]

    loop = asyncio.new_event_loop()
    answering = loop.run_until_complete(listen())
    run_loop_in_thread(loop)
    hanging, refusing = reserve_ports(hang, refuse)
    conn.send(
        {
            "answer": answering,
            "hang": [port_of(s) for s in hanging],
            "refuse": [port_of(s) for s in refusing],
        }
    )
    answer_until_stopped(conn)


@dataclass
class Sample:
    wall: float
    cpu: float
    threads: int
    wrong: int  # backends seen other than they are


def old_pool(backends: Sequence[Backend], timeout: float) -> Dict[str, BackendHealth]:
    with ThreadPoolExecutor(OLD_POOL) as pool:
        found = list(pool.map(lambda b: b.health(timeout), backends))
    return {b.id: h for b, h in zip(backends, found)}


def measure(
    poll: Callable[[], Mapping[str, BackendHealth]],
    expected: Mapping[str, bool],
    idle_threads: int,
    timeout: float,
) -> Sample:
    # The previous poll's cut-off probes end at their own deadline.
    wait_for_threads(idle_threads, timeout + 5)
    with PeakSampler() as peak:
        cpu, started = time.process_time(), time.perf_counter()
        health = poll()
        wall = time.perf_counter() - started
        cpu = time.process_time() - cpu
    wrong = sum(1 for i, up in expected.items() if health[i].reachable is not up)
    return Sample(wall, cpu, peak.threads, wrong)


def backends_for(served: Mapping[str, List[int]], size: int, timeout: float):
    """``size`` backends, a third of each kind; and whether each should be up."""
    backends: List[Backend] = []
    expected: Dict[str, bool] = {}
    for n in range(size):
        kind = ("hang", "refuse", "answer")[n % 3]
        backend = LlamaCppBackend(
            f"http://127.0.0.1:{served[kind][n // 3]}", health_timeout=timeout
        )
        backends.append(backend)
        expected[backend.id] = kind == "answer"
    return backends, expected


def row(name: str, samples: List[Sample], timeout: float) -> str:
    ratios = [s.wall / timeout for s in samples]
    return (
        f"  {name:<22}{statistics.median(ratios):7.2f}x{max(ratios):7.2f}x"
        f"{statistics.median(s.cpu for s in samples):8.2f}"
        f"{max(s.threads for s in samples):9d}{sum(s.wrong for s in samples):8d}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sizes", default="10,100,500")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    third = -(-max(sizes) // 3)
    idle = proc_status()["Threads"]
    results: Dict[int, Dict[str, List[Sample]]] = {}
    with ServerProcess(serve_backends, third, third, third) as server:
        for size in sizes:
            backends, expected = backends_for(server.served, size, args.timeout)
            polls = {
                "poll_health": partial(poll_health, backends, timeout=args.timeout),
                f"pool of {OLD_POOL} (old)": partial(old_pool, backends, args.timeout),
            }
            results[size] = {name: [] for name in polls}
            for n in range(args.rounds):
                # Alternate the order so both see the same machine noise.
                for name in sorted(polls, reverse=bool(n % 2)):
                    sample = measure(polls[name], expected, idle, args.timeout)
                    results[size][name].append(sample)
            for backend in backends:
                backend.close()
    print(
        f"probe timeout {args.timeout:g} s; {args.rounds} rounds; "
        f"threads at rest {idle}; each size: 1/3 hang, 1/3 refuse, 1/3 answer"
    )
    print(f"  {'':<22}{'wall/timeout':>16}{'CPU s':>8}{'peak':>9}{'wrong':>8}")
    print(
        f"  {'':<22}{'median':>8}{'worst':>8}{'median':>8}{'threads':>9}{'health':>8}"
    )
    worst = 0.0
    for size, by_name in results.items():
        print(f"{size} backends")
        for name, samples in by_name.items():
            print(row(name, samples, args.timeout))
        worst = max(worst, *(s.wall / args.timeout for s in by_name["poll_health"]))
    verdict = "met" if worst <= TARGET else "MISSED"
    print(f"poll_health worst {worst:.2f}x (target: within {TARGET}x): {verdict}")


if __name__ == "__main__":
    main()
