"""Per-job overhead: ``Backend.run()`` against a plain ``requests.post(stream=True)``.

Both run tiny jobs (a stream of ten token events, its usage and ``[DONE]``) one after
the other on a warm kept-alive connection to a loopback server, alternating job by
job; the script prints each one's median time per job and what the relay adds
(target: under 0.3 ms). Run from the repository root:

    python -m benchmarks.relay [--jobs 300]
"""

from __future__ import annotations

import argparse
from functools import partial

from ._clients import alternate, median, plain, relay
from ._server import serving


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=300)
    args = parser.parse_args()
    with serving() as url:
        clients = {
            "requests": partial(plain(url), "tiny"),
            "provider_agent": partial(relay(url), "tiny"),
        }
        samples = alternate(clients, args.jobs)
    wall = {name: median([w for w, _ in samples[name]]) * 1000 for name in clients}
    cpu = {name: median([c for _, c in samples[name]]) * 1000 for name in clients}
    print(f"tiny jobs on a warm connection, median of {args.jobs} each")
    for name in clients:
        print(f"  {name:15} {wall[name]:6.3f} ms/job  {cpu[name]:6.3f} ms CPU/job")
    added = wall["provider_agent"] - wall["requests"]
    ratio = wall["requests"] / wall["provider_agent"]
    print(f"  added per job   {added:6.3f} ms        ratio {ratio:5.2f}x")


if __name__ == "__main__":
    main()
