"""``serve``: run a ``Gateway`` under waitress, a pure-Python production WSGI server.

waitress is an optional extra (``pip install 'provider-agent[serve]'``); any other
WSGI server runs a ``Gateway`` as well (see docs/web-apps.md). The server gets one
thread per job the fleet may run, plus a few so that health checks, model listings
and "full" replies are answered while every job thread streams.
"""

from __future__ import annotations

import ipaddress
import logging
import signal
import threading
from typing import Any, Callable, Dict, Optional

from .app import Gateway

__all__ = [
    "SPARE_THREADS",
    "MissingExtraError",
    "is_loopback",
    "make_server",
    "run",
    "serve",
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
    ``.effective_port`` is the port, when ``port`` was 0).

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
        # Bounds what waitress buffers before the gateway sees the request. The
        # gateway answers a body over its own limit with a 413 in the client's
        # format; one over this too gets waitress's own plain-text 413.
        max_request_body_size=gateway.max_body_bytes + 1024 * 1024,
        connection_limit=max(100, 2 * count),
        clear_untrusted_proxy_headers=True,
    )


def serve(
    gateway: Gateway,
    host: str = "127.0.0.1",
    port: int = 8787,
    *,
    threads: Optional[int] = None,
    ready: Optional[Callable[[str], None]] = None,
) -> None:
    """Serve ``gateway`` until interrupted (Ctrl-C, or SIGTERM in the main
    thread); ``make_server`` and ``run`` in one call."""
    run(make_server(gateway, host, port, threads=threads), gateway, ready=ready)


def run(
    server: Any, gateway: Gateway, *, ready: Optional[Callable[[str], None]] = None
) -> None:
    """Run ``server`` (from ``make_server``) until interrupted; then close it
    and the gateway (and the fleet, if the gateway owns it).

    The fleet's first discovery is done before ``ready`` is called with the
    URL. In the main thread, Ctrl-C and SIGTERM first cancel the jobs still
    streaming (their clients get an error event), so that the server's threads
    end at once rather than after waitress's grace period.
    """
    restore = _stop_on_signals(gateway) if _in_main_thread() else {}
    try:
        gateway.fleet.start()
        bound = server.effective_host
        shown = f"[{bound}]" if ":" in str(bound) else bound
        url = f"http://{shown}:{server.effective_port}"
        log.info("serving %r on %s", gateway, url)
        if ready is not None:
            ready(url)
        server.run()  # returns on SystemExit and KeyboardInterrupt
    finally:
        for signum, handler in restore.items():
            signal.signal(signum, handler)
        gateway.close()
        server.close()
        server.task_dispatcher.shutdown()


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _stop_on_signals(gateway: Gateway) -> Dict[int, Any]:
    def stop(signum: int, frame: Any) -> None:
        gateway.fleet.close(timeout=5.0)
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(0)

    previous: Dict[int, Any] = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        previous[signum] = signal.signal(signum, stop)
    return previous
