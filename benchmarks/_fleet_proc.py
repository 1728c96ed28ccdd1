"""What the fleet benchmarks share: reading this process's threads and memory
from ``/proc``, and loopback servers run in a child process.

The servers live in another process so that their CPU time and threads are not
counted in the client's; the parent talks to the child over a pipe: ``"cpu"``
asks for the child's CPU seconds so far, ``"stop"`` ends it.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import socket
import threading
import time
from multiprocessing.connection import Connection
from typing import Any, Callable, Dict, List, Tuple


def proc_status() -> Dict[str, int]:
    """This process's ``Threads``, ``VmRSS`` and ``VmHWM`` (kB) from
    ``/proc/self/status`` (Linux only)."""
    wanted = {"Threads", "VmRSS", "VmHWM"}
    found: Dict[str, int] = {}
    with open("/proc/self/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in wanted:
                found[name] = int(value.split()[0])
    return found


class PeakSampler:
    """Samples the thread count and RSS every ``every`` seconds on its own
    thread (counted in ``threads``) while in a ``with`` block."""

    def __init__(self, every: float = 0.002) -> None:
        self.every = every
        self.threads = 0
        self.rss_kb = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while True:
            status = proc_status()
            self.threads = max(self.threads, status["Threads"])
            self.rss_kb = max(self.rss_kb, status["VmRSS"])
            if self._done.wait(self.every):
                return

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()


def wait_for_threads(count: int, within: float) -> int:
    """Wait (at most ``within`` s) until this process runs ``count`` threads or
    fewer; how many it runs then."""
    deadline = time.monotonic() + within
    while True:
        now = proc_status()["Threads"]
        if now <= count or time.monotonic() > deadline:
            return now
        time.sleep(0.01)


class ServerProcess:
    """``target(conn, *args)`` in a spawned child: it sends what it serves (its
    ports) over ``conn``, then answers ``"cpu"`` until ``"stop"``."""

    def __init__(self, target: Callable[..., None], *args: Any) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=target, args=(child, *args), daemon=True)
        self._process.start()
        self.served = self._conn.recv()

    def cpu(self) -> float:
        """The child's CPU seconds (user + system) so far."""
        self._conn.send("cpu")
        return float(self._conn.recv())

    def stop(self) -> None:
        self._conn.send("stop")
        self._process.join(10)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def answer_until_stopped(conn: Connection) -> None:
    """The child's side of the pipe, once it has sent what it serves."""
    while True:
        if conn.recv() == "stop":
            return
        conn.send(time.process_time())


def run_loop_in_thread(loop: asyncio.AbstractEventLoop) -> None:
    threading.Thread(target=loop.run_forever, daemon=True).start()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """Read one HTTP/1.1 request (head and ``Content-Length`` body); its request
    line, or b"" at the end of the connection."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return b""
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length:
        await reader.readexactly(length)
    return head.split(b"\r\n", 1)[0]


def reserve_ports(
    hang: int, refuse: int
) -> Tuple[List[socket.socket], List[socket.socket]]:
    """Sockets that listen and never accept (the kernel completes the handshake
    into a large backlog, then nothing answers), and sockets bound but not
    listening (a connection is refused, and no other program takes the port)."""
    hanging = [
        socket.create_server(("127.0.0.1", 0), backlog=1024) for _ in range(hang)
    ]
    refusing = []
    for _ in range(refuse):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        refusing.append(sock)
    return hanging, refusing


def port_of(sock: socket.socket) -> int:
    return int(sock.getsockname()[1])
