"""A small threaded HTTP/1.1 server on 127.0.0.1 that plays scripted replies.

A route is a function of a ``Reply`` object, which writes the status line, headers,
body chunks (chunked or raw), pauses, waits for events set by the test, and can
reset the connection. Every request is recorded (method, path, headers, body) so
tests can check exactly what reached the server.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple, Union


@dataclass
class Request:
    method: str
    path: str
    headers: Dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Reply:
    """What a route uses to answer one request."""

    def __init__(self, handler: _Handler) -> None:
        self._h = handler
        self._chunked = False

    @property
    def request(self) -> Request:
        return self._h.recorded

    @property
    def nth_on_connection(self) -> int:
        """1 for the first request on its connection, 2 for the next, ..."""
        return self._h.served

    def start(
        self,
        status: int = 200,
        headers: Optional[Dict[str, str]] = None,
        *,
        chunked: bool = True,
        content_type: Optional[str] = "text/event-stream",
        length: Optional[int] = None,
    ) -> None:
        """Send the status line and headers. Without ``chunked`` and ``length``
        the body runs until the connection closes."""
        self._h.send_response_only(status)
        all_headers = dict(headers or {})
        if content_type is not None:
            all_headers.setdefault("Content-Type", content_type)
        self._chunked = chunked and length is None
        if self._chunked:
            all_headers["Transfer-Encoding"] = "chunked"
        elif length is not None:
            all_headers["Content-Length"] = str(length)
        else:
            all_headers["Connection"] = "close"
            self._h.close_connection = True
        for name, value in all_headers.items():
            self._h.send_header(name, value)
        self._h.end_headers()
        self._h.wfile.flush()

    def write(self, data: bytes) -> None:
        """One body chunk, framed when the reply is chunked, flushed at once."""
        if self._chunked:
            data = b"%x\r\n%s\r\n" % (len(data), data) if data else b""
        if data:
            self._h.wfile.write(data)
            self._h.wfile.flush()

    def raw(self, data: bytes) -> None:
        """Bytes straight onto the socket, with no framing."""
        self._h.wfile.write(data)
        self._h.wfile.flush()

    def end(self) -> None:
        if self._chunked:
            self._h.wfile.write(b"0\r\n\r\n")
            self._h.wfile.flush()

    def reset(self) -> None:
        """Abort the connection with a TCP RST."""
        sock = self._h.connection
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
        self._h.close_connection = True

    def close(self) -> None:
        """Close the connection without finishing the reply."""
        try:
            self._h.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._h.close_connection = True


Route = Callable[[Reply], None]
Step = Union[bytes, float, threading.Event]


class ScriptedServer:
    """Serves scripted routes on 127.0.0.1:<free port> from a background thread."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.routes: Dict[Tuple[str, str], Route] = {}
        self.requests: List[Request] = []
        self.connections = 0
        self.stopping = threading.Event()
        server = ThreadingHTTPServer((host, port), _Handler)
        server.daemon_threads = True
        server.scripted = self  # type: ignore[attr-defined]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self._server.server_address[0]}:{self.port}"

    def route(self, method: str, path: str, fn: Route) -> None:
        self.routes[(method, path)] = fn

    def json(
        self,
        method: str,
        path: str,
        payload: Any,
        status: int = 200,
        headers: Optional[Dict[str, str]] = None,
    ) -> None:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()

        def send(reply: Reply) -> None:
            reply.start(
                status, headers, content_type="application/json", length=len(body)
            )
            reply.raw(body)

        self.route(method, path, send)

    def stream(
        self,
        method: str,
        path: str,
        steps: Iterable[Step],
        status: int = 200,
        headers: Optional[Dict[str, str]] = None,
        chunked: bool = True,
    ) -> None:
        """A streamed reply: bytes are written (one chunk each), floats pause,
        events are waited for (up to 10 s)."""
        steps = list(steps)

        def send(reply: Reply) -> None:
            reply.start(status, headers, chunked=chunked)
            for step in steps:
                if isinstance(step, bytes):
                    reply.write(step)
                elif isinstance(step, threading.Event):
                    step.wait(10)
                else:
                    time.sleep(step)
            reply.end()

        self.route(method, path, send)

    def last(self, path: Optional[str] = None) -> Request:
        matching = [r for r in self.requests if path is None or r.path == path]
        return matching[-1]

    def stop(self) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    recorded: Request
    served = 0  # requests read on this connection

    def setup(self) -> None:
        super().setup()
        # Real servers write each event at once; without this, Nagle's algorithm
        # holds a small write until the client's delayed ACK (~40 ms).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.scripted.connections += 1  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _serve(self) -> None:
        scripted: ScriptedServer = self.server.scripted  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path = self.path
        self.recorded = Request(self.command, path, dict(self.headers.items()), body)
        self.served += 1
        scripted.requests.append(self.recorded)
        route = scripted.routes.get((self.command, path.split("?", 1)[0]))
        if route is None:
            reply = Reply(self)
            payload = b'{"error":"no such route"}'
            reply.start(404, content_type="application/json", length=len(payload))
            reply.raw(payload)
            return
        try:
            route(Reply(self))
        except (BrokenPipeError, ConnectionResetError, OSError):
            self.close_connection = True

    do_GET = do_POST = do_HEAD = _serve
