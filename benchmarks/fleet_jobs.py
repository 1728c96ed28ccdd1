"""Concurrent jobs: through a ``Fleet`` against the same jobs on its backend.

N jobs start together, one thread each, and stream an OpenAI-style reply of
``--events`` token events from a loopback server in a child process (its CPU is
not this process's). Each N runs twice in the same run, through a one-backend
``Fleet`` (``max_concurrent`` = N) and by ``backend.run`` directly; each
measurement runs in a fresh interpreter, so that its peak RSS is its own. The
script prints jobs/s, CPU ms per job, peak threads and peak RSS, and the ratios
fleet/direct. ``--server asyncio`` (the default) writes pre-built bytes from one
event loop; ``--server threading`` uses the tests' ``ThreadingHTTPServer``. Run
from the repository root:

    python -m benchmarks.fleet_jobs [--sizes 8,64,256] [--events 50] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

from provider_agent.backend import BackendError, Job, JobResult, LlamaCppBackend
from provider_agent.fleet import Fleet

from ._fleet_proc import (
    PeakSampler,
    ServerProcess,
    answer_until_stopped,
    proc_status,
    read_request,
    run_loop_in_thread,
)
from ._server import ending, event

VARIANTS = ("fleet", "direct")
#: The fewest jobs a measurement times (in batches of N at once).
MIN_JOBS = 512
REQUEST = {"messages": [{"role": "user", "content": "Hi"}]}


def make_events(count: int) -> List[bytes]:
    """A reply of ``count`` token events, its usage chunk and ``[DONE]``."""
    return [event("token ")] * count + ending(count)


def _reply(content_type: bytes, body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n%s" % (
        content_type,
        len(body),
        body,
    )


def serve_stream(conn: Connection, kind: str, events: int) -> None:
    """The child: a llama-server that streams ``events`` token events to every
    chat request; sends its port."""
    if kind == "threading":
        from tests import fakes
        from tests.server import ScriptedServer

        server = ScriptedServer()
        fakes.chat(fakes.llamacpp(server), make_events(events))
        conn.send(server.port)
        answer_until_stopped(conn)
        return
    frames = [b"%x\r\n%s\r\n" % (len(e), e) for e in make_events(events)]
    stream_head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    health = _reply(b"application/json", b'{"status":"ok"}')
    models = _reply(b"application/json", b'{"data":[{"id":"tiny"}]}')

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.get_extra_info("socket").setsockopt(
            socket.IPPROTO_TCP, socket.TCP_NODELAY, 1
        )
        while True:
            line = await read_request(reader)
            if not line:
                break
            if line.startswith(b"GET /health"):
                writer.write(health)
            elif line.startswith(b"GET /v1/models"):
                writer.write(models)
            else:
                writer.write(stream_head)
                for frame in frames:  # one send each, as an engine writes tokens
                    writer.write(frame)
                writer.write(b"0\r\n\r\n")
            await writer.drain()
        writer.close()

    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(
        asyncio.start_server(serve, "127.0.0.1", 0, backlog=1024)
    )
    run_loop_in_thread(loop)
    conn.send(int(server.sockets[0].getsockname()[1]))
    answer_until_stopped(conn)


def _batch(
    run: Callable[[Job, Callable[[bytes], None]], JobResult], jobs: int
) -> Tuple[List[Union[int, str]], float, float]:
    """``jobs`` jobs started together, one thread each: the bytes each relayed
    (or its error), the wall and the CPU seconds from start to the last end."""
    got: List[Union[int, str]] = [0] * jobs
    start = threading.Barrier(jobs + 1)

    def work(n: int) -> None:
        size = 0

        def sink(chunk: bytes) -> None:
            nonlocal size
            size += len(chunk)

        start.wait()
        try:
            run(Job.new("tiny", REQUEST), sink)
            got[n] = size
        except BackendError as exc:
            got[n] = str(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(jobs)]
    for thread in threads:
        thread.start()
    start.wait()
    cpu, started = time.process_time(), time.perf_counter()
    for thread in threads:
        thread.join()
    return got, time.perf_counter() - started, time.process_time() - cpu


def measure(variant: str, jobs: int, url: str, events: int) -> Dict[str, Any]:
    """Run ``jobs`` jobs at once, in batches; what it cost this process."""
    backend = LlamaCppBackend(url)
    fleet = Fleet([backend], max_concurrent=jobs) if variant == "fleet" else None
    run: Callable[[Job, Callable[[bytes], None]], JobResult] = (
        fleet.run if fleet is not None else backend.run
    )
    expected = len(b"".join(make_events(events)))
    run(Job.new("tiny", REQUEST), lambda chunk: None)  # warm up (and discover)
    got: List[Union[int, str]] = []
    wall = cpu = 0.0
    with PeakSampler() as peak:
        # Batches of ``jobs`` at once, enough of them that a small N is timed
        # over more than a few milliseconds.
        for _ in range(max(1, MIN_JOBS // jobs)):
            batch, batch_wall, batch_cpu = _batch(run, jobs)
            got += batch
            wall += batch_wall
            cpu += batch_cpu
    if fleet is not None:
        assert fleet.in_flight == 0, fleet.in_flight
        fleet.close()
    backend.close()
    failures = [g for g in got if g != expected]
    return {
        "jobs": len(got),
        "wall": wall,
        "cpu": cpu,
        "threads": peak.threads,
        "rss_kb": proc_status()["VmHWM"],
        "failed": len(failures),
        "first_failure": str(failures[0]) if failures else None,
    }


def in_child(variant: str, jobs: int, port: int, events: int) -> Dict[str, Any]:
    """``measure`` in a fresh interpreter."""
    command = [sys.executable, "-m", "benchmarks.fleet_jobs", "--measure", variant]
    command += ["--sizes", str(jobs), "--port", str(port), "--events", str(events)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"{variant} x {jobs} failed:\n{done.stderr}")
    return dict(json.loads(done.stdout.splitlines()[-1]))


def summary(samples: List[Dict[str, Any]]) -> Dict[str, float]:
    return {
        "jobs_s": statistics.median(s["jobs"] / s["wall"] for s in samples),
        "cpu_ms": statistics.median(s["cpu"] / s["jobs"] * 1000 for s in samples),
        "threads": max(s["threads"] for s in samples),
        "rss_mib": max(s["rss_kb"] for s in samples) / 1024,
        "server_ms": statistics.median(
            s["server_cpu"] / s["jobs"] * 1000 for s in samples
        ),
        "failed": sum(s["failed"] for s in samples),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="8,64,256")
    parser.add_argument("--events", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--server", choices=("asyncio", "threading"), default="asyncio")
    parser.add_argument("--measure", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.measure is not None:
        url = f"http://127.0.0.1:{args.port}"
        print(json.dumps(measure(args.measure, sizes[0], url, args.events)))
        return
    found: Dict[int, Dict[str, List[Dict[str, Any]]]] = {
        size: {v: [] for v in VARIANTS} for size in sizes
    }
    failure: Optional[str] = None
    with ServerProcess(serve_stream, args.server, args.events) as server:
        for n in range(args.rounds):
            for size in sizes:
                # Alternate the order so both see the same machine noise.
                for variant in VARIANTS[:: -1 if n % 2 else 1]:
                    before = server.cpu()
                    sample = in_child(variant, size, server.served, args.events)
                    sample["server_cpu"] = server.cpu() - before
                    found[size][variant].append(sample)
                    failure = failure or sample["first_failure"]
    print(
        f"{args.events} token events per job, {args.server} server in a child "
        f"process; {args.rounds} rounds, medians (peaks: the highest)"
    )
    header = ("jobs", "", "jobs/s", "CPU ms/job", "threads", "RSS MiB", "server ms")
    print("{:>5} {:<15}{:>9}{:>12}{:>9}{:>9}{:>11}  failed".format(*header))
    for size, by_variant in found.items():
        sums = {v: summary(s) for v, s in by_variant.items()}
        for variant, s in sums.items():
            print(
                f"{size:>5} {variant:<15}{s['jobs_s']:>9.0f}{s['cpu_ms']:>12.2f}"
                f"{s['threads']:>9.0f}{s['rss_mib']:>9.1f}{s['server_ms']:>11.2f}"
                f"  {s['failed']:.0f}"
            )
        f, d = sums["fleet"], sums["direct"]
        print(
            f"{'':>5} {'fleet/direct':<15}{f['jobs_s'] / d['jobs_s']:>8.2f}x"
            f"{f['cpu_ms'] / d['cpu_ms']:>11.2f}x{f['threads'] / d['threads']:>8.2f}x"
            f"{f['rss_mib'] / d['rss_mib']:>8.2f}x"
        )
    if failure is not None:
        print(f"a job failed: {failure}")


if __name__ == "__main__":
    main()
