"""The docs' example web apps under a real WSGI server, for the integration tests.

``served(framework, server, config)`` runs ``docs/examples/<framework>_app.py``
under waitress or gunicorn (gthread workers) in a process group of its own, on a
free 127.0.0.1 port, with ``$PROVIDER_AGENT_CONFIG`` naming ``config``; it is
ready once the mounted gateway's ``/fleet/health`` answers 200 (a backend is
up), and on leaving it is stopped (SIGTERM, then SIGKILL) and must leave no
process behind. The server imports the ``provider_agent`` the tests import: the
working tree's, or the one tox installed.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Dict, Iterator, List, Set

from ..processes import free_port, package_path
from .engines import ROOT, Engine, live_processes

EXAMPLES = ROOT / "docs" / "examples"
APPS = {"flask": "flask_app:app", "django": "django_app:application"}
SERVERS = ("waitress", "gunicorn")
#: Server threads: the fleet's default max_concurrent (8) and spares.
THREADS = 12


def write_config(directory: Path, url: str) -> Path:
    """An ``agent.toml`` with one llama-server at ``url``."""
    path = directory / "agent.toml"
    path.write_text(f'[[backends]]\nkind = "llamacpp"\nurl = "{url}"\n')
    return path


def _command(server: str, app: str, port: int, options: List[str]) -> List[object]:
    if server == "waitress":
        listen = ["--listen", f"127.0.0.1:{port}", "--threads", THREADS]
        return [sys.executable, "-m", "waitress", *listen, *options, app]
    if server == "gunicorn":
        bind = ["--bind", f"127.0.0.1:{port}", "-k", "gthread", "--threads", THREADS]
        bind += ["--access-logfile", "-", *_no_control_socket()]
        return [sys.executable, "-m", "gunicorn", *bind, *options, app]
    raise ValueError(f"no server {server!r}")


def _no_control_socket() -> List[str]:
    """The option that turns off gunicorn's control socket, in the versions that
    have one: it is served by a thread of the master, at one path per user
    ($HOME/.gunicorn/gunicorn.ctl) that servers running at once would share."""
    import gunicorn.config

    if hasattr(gunicorn.config, "ControlSocketDisable"):
        return ["--no-control-socket"]
    return []


class WsgiServer(Engine):
    """One example app under one WSGI server (an ``Engine``: the same start,
    stop and clean-up)."""

    def __init__(
        self, framework: str, server: str, config: Path, *options: str
    ) -> None:
        port = free_port()
        env = {
            "PROVIDER_AGENT_CONFIG": str(config),
            "PYTHONPATH": package_path(),  # the package the tests import, first
            "PYTHONUNBUFFERED": "1",
        }
        super().__init__(
            f"{server}-{framework}",
            _command(server, APPS[framework], port, list(options)),
            port=port,
            env=env,
            health_path="/fleet/health",
            cwd=EXAMPLES,
        )


@contextlib.contextmanager
def served(
    framework: str, server: str, config: Path, *options: str
) -> Iterator[WsgiServer]:
    site = WsgiServer(framework, server, config, *options)
    site.start()
    try:
        yield site
    finally:
        site.stop()
    assert site.stopped_clean, f"{site.name} left processes behind"


def get(url: str) -> Any:
    """The JSON document at ``url``, whatever its status (``/health`` says 503
    when no backend is up)."""
    try:
        with urllib.request.urlopen(url, timeout=30) as reply:
            return json.load(reply)
    except urllib.error.HTTPError as exc:
        with exc:
            return json.load(exc)


class RawStream:
    """A streaming request on a plain socket, which can hang up at any point."""

    def __init__(self, port: int, path: str, body: Dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Content-Type: application/json\r\nAccept: text/event-stream\r\n"
            f"Content-Length: {len(data)}\r\n\r\n"
        )
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.sendall(head.encode() + data)
        self.received = bytearray()

    def read_events(self, count: int) -> bytes:
        """Read until ``count`` data events arrived; everything received."""
        while self.received.count(b"data: ") < count:
            chunk = self.sock.recv(65536)
            assert chunk, f"the server ended the reply early: {bytes(self.received)!r}"
            self.received += chunk
        assert self.received.startswith(b"HTTP/1.1 200 "), bytes(self.received[:300])
        return bytes(self.received)

    def close(self) -> None:
        self.sock.close()


def children(pid: int) -> List[int]:
    """The pids of ``pid``'s live child processes."""
    return sorted(child for child, parent, _ in live_processes() if parent == pid)


def thread_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def connections_to(port: int, pids: List[int]) -> Dict[int, Set[int]]:
    """The socket inodes of each of ``pids``' TCP connections to 127.0.0.1:``port``
    (from ``/proc/net/tcp`` and each process's ``/proc/<pid>/fd``)."""
    wanted = f"0100007F:{port:04X}"
    inodes = set()
    with open("/proc/net/tcp") as table:
        next(table)  # the header
        for line in table:
            fields = line.split()
            # remote address, state (01 is ESTABLISHED), ..., inode
            if fields[2] == wanted and fields[3] == "01":
                inodes.add(int(fields[9]))
    held: Dict[int, Set[int]] = {}
    for pid in pids:
        held[pid] = set()
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue  # closed meanwhile
            if target.startswith("socket:["):
                inode = int(target[len("socket:[") : -1])
                if inode in inodes:
                    held[pid].add(inode)
    return held
