"""Bulk relay: MB/s and client CPU per MB, against plain ``requests``.

Two streams from a loopback server, one event per HTTP chunk: ``bulk`` (30 MB of
4 KB events, each followed by twenty 60-byte token events) and ``tokens`` (5 MB of
60-byte token events). Every client reads each stream in alternating rounds; the
figures are medians, the ratio is provider_agent's throughput over plain
``requests``' (target: 0.9 or more). Run from the repository root:

    python -m benchmarks.throughput [--rounds 5] [--no-openai]
"""

from __future__ import annotations

import argparse
from functools import partial

from ._clients import CLIENTS, alternate, median
from ._server import MB, serving


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--streams", default="bulk,tokens")
    parser.add_argument("--no-openai", action="store_true")
    args = parser.parse_args()
    names = [name for name in CLIENTS if not (args.no_openai and name == "openai")]
    with serving() as url:
        for stream in args.streams.split(","):
            readers = {name: CLIENTS[name](url) for name in names}
            size = readers["requests"](stream) / MB
            samples = alternate(
                {name: partial(readers[name], stream) for name in names},
                args.rounds,
            )
            print(f"{stream}: {size:.1f} MB, median of {args.rounds} rounds")
            floor = median([wall for wall, _ in samples["requests"]])
            for name in names:
                wall = median([w for w, _ in samples[name]])
                cpu = median([c for _, c in samples[name]])
                print(
                    f"  {name:15} {size / wall:7.1f} MB/s  {cpu / size * 1000:6.1f} "
                    f"ms CPU/MB  ratio {floor / wall:5.2f}x"
                )


if __name__ == "__main__":
    main()
