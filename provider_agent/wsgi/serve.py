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
from typing import Any, Callable, List, Optional

from .app import Gateway

__all__ = [
    "SPARE_THREADS",
    "MissingExtraError",
    "is_loopback",
    "make_server",
    "run",
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
        # Bounds what waitress buffers before the gateway sees the request. The
        # gateway answers a body over its own limit with a 413 in the client's
        # format; one over this too gets waitress's own plain-text 413.
        max_request_body_size=gateway.max_body_bytes + 1024 * 1024,
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
) -> Optional[int]:
    """Serve ``gateway`` until interrupted: ``make_server`` and ``run`` in one
    call. The signal that stopped it, if one did."""
    return run(make_server(gateway, host, port, threads=threads), gateway, ready=ready)


def run(
    server: Any, gateway: Gateway, *, ready: Optional[Callable[[str], None]] = None
) -> Optional[int]:
    """Run ``server`` (from ``make_server``) until interrupted; then close the
    gateway (and the fleet, if the gateway owns it) and the server. ``ready``
    is called with the (first) URL once the fleet's first discovery is done.

    In the main thread, Ctrl-C and SIGTERM stop it, and return their number.
    They cancel the jobs still streaming first (their clients get an error
    event): waitress catches the exit and then waits up to 5 s for its
    threads, which would stream on until their jobs were cancelled.
    """
    stop = _Stop(gateway)
    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {signum: signal.signal(signum, stop) for signum in STOP_SIGNALS}
    try:
        gateway.fleet.start()
        urls = server_urls(server)
        log.info("serving %r on %s", gateway, " and ".join(urls))
        if ready is not None:
            ready(urls[0])
        server.run()  # returns on SystemExit and KeyboardInterrupt
    except SystemExit:
        if stop.signum is None:
            raise  # not ours
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        stop.close_gateway()
        server.close()
        server.task_dispatcher.shutdown()
    return stop.signum


#: SIGTERM (a service manager's stop) and Ctrl-C.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class _Stop:
    """The handler of the stop signals: cancel every job, and end the server.

    The cancelling runs on a thread of its own (a signal handler must not wait
    on the fleet's locks, which the interrupted code may hold).
    """

    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway
        self._closer: Optional[threading.Thread] = None
        self.signum: Optional[int] = None

    def __call__(self, signum: int, frame: Any) -> None:
        if self._closer is None:
            self.signum = signum
            self._closer = threading.Thread(
                target=self._stop, name="provider-agent-stop", daemon=True
            )
            self._closer.start()
        raise SystemExit(0)

    def _stop(self) -> None:
        self._gateway.cancel_streams()  # also of a fleet the gateway does not own
        self._gateway.close()

    def close_gateway(self) -> None:
        """Close the gateway, or wait until the signal's closing of it ends."""
        if self._closer is not None:
            self._closer.join()
        else:
            self._gateway.close()
