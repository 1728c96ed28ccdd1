"""Start-up cost of the command: ``provider-agent --help`` against ``python -c
"import click"``.

Both run as fresh interpreters in the same run, alternating, so the machine's
load weighs on both alike; the script prints each one's median wall time and
the difference, which is what the command costs beyond click itself (its own
modules: the help imports no backend, no fleet and no requests). Run from the
repository root:

    python -m benchmarks.cli_startup [--runs 20]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from typing import List, Sequence


def wall_time(command: Sequence[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main(argv: Sequence[str] = ()) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    runs = parser.parse_args(list(argv) or None).runs
    help_command = [sys.executable, "-m", "provider_agent", "--help"]
    click_command = [sys.executable, "-c", "import click"]
    helps: List[float] = []
    clicks: List[float] = []
    wall_time(help_command)  # warm the file cache and the bytecode
    for _ in range(runs):
        helps.append(wall_time(help_command))
        clicks.append(wall_time(click_command))
    help_s, click_s = statistics.median(helps), statistics.median(clicks)
    print(f"provider-agent --help  {help_s * 1000:7.1f} ms (median of {runs})")
    print(f"python -c 'import click' {click_s * 1000:5.1f} ms")
    print(f"the command's own cost {(help_s - click_s) * 1000:7.1f} ms")
    print(f"ratio                  {help_s / click_s:7.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
