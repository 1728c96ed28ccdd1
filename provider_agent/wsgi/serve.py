"""``serve``: run a ``Gateway`` under waitress, a pure-Python production WSGI server.

waitress is an optional extra (``pip install 'provider-agent[serve]'``); any other
WSGI server runs a ``Gateway`` as well (see docs/web-apps.md). The server gets one
thread per job the fleet may run, plus a few so that health checks, model listings
and "full" replies are answered while every job thread streams.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Any, Callable, List, Optional

from .app import Gateway

__all__ = [
    "SPARE_THREADS",
    "MissingExtraError",
    "is_loopback",
    "make_server",
    "serve",
    "server_urls",
    "threads_for",
]

log = logging.getLogger("provider_agent.wsgi")

#: Threads beyond the fleet's ``max_concurrent``, for requests that run no job.
SPARE_THREADS = 4


class MissingExtraError(ImportError):
    """waitress is not installed."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` is only reachable from this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def threads_for(gateway: Gateway) -> int:
    """The server threads a gateway needs: one per job, and spares."""
    return gateway.fleet.max_concurrent + SPARE_THREADS


def make_server(
    gateway: Gateway,
    host: str = "127.0.0.1",
    port: int = 8787,
    *,
    threads: Optional[int] = None,
) -> Any:
    """A waitress server for ``gateway``, bound but not yet running (``.run()``;
    ``server_urls(server)`` says where, when ``port`` was 0).

    Raises ``ValueError`` for a host other than loopback when the gateway has no
    token: a gateway holding API keys must not be open to whoever reaches it;
    ``MissingExtraError`` without waitress; ``OSError`` when the port is taken.
    """
    if not is_loopback(host) and not gateway.requires_auth:
        raise ValueError(
            f"refusing to serve on {host} without a token: anyone who reaches "
            "the port could spend the fleet's API keys; set one "
            "(--auth-token-env) or bind to 127.0.0.1"
        )
    try:
        import waitress.server
    except ImportError:
        raise MissingExtraError(
            "serving needs waitress: pip install 'provider-agent[serve]'"
        ) from None
    count = threads if threads is not None else threads_for(gateway)
    return waitress.server.create_server(
        gateway,
        host=host,
        port=port,
        threads=count,
        ident="provider-agent",
        # Bounds what waitress buffers before the gateway sees the request; the
        # gateway answers bodies over its own limit (and up to this) with a 413.
        max_request_body_size=2 * gateway.max_body_bytes,
        connection_limit=max(100, 2 * count),
        clear_untrusted_proxy_headers=True,
    )


def server_urls(server: Any) -> List[str]:
    """The URL of each socket a ``make_server`` server listens on: waitress binds
    one per address the host resolves to (localhost: 127.0.0.1 and ::1 on many
    systems), and with port 0 each has a port of its own."""
    listening = getattr(server, "effective_listen", None)  # two sockets or more
    if listening is None:
        listening = [(server.effective_host, server.effective_port)]
    urls = []
    for host, port in listening:
        shown = f"[{host}]" if ":" in str(host) else host
        urls.append(f"http://{shown}:{port}")
    return urls


def serve(
    gateway: Gateway,
    host: str = "127.0.0.1",
    port: int = 8787,
    *,
    threads: Optional[int] = None,
    ready: Optional[Callable[[str], None]] = None,
) -> None:
    """Serve ``gateway`` until interrupted; then close it (and the fleet, if the
    gateway owns it). ``ready`` is called with the (first) URL once the port is
    bound and the fleet's first discovery is done."""
    server = make_server(gateway, host, port, threads=threads)
    try:
        gateway.fleet.start()
        urls = server_urls(server)
        log.info("serving %r on %s", gateway, " and ".join(urls))
        if ready is not None:
            ready(urls[0])
        server.run()
    finally:
        server.close()
        gateway.close()
