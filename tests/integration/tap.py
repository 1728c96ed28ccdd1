"""A recording TCP relay: what the engine really sent, to compare with the SDK.

``Tap(port)`` listens on a free 127.0.0.1 port and forwards every connection
to the engine's port, keeping a copy of the bytes each side sent. The SDK is
pointed at the tap; a test then holds the engine's raw HTTP replies, decodes
their chunked framing, and compares the body with what the SDK relayed.
"""

from __future__ import annotations

import socket
import threading
from typing import List, Optional, Tuple


class Connection:
    """One client connection through the tap and what crossed it."""

    def __init__(self) -> None:
        self.upstream = bytearray()  # engine -> client
        self.downstream = bytearray()  # client -> engine
        self.closed = threading.Event()


class Tap:
    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.connections: List[Connection] = []
        self._sockets: List[socket.socket] = []
        self._lock = threading.Lock()
        self._running = True
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()

    def _accept(self) -> None:
        while self._running:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            engine = socket.create_connection(self.target)
            for sock in (client, engine):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            record = Connection()
            with self._lock:
                self.connections.append(record)
                self._sockets += [client, engine]
            done = threading.Barrier(2, action=record.closed.set)
            for source, sink, log in (
                (engine, client, record.upstream),
                (client, engine, record.downstream),
            ):
                threading.Thread(
                    target=_pump, args=(source, sink, log, done), daemon=True
                ).start()

    def replies(self) -> List[bytes]:
        """Every connection's engine-to-client bytes so far."""
        with self._lock:
            return [bytes(c.upstream) for c in self.connections]

    def close(self) -> None:
        """Stop listening and cut every connection still open."""
        self._running = False
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        except OSError:
            pass
        self.listener.close()
        self._acceptor.join(5)
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _pump(
    source: socket.socket, sink: socket.socket, log: bytearray, done: threading.Barrier
) -> None:
    try:
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                data = b""
            if not data:
                break
            log.extend(data)
            try:
                sink.sendall(data)
            except OSError:
                break
    finally:
        for sock in (sink, source):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        try:
            done.wait(timeout=5)
        except threading.BrokenBarrierError:
            pass
        source.close()


def split_reply(raw: bytes) -> Tuple[bytes, bytes, bytes]:
    """One HTTP reply: (status line and headers, decoded body, what follows).

    Handles ``Content-Length`` and ``chunked`` bodies, as the engines send them.
    """
    head, sep, rest = raw.partition(b"\r\n\r\n")
    if not sep:
        raise ValueError("no complete header block")
    headers = head.lower()
    length = _content_length(headers)
    if length is not None:
        return head, rest[:length], rest[length:]
    if b"transfer-encoding: chunked" not in headers:
        return head, rest, b""  # read to EOF
    body = bytearray()
    while True:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            _, _, rest = rest.partition(b"\r\n")  # no trailers expected
            return head, bytes(body), rest
        body += rest[:size]
        rest = rest[size + 2 :]


def _content_length(headers: bytes) -> Optional[int]:
    for line in headers.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip() == b"content-length":
            return int(value.strip())
    return None


def bodies(raw: bytes) -> List[Tuple[bytes, bytes]]:
    """Every (head, body) of the replies on one connection, in order."""
    replies = []
    while raw:
        head, body, raw = split_reply(raw)
        replies.append((head, body))
    return replies


def event_streams(tap: Tap) -> List[bytes]:
    """The bodies of the event streams the engine sent through ``tap`` (it also
    carries the probes and listings of whoever is in front)."""
    return [
        body
        for reply in tap.replies()
        for head, body in bodies(reply)
        if b"text/event-stream" in head.lower()
    ]
