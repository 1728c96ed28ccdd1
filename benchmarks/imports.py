"""Import time: ``import provider_agent.backend`` against ``import requests``.

Each import runs in a fresh interpreter, alternating, and the script prints the
medians and the difference (target: under 0.1 s). Run from the repository root:

    python -m benchmarks.imports [--runs 15]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from typing import Dict, List

from ._clients import median

TIMED = (
    "import time; started = time.perf_counter(); import {}; "
    "print(time.perf_counter() - started)"
)
MODULES = ("requests", "provider_agent.backend")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    samples: Dict[str, List[float]] = {name: [] for name in MODULES}
    for _ in range(args.runs):
        for name in MODULES:
            out = subprocess.run(
                [sys.executable, "-c", TIMED.format(name)],
                check=True,
                capture_output=True,
                text=True,
            )
            samples[name].append(float(out.stdout))
    times = {name: median(samples[name]) for name in MODULES}
    for name in MODULES:
        print(f"  import {name:24} {times[name] * 1000:6.1f} ms")
    difference = times["provider_agent.backend"] - times["requests"]
    print(f"  difference                     {difference * 1000:6.1f} ms")


if __name__ == "__main__":
    main()
