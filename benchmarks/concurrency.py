"""Many streams at once: jobs/s, client CPU per MB, peak threads and RSS.

8, 64 and 256 threads each run jobs back to back (a stream of 200 token events,
about 12 KB, one event per HTTP chunk) against a loopback server, first with plain
``requests`` (``iter_content(chunk_size=None)``), then with ``Backend.run()``, in
alternating rounds; both keep as many connections as there are threads. Target: the
relay's CPU per MB within 1.5x of plain ``requests``'. Run from the repository root:

    python -m benchmarks.concurrency [--threads 8,64,256] [--jobs 2048] [--rounds 3]
"""

from __future__ import annotations

import argparse
import threading
import time
from functools import partial
from typing import Callable, Dict, List, Tuple

from ._clients import median, plain, relay
from ._server import MB, serving

Reader = Callable[[], int]


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096 / MB


def run(read: Reader, threads: int, jobs: int) -> Dict[str, float]:
    """Run ``jobs`` jobs on ``threads`` threads; their figures."""
    per_thread = max(jobs // threads, 1)
    sizes: List[int] = []
    peak: List[Tuple[int, float]] = [(0, 0.0)]
    done = threading.Event()
    start = threading.Barrier(threads)

    def worker() -> None:
        start.wait()  # all streams at once, not each job as its thread starts
        total = 0
        for _ in range(per_thread):
            total += read()
        sizes.append(total)

    def monitor() -> None:
        while not done.wait(0.005):
            peak.append((threading.active_count(), rss_mb()))

    watcher = threading.Thread(target=monitor, daemon=True)
    watcher.start()
    workers = [threading.Thread(target=worker) for _ in range(threads)]
    cpu, wall = time.process_time(), time.perf_counter()
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    done.set()
    watcher.join()
    size = sum(sizes) / MB
    return {
        "jobs/s": per_thread * threads / wall,
        "cpu/MB": cpu / size,
        # less this benchmark's own: the main thread and the monitor
        "threads": max(count for count, _ in peak) - 2,
        "rss": max(rss for _, rss in peak),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="8,64,256")
    parser.add_argument("--jobs", type=int, default=2048)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"{'':22} {'jobs/s':>8} {'CPU s/MB':>9} {'threads':>8} {'RSS MB':>7}")
    with serving() as url:
        for threads in [int(n) for n in args.threads.split(",")]:
            readers = {
                "requests": partial(plain(url, threads), "medium"),
                "provider_agent": partial(relay(url, threads), "medium"),
            }
            runs: Dict[str, List[Dict[str, float]]] = {name: [] for name in readers}
            for index in range(args.rounds + 1):  # the first round warms up
                for name in list(readers)[:: 1 if index % 2 else -1]:
                    figures = run(readers[name], threads, args.jobs)
                    if index:
                        runs[name].append(figures)
            cpu = {}
            for name, samples in runs.items():
                row = {key: median([s[key] for s in samples]) for key in samples[0]}
                cpu[name] = row["cpu/MB"]
                print(
                    f"{threads:3} streams {name:14} {row['jobs/s']:8.0f} "
                    f"{row['cpu/MB']:9.3f} {row['threads']:8.0f} {row['rss']:7.1f}"
                )
            ratio = cpu["provider_agent"] / cpu["requests"]
            print(f"{threads:3} streams CPU per MB ratio {ratio:5.2f}x (target: 1.5x)")


if __name__ == "__main__":
    main()
