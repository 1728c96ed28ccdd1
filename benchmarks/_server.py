"""A loopback server for the benchmarks, in a process of its own.

It serves OpenAI-style event streams fast enough not to be what is measured: each
reply is built once, framed one event per HTTP chunk, and written with one
``sendall``. The request's ``model`` names the stream. Running in its own process, it
takes no share of the client's interpreter lock, and the client's CPU time
(``time.process_time()``) is the relay's alone.

The process listens on 127.0.0.1 only, prints its port, and exits when its standard
input closes (the benchmark ends, however it ends) or after ``LIFETIME`` seconds.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from contextlib import contextmanager
from typing import Dict, Iterator, List

LIFETIME = 900.0
MB = 1 << 20


def event(content: str) -> bytes:
    chunk = {"choices": [{"index": 0, "delta": {"content": content}}]}
    return b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n"


def token_event(size: int = 60) -> bytes:
    """One token event of ``size`` bytes, as engines send them."""
    return event("x" * (size - len(event(""))))


def ending(completion_tokens: int) -> List[bytes]:
    usage = {
        "choices": [],
        "usage": {"prompt_tokens": 9, "completion_tokens": completion_tokens},
    }
    return [b"data: " + json.dumps(usage).encode() + b"\n\n", b"data: [DONE]\n\n"]


def bulk(total: int = 30 * MB) -> List[bytes]:
    """4 KB events, each followed by a run of 20 token events."""
    big, small = event("y" * (4096 - len(event("")))), token_event()
    events: List[bytes] = []
    size = 0
    while size < total:
        events.append(big)
        events.extend([small] * 20)
        size += len(big) + 20 * len(small)
    return events + ending(len(events))


def tokens(total: int = 5 * MB, size: int = 60) -> List[bytes]:
    count = total // size
    return [token_event(size)] * count + ending(count)


STREAMS = {
    "bulk": bulk,
    "tokens": tokens,
    "tokens77": lambda: tokens(size=77),
    "tiny": lambda: tokens(total=600),
    "medium": lambda: tokens(total=200 * 60),
}


def framed(events: List[bytes]) -> bytes:
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
        b"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    body = b"".join(b"%x\r\n%s\r\n" % (len(e), e) for e in events)
    return head + body + b"0\r\n\r\n"


def _serve_connection(conn: socket.socket, replies: Dict[str, bytes]) -> None:
    buffered = b""
    with conn:
        while True:
            while b"\r\n\r\n" not in buffered:
                data = conn.recv(65536)
                if not data:
                    return
                buffered += data
            head, buffered = buffered.split(b"\r\n\r\n", 1)
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            while len(buffered) < length:
                data = conn.recv(65536)
                if not data:
                    return
                buffered += data
            body, buffered = buffered[:length], buffered[length:]
            model = json.loads(body or b"{}").get("model", "tiny")
            conn.sendall(replies[model])


def main() -> None:
    replies = {name: framed(make()) for name, make in STREAMS.items()}
    listener = socket.create_server(("127.0.0.1", 0), backlog=1024)
    print(listener.getsockname()[1], flush=True)

    def stop_when_orphaned() -> None:
        sys.stdin.read()  # returns when the benchmark closes our stdin
        os._exit(0)

    threading.Thread(target=stop_when_orphaned, daemon=True).start()
    threading.Timer(LIFETIME, os._exit, (0,)).start()
    while True:
        conn, _ = listener.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(
            target=_serve_connection, args=(conn, replies), daemon=True
        ).start()


@contextmanager
def serving() -> Iterator[str]:
    """The base URL of a benchmark server running for the ``with`` block."""
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks._server"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        yield f"http://127.0.0.1:{port}"
    finally:
        assert process.stdin is not None
        process.stdin.close()
        process.wait(10)


if __name__ == "__main__":
    main()
