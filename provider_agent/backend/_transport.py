"""The HTTP layer every backend shares: one session, watched sockets, one error ladder.

Every network call of the package goes through ``Transport``; every exception that
``requests``, ``urllib3``, ``http.client`` or the socket layer raises during a call
is translated to a ``BackendError`` by ``translate``, and nowhere else.
"""

from __future__ import annotations

import http.client
import logging
import socket
import threading
from functools import partial
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Type

import requests
import urllib3
from requests import exceptions as rex
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from .. import __version__
from ._fork import renew_after_fork
from ._secret import E, Secret, mentions, scrub
from ._watch import Watch
from .errors import (
    BackendError,
    BackendTimeoutError,
    ProtocolError,
    StreamError,
    TransportError,
    UnreachableError,
)

log = logging.getLogger(__name__)

#: Exceptions that mean "the network call failed"; anything else is a bug and
#: keeps its traceback.
NETWORK_ERRORS: Tuple[Type[BaseException], ...] = (
    rex.RequestException,
    urllib3.exceptions.HTTPError,
    http.client.HTTPException,
    OSError,
)

#: How often a request to a local engine goes out again after its kept-alive
#: connection turned out to be closed by the server (each retry takes another
#: pooled connection, which may be stale too, or opens a new one). Remote APIs
#: are never retried: a request that did reach them may be billed twice.
STALE_RETRIES = 2

#: How much one read of a stream asks for; it returns whatever has arrived.
READ_SIZE = 65536
#: The longest chunk-size line of a chunked body (urllib3's limit).
MAX_CHUNK_LINE = 65536

_current = threading.local()


class _WatchedConnection:
    """Hands its socket to the calling thread's Watch while a call uses it.

    The socket is attached when the connection is made or reused (so sending the
    body and waiting for headers are covered too), and detached when urllib3
    returns the connection to the pool, which can happen inside the read that
    finishes a body: from then on another job may own the socket, and a late
    deadline or cancel of this one must not touch it.
    """

    sock: Any
    _watch: Optional[Watch] = None
    _replies = 0  # replies read on this connection so far

    def _attach(self) -> None:
        watch = getattr(_current, "watch", None)
        if watch is not None and self.sock is not None:
            self._watch = watch
            watch.attach(self.sock)

    def detach(self) -> None:
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.detach(self.sock)

    def connect(self) -> None:
        # urllib3 reconnects a pooled connection it found dropped on the same
        # object: the new socket has served nothing yet.
        self._replies = 0
        _current.reused = False
        super().connect()  # type: ignore[misc]
        self._attach()

    def request(self, *args: Any, **kwargs: Any) -> Any:
        self._attach()  # a reused connection; a new one attaches in connect()
        _current.reused = self._replies > 0
        return super().request(*args, **kwargs)  # type: ignore[misc]

    def getresponse(self, *args: Any, **kwargs: Any) -> Any:
        self._attach()
        response = super().getresponse(*args, **kwargs)  # type: ignore[misc]
        self._replies += 1
        return response


class _PoolReturn:
    def _put_conn(self, conn: Any) -> None:
        if isinstance(conn, _WatchedConnection):
            conn.detach()
        super()._put_conn(conn)  # type: ignore[misc]


class _HTTPConnection(_WatchedConnection, HTTPConnection):
    pass


class _HTTPSConnection(_WatchedConnection, HTTPSConnection):
    pass


class _HTTPPool(_PoolReturn, HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(_PoolReturn, HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


def _watched(manager: Any) -> Any:
    # SOCKS managers bring their own pool classes; leave those alone. Their
    # calls are then bounded by socket timeouts cut to the deadline, and the
    # deadline is checked between reads, but a trickle is not cut mid-read.
    if type(manager) in (urllib3.PoolManager, urllib3.ProxyManager):
        manager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}
    return manager


class _Adapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        _watched(self.poolmanager)

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
        return _watched(super().proxy_manager_for(proxy, **kwargs))


def _root_cause(exc: BaseException) -> BaseException:
    """The innermost exception behind ``exc``, following urllib3's wrappers."""
    seen = {id(exc)}
    while True:
        inner: Optional[BaseException] = getattr(exc, "reason", None)
        if not isinstance(inner, BaseException):
            first = exc.args[0] if exc.args else None
            inner = first if isinstance(first, BaseException) else None
        if inner is None:
            inner = exc.__cause__ or exc.__context__
        if inner is None or id(inner) in seen:
            return exc
        seen.add(id(inner))
        exc = inner


def _describe(exc: BaseException) -> str:
    root = _root_cause(exc)
    if isinstance(root, OSError) and root.strerror:
        text = root.strerror
    else:
        text = str(root) or type(root).__name__
    # urllib3 prefixes "<connection object at 0x...>: "; keep what follows.
    if ">: " in text:
        text = text.rsplit(">: ", 1)[1]
    return text[:200]


def translate(
    exc: BaseException,
    backend: str,
    watch: Optional[Watch] = None,
    relayed: Optional[int] = None,
) -> BackendError:
    """Map a network failure to the package's error tree.

    ``watch`` says whether the failure was our own doing (deadline or cancel);
    ``relayed`` is the number of stream bytes already handed over, or None before the
    stream started: a failure after bytes were relayed is a ``StreamError``.
    """
    if isinstance(exc, BackendError):
        return exc
    stopped = watch.stop_error(backend) if watch is not None else None
    if stopped is not None:
        return stopped
    detail = _describe(exc)
    # Most specific first: requests' classes, then urllib3's, then the stdlib's.
    if isinstance(exc, rex.ConnectTimeout):
        return UnreachableError(backend, f"connect timed out: {detail}")
    if isinstance(
        exc,
        (
            rex.Timeout,
            urllib3.exceptions.ReadTimeoutError,
            socket.timeout,  # not yet an alias of TimeoutError on Python 3.9
            TimeoutError,
        ),
    ):
        return BackendTimeoutError(backend, "no data within the read timeout")
    if isinstance(
        exc,
        (
            rex.ContentDecodingError,
            rex.JSONDecodeError,
            urllib3.exceptions.DecodeError,
        ),
    ):
        return ProtocolError(backend, f"undecodable body: {detail}")
    if isinstance(exc, (rex.SSLError, urllib3.exceptions.SSLError)):
        return TransportError(backend, f"TLS error: {detail}")
    if isinstance(exc, rex.ProxyError):
        return UnreachableError(backend, f"proxy failed: {detail}")
    if isinstance(exc, rex.ConnectionError) and isinstance(
        _reason(exc), urllib3.exceptions.NewConnectionError
    ):
        return UnreachableError(backend, f"cannot connect: {detail}")
    if isinstance(exc, (rex.InvalidURL, rex.InvalidSchema, rex.MissingSchema)):
        return TransportError(backend, f"invalid URL: {detail}")
    if relayed:
        return StreamError(
            backend, f"connection failed after {relayed} bytes: {detail}", relayed
        )
    return TransportError(backend, f"connection failed: {detail}")


def _reason(exc: BaseException) -> Optional[BaseException]:
    first = exc.args[0] if exc.args else None
    reason = getattr(first, "reason", None)
    return reason if isinstance(reason, BaseException) else None


class _ChunkReader:
    """A chunked body, one list of HTTP chunks per call, as ``iter_content(None)``
    would yield them one by one.

    A call waits for at most one read of the socket. It takes every chunk that
    is already whole in http.client's buffer: one loop over the buffered bytes
    (a size line, a slice), rather than a read call and a size-line call per
    chunk, which cost more than the rest of the relay on an engine's token
    events. When the buffer holds no whole chunk, it reads one chunk the slow
    way, a size line and one read, which also refills the buffer. The last
    chunk is left to urllib3 (it reads the trailers and returns the connection
    to the pool); a bad size line fails as it does there.
    """

    def __init__(self, raw: Any) -> None:
        self._raw = raw
        self._message = raw._fp  # http.client's response; its fp reads the socket
        self._chunks = raw.read_chunked(None, decode_content=False)

    def __call__(self) -> List[bytes]:
        fp = self._message.fp
        if fp is None:  # closed
            return self._last()
        buffered: bytes = fp.peek()  # what is in, or one read's worth
        chunks: List[bytes] = []
        at, end = 0, len(buffered)
        while True:
            # A size line as readline() cuts it: to its first LF.
            line_end = buffered.find(b"\n", at, at + MAX_CHUNK_LINE)
            if line_end < 0:
                break
            try:
                size = int(buffered[at:line_end], 16)
            except ValueError:
                break  # an extension, or a bad line: the slow way says which
            start = line_end + 1
            stop = start + size
            if size <= 0 or stop + 2 > end:
                break  # the last chunk, or one not all in yet
            chunks.append(buffered[start:stop])
            at = stop + 2  # past the chunk's CRLF
        if chunks:
            fp.read(at)  # consumed: served from the buffer, no socket read
            return chunks
        return self._one(fp)

    def _one(self, fp: Any) -> List[bytes]:
        line = fp.readline(MAX_CHUNK_LINE + 1)
        size = self._size(line)
        if size == 0:
            self._raw.chunk_left = 0
            return self._last()
        data: bytes = fp.read(size + 2)  # the chunk and its CRLF
        if len(data) < size + 2:
            raise http.client.IncompleteRead(data[:size], size + 2 - len(data))
        return [data[:-2]]

    def _last(self) -> List[bytes]:
        data = next(self._chunks, b"")
        return [data] if data else []

    def _size(self, line: bytes) -> int:
        if len(line) <= MAX_CHUNK_LINE:
            try:
                size = int(line.split(b";", 1)[0], 16)
            except ValueError:
                size = -1
            if size >= 0:
                return size
        self._raw.close()
        if not line:
            raise urllib3.exceptions.ProtocolError("Response ended prematurely")
        raise urllib3.exceptions.InvalidChunkLength(self._raw, line)


def _read1(raw: Any) -> List[bytes]:
    data: bytes = raw.read1(READ_SIZE)
    return [data] if data else []


def _no_auth(request: requests.PreparedRequest) -> requests.PreparedRequest:
    return request


class Transport:
    """One ``requests.Session`` for one backend, and the reads on its replies.

    Safe to share between threads: the session is configured once and never
    changed afterwards (a forked child gets a new one); each call carries its
    own Watch.
    """

    def __init__(
        self,
        backend_id: str,
        base_url: str,
        *,
        connect_timeout: float,
        read_timeout: float,
        trust_env: bool,
        secret: Optional[Secret] = None,
        pool_maxsize: int = 32,
        retry_stale: bool = False,
    ) -> None:
        self.backend_id = backend_id
        self.retry_stale = retry_stale
        self._secret = secret
        self.base_url = base_url
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._trust_env = trust_env
        self._pool_maxsize = pool_maxsize
        self.session = self._new_session()
        renew_after_fork(self)

    def _new_session(self) -> requests.Session:
        session = requests.Session()
        session.trust_env = self._trust_env
        # With trust_env, requests would fill Authorization from ~/.netrc, over
        # the backend's own key; a no-op auth keeps the key the only credential.
        session.auth = _no_auth
        adapter = _Adapter(pool_connections=1, pool_maxsize=self._pool_maxsize)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        # identity: the relay hands over the bytes the server wrote, not a
        # compressed form of them.
        session.headers.update(
            {
                "User-Agent": f"provider-agent/{__version__}",
                "Accept-Encoding": "identity",
            }
        )
        return session

    def _after_fork(self) -> None:
        # The pooled sockets are the parent's too: never send on them here.
        # They are dropped, not closed, so no shutdown reaches the parent's.
        self.session = self._new_session()

    def open(
        self,
        method: str,
        path: str,
        watch: Watch,
        *,
        body: Optional[bytes] = None,
        headers: Optional[Mapping[str, str]] = None,
        params: Optional[Dict[str, str]] = None,
        read_timeout: Optional[float] = None,
    ) -> requests.Response:
        """Send a request and return once the status line and headers are in."""
        read = read_timeout if read_timeout is not None else self.read_timeout
        url = self.base_url + path
        log.debug("%s %s %s", self.backend_id, method, path)
        _current.watch = watch
        error: Optional[BackendError] = None
        try:
            retries = STALE_RETRIES if self.retry_stale else 0
            for attempt in range(retries + 1):
                _current.reused = False
                try:
                    response = self.session.request(
                        method,
                        url,
                        data=body,
                        headers=headers,
                        params=params,
                        timeout=self._timeouts(watch, read),
                        stream=True,
                        allow_redirects=False,
                    )
                    break
                except NETWORK_ERRORS as exc:
                    if attempt < retries and self._stale(exc, watch):
                        log.debug(
                            "%s closed a kept-alive connection before replying; "
                            "sending again on a new one",
                            self.backend_id,
                        )
                        continue
                    watch.finish()
                    error = self._error(exc, watch)
                    break
        finally:
            _current.watch = None
            _current.reused = False
        if error is not None:
            raise error  # outside the handler: no implicit context to leak
        log.debug(
            "%s %s %s -> %s in %d ms",
            self.backend_id,
            method,
            path,
            response.status_code,
            watch.elapsed_ms(),
        )
        return response

    def _timeouts(self, watch: Watch, read: float) -> Tuple[float, float]:
        """Connect and read timeouts for one attempt, cut to the deadline."""
        remaining = watch.remaining()
        if remaining is None:
            return self.connect_timeout, read
        return min(self.connect_timeout, remaining), min(read, remaining)

    @staticmethod
    def _stale(exc: BaseException, watch: Watch) -> bool:
        """Whether the request failed as a request does that lost the keep-alive
        race: it went out on a reused connection the server was closing (after
        its last reply, or at its idle timeout) and got no reply at all. Such a
        request was not served. A server that read it and then died looks the
        same, which is why only local engines retry: a repeat there costs
        compute, not money. A new connection failing, a deadline or a cancel
        is never retried."""
        if not getattr(_current, "reused", False) or watch.cancelled or watch.expired:
            return False
        return isinstance(
            _root_cause(exc),
            (ConnectionResetError, BrokenPipeError, ConnectionAbortedError),
        )

    @staticmethod
    def reader(response: requests.Response) -> Callable[[], List[bytes]]:
        """A function returning the next parts of ``response``'s body as soon as
        one is in, or [] at its end: of a chunked body the HTTP chunks that one
        socket read completed (at least one), else what one read got. Its
        errors are untranslated: pass it to ``read_chunks``."""
        raw = response.raw
        if raw.chunked and raw.supports_chunked_reads():
            return _ChunkReader(raw)
        return partial(_read1, raw)

    def read_chunks(
        self, read: Callable[[], List[bytes]], watch: Watch, relayed: int
    ) -> List[bytes]:
        """The next parts of a body from its ``reader``; [] at its end."""
        try:
            data = read()
        except NETWORK_ERRORS as exc:
            error = self._error(exc, watch, relayed)
        else:
            return data
        raise error

    def read_body(
        self, response: requests.Response, watch: Watch, limit: int
    ) -> Tuple[bytes, bool]:
        """Up to ``limit`` bytes of the body, and whether there was more."""
        try:
            data: bytes = response.raw.read(limit + 1)
        except NETWORK_ERRORS as exc:
            error = self._error(exc, watch)
        else:
            return data[:limit], len(data) > limit
        raise error

    def _error(
        self, exc: BaseException, watch: Watch, relayed: Optional[int] = None
    ) -> BackendError:
        """The translated, scrubbed error for ``exc``, chained to it unless the
        chain quotes the key (a traceback would print it)."""
        error = self.scrub(translate(exc, self.backend_id, watch, relayed))
        if not mentions(exc, self._secret):
            error.__cause__ = exc
        error.__suppress_context__ = True
        return error

    def scrub(self, error: E) -> E:
        """The error with this backend's key redacted from all it says."""
        return scrub(error, self._secret)

    def close(self) -> None:
        self.session.close()
