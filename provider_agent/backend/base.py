"""``Backend``: the shared base every adapter builds on.

An adapter states its facts as class attributes (``kind``, default URL, health and
model-listing paths, chat and messages routes, wire formats, whether it needs a key)
and overrides a hook only where its protocol really differs: ``_probe_error`` for what
a healthy probe reply looks like, ``_parse_models`` for where the context window
lives, ``_is_model_not_found`` for how it says "no such model". The HTTP, deadlines,
error mapping and streaming live here and in the modules this one uses.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import uuid
from typing import (
    Any,
    Callable,
    ClassVar,
    Dict,
    FrozenSet,
    List,
    Mapping,
    Optional,
    Tuple,
)
from urllib.parse import urlsplit

import requests

from ._checks import checked_headers, checked_key, local_base, normalise_url
from ._closing import Closing
from ._fork import renew_after_fork
from ._identity import mismatch
from ._replies import dict_items, error_message, load_json
from ._secret import redact
from ._stopper import current_stopper
from ._transport import Transport
from ._watch import Watch
from .data import BackendHealth, BackendModel, Job, JobResult, Reply, WireFormat
from .errors import (
    MAX_ERROR_BODY,
    BackendError,
    BadStatusError,
    MissingApiKeyError,
    ModelNotFoundError,
    ProtocolError,
    UnsupportedWireFormatError,
)
from .sink import SinkLike, sender
from .stream import JobStream

log = logging.getLogger(__name__)

DEFAULT_CONNECT_TIMEOUT = 3.05
DEFAULT_HEALTH_TIMEOUT = 5.0
DEFAULT_REQUEST_TIMEOUT = 30.0
#: The longest silence tolerated inside a stream (prefill on a busy CPU engine can
#: take minutes and vLLM sends nothing meanwhile); the job's deadline still applies.
DEFAULT_STREAM_READ_TIMEOUT = 600.0
#: Connections kept open per backend; more concurrent jobs still run, on
#: connections closed after use.
DEFAULT_MAX_CONNECTIONS = 32
HEALTH_BODY_LIMIT = 64 * 1024
LISTING_BODY_LIMIT = 32 * 1024 * 1024
BOTH_FORMATS: FrozenSet[WireFormat] = frozenset(WireFormat)


class Backend(Closing):
    """One inference server, local or remote, behind the common API.

    Each instance owns one ``requests.Session``; its methods may be called from
    several threads at once (the session is configured once and never changed).
    Call ``close()``, or use the backend as a context manager, to release it.

    Options (keyword-only): ``connect_timeout`` (s, default 3.05),
    ``health_timeout`` (s, a probe's whole budget), ``request_timeout`` (s, a
    model listing's), ``stream_read_timeout`` (s of silence tolerated inside a
    stream; the job's deadline always applies), ``headers`` (sent with every
    request, e.g. OpenRouter's ``HTTP-Referer``), ``max_connections`` (kept open).
    A local kind's URL may end in ``/v1`` (the base URL OpenAI clients take): the
    suffix is dropped, since the routes carry it. Raises ``ValueError`` for a URL
    that is not http(s), and ``MissingApiKeyError`` when the kind needs a key and
    none is given.
    """

    kind: ClassVar[str]
    default_url: ClassVar[str]
    native: ClassVar[bool] = True
    needs_key: ClassVar[bool] = False
    key_env_var: ClassVar[Optional[str]] = None
    wire_formats: ClassVar[FrozenSet[WireFormat]] = BOTH_FORMATS
    health_path: ClassVar[str]
    models_path: ClassVar[str] = "/v1/models"
    chat_path: ClassVar[str] = "/v1/chat/completions"
    messages_path: ClassVar[Optional[str]] = "/v1/messages"
    #: A healthy probe reply is a JSON object with this key (None: any 2xx), so
    #: that another server on the port is not taken for this one.
    probe_key: ClassVar[Optional[str]] = None
    #: Whether an Anthropic job also sends the key as ``x-api-key``.
    anthropic_key_header: ClassVar[bool] = True
    #: How a 400 says the model does not exist (a regex, matched ignoring case),
    #: for backends that do not answer 404; ordinary 400s must not match.
    model_not_found_pattern: ClassVar[Optional[str]] = None

    def __init__(
        self,
        url: Optional[str] = None,
        api_key: Optional[str] = None,
        *,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        health_timeout: float = DEFAULT_HEALTH_TIMEOUT,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
        stream_read_timeout: float = DEFAULT_STREAM_READ_TIMEOUT,
        headers: Optional[Mapping[str, str]] = None,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        self.url = self.base_url(url)
        self._key = checked_key(api_key)
        if self.needs_key and self._key is None:
            raise MissingApiKeyError(self.kind, "an API key is required")
        self.health_timeout = health_timeout
        self.request_timeout = request_timeout
        self.stream_read_timeout = stream_read_timeout
        self._extra_headers = checked_headers(headers or {})
        self._running: Dict[uuid.UUID, Watch] = {}
        # Re-entrant: a stream dropped without close() ends in a finaliser,
        # which the garbage collector may run in a thread holding this lock.
        self._running_lock = threading.RLock()
        self._transport = Transport(
            self.id,
            self.url,
            connect_timeout=connect_timeout,
            read_timeout=request_timeout,
            # Local engines are reached directly: proxy variables and .netrc
            # must not reroute or add credentials to loopback traffic.
            trust_env=not self.native,
            secret=self._key,
            pool_maxsize=max_connections,
            retry_stale=self.native,
        )
        renew_after_fork(self)

    def _after_fork(self) -> None:
        # The parent's jobs do not run here, and its lock may have been held.
        self._running = {}
        self._running_lock = threading.RLock()

    # -- identity -------------------------------------------------------------

    @classmethod
    def base_url(cls, url: Optional[str] = None) -> str:
        """The base URL a backend of this kind built with ``url`` uses (a local
        engine's without ``/v1``); raises ``ValueError`` for a bad one."""
        base = normalise_url(url or cls.default_url)
        return local_base(base) if cls.native else base

    @classmethod
    def id_for(cls, url: Optional[str] = None) -> str:
        """The ``id`` a backend of this kind built with ``url`` has, also where
        it cannot be built (its key is missing, say)."""
        return f"{cls.kind}:{cls.base_url(url)}" if cls.native else cls.kind

    @property
    def id(self) -> str:
        """``"<kind>:<base url>"`` for a local engine, ``"<kind>"`` for a remote API."""
        return f"{self.kind}:{self.url}" if self.native else self.kind

    @property
    def has_api_key(self) -> bool:
        return self._key is not None

    def __repr__(self) -> str:
        key = ", api_key=<redacted>" if self._key is not None else ""
        return f"{type(self).__name__}(url={self.url!r}{key})"

    # -- the operations -------------------------------------------------------

    def health(self, timeout: Optional[float] = None) -> BackendHealth:
        """Probe the backend cheaply (never a completion). Never raises for network
        trouble: an unreachable backend is ``reachable=False`` with ``last_error``,
        and so is a server that shows it is of another kind. ``timeout`` (s)
        bounds the whole probe; the default is ``health_timeout``."""
        started = time.monotonic()
        budget = self.health_timeout if timeout is None else timeout
        try:
            status, body, _, headers = self._fetch(
                "GET", self.health_path, budget, HEALTH_BODY_LIMIT
            )
        except BackendError as exc:
            return BackendHealth(False, None, exc.message)
        latency = int((time.monotonic() - started) * 1000)
        problem = self._redact(
            mismatch(self.kind, status, headers, body)
            or self._probe_error(status, body)
        )
        if problem is not None:
            log.debug("%s unhealthy: %s", self.id, problem)
        return BackendHealth(problem is None, latency, problem)

    def list_models(self) -> List[BackendModel]:
        """The models served now, with their context window where the server says.

        Raises a ``BackendError`` when the listing cannot be had.
        """
        return self._parse_models(self._get_json(self.models_path))

    def execute(self, job: Job) -> JobStream:
        """Send ``job`` and return its stream once the upstream has answered.

        The request body is relayed untouched except: ``stream`` set to true,
        ``model`` filled from the job when absent and, in the OpenAI format,
        ``stream_options.include_usage`` added when the caller set no
        ``stream_options``. Raises ``UnsupportedWireFormatError`` (before any
        network I/O) when the backend does not speak the job's format, and the
        errors of a failed request (``BadStatusError``, ``ModelNotFoundError``,
        ``UnreachableError``, ``BackendTimeoutError``, ...); ``ValueError`` when
        the request cannot be written as JSON or sets ``stream`` to anything but
        true (``complete()`` is for a whole reply).
        """
        if job.request.get("stream", True) is not True:
            raise ValueError(
                f"job {job.job_id}: the request sets stream to "
                f"{json.dumps(job.request['stream'], default=repr)}, but "
                "execute() always streams: drop the field, or call complete() "
                "for the whole reply at once"
            )
        path = self._route(job.format)
        try:
            text = json.dumps(self._prepare(job), ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError) as exc:
            # Caught here rather than sent: NaN would go out as invalid JSON.
            raise ValueError(
                f"job {job.job_id}: request is not valid JSON: {exc}"
            ) from exc
        body = text.encode("utf-8")
        headers = self._headers(job.format)
        headers.update(
            {"Content-Type": "application/json", "Accept": "text/event-stream"}
        )
        watch = self._start(job)
        try:
            response = self._transport.open(
                "POST",
                path,
                watch,
                body=body,
                headers=headers,
                read_timeout=self.stream_read_timeout,
            )
        except BaseException:  # a KeyboardInterrupt, too: forget the job
            watch.finish()
            raise
        try:
            self._check_stream_reply(response, watch, job)
        except BaseException:
            watch.finish()
            response.close()
            raise
        return JobStream(self.id, job, response, watch, self._transport)

    def complete(self, job: Job) -> Reply:
        """Run ``job`` and return its whole reply (text, reasoning, result), for a
        caller who wants no stream. The body may say ``"stream": false``: the reply
        is still read as a stream, and assembled. Raises as ``execute()`` and
        iterating its stream do."""
        with self.execute(job.without_stream_flag()) as stream:
            return stream.reply()

    def cancel(self, job_id: uuid.UUID) -> bool:
        """Cancel a running job of this backend from any thread, at any stage:
        connecting, waiting for headers (which a busy engine may hold back for
        minutes) or streaming. The thread running it gets ``JobCancelledError``.
        Returns whether such a job was running."""
        with self._running_lock:
            watch = self._running.get(job_id)
        if watch is None:
            return False
        watch.cancel()
        return True

    def _start(self, job: Job) -> Watch:
        """The job's watch, findable by ``cancel()`` until the job's call ends,
        and held by the calling thread's ``Stopper`` if it has one (a fleet's
        job: stopping that cancels the job wherever it is, even before this)."""
        stopper = current_stopper()

        def forget() -> None:
            with self._running_lock:
                if self._running.get(job.job_id) is watch:
                    del self._running[job.job_id]
            if stopper is not None:
                stopper.discard(watch)

        watch = Watch(job.deadline_ms / 1000, on_finish=forget)
        with self._running_lock:
            self._running[job.job_id] = watch
        if stopper is not None:
            stopper.add(watch)  # cancelled at once if it was stopped already
        return watch

    def run(self, job: Job, sink: SinkLike) -> JobResult:
        """Run ``job``, pushing each chunk into ``sink`` as it is read.

        ``sink`` is a ``JobSink`` or a plain callable taking bytes. A sink that
        raises aborts the stream (the connection is closed) and its exception
        propagates unchanged.
        """
        send = sender(sink)  # a bad sink fails here, before any request
        return self.execute(job).send_to(send)

    def close(self) -> None:
        """Release the backend's connections."""
        self._transport.close()

    # -- hooks ----------------------------------------------------------------

    def _probe_error(self, status: int, body: bytes) -> Optional[str]:
        """None when a probe reply means healthy, else a short reason."""
        if not 200 <= status < 300:
            asked = f"GET {urlsplit(self.url).path}{self.health_path}"
            return self._status_problem(status, body, asked=asked)
        if self.probe_key is None:
            return None
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        if isinstance(payload, dict) and self.probe_key in payload:
            return None
        return f"not a {self.kind} reply: {error_message(body)}"

    def _parse_models(self, payload: Any) -> List[BackendModel]:
        raise NotImplementedError

    def _cards(self, payload: Any) -> List[Dict[str, Any]]:
        """The model cards of an OpenAI-style listing (``data[]``)."""
        return dict_items(self.id, payload, "data", "the model listing")

    def _models(
        self,
        cards: List[Dict[str, Any]],
        window: Callable[[Dict[str, Any]], Optional[int]],
        keep: Optional[Callable[[Dict[str, Any]], bool]] = None,
    ) -> List[BackendModel]:
        """A model for each card with a string ``id`` that ``keep`` accepts."""
        return [
            BackendModel(card["id"], window(card), self.native)
            for card in cards
            if isinstance(card.get("id"), str) and (keep is None or keep(card))
        ]

    def _is_model_not_found(self, status: int, message: str, body: bytes) -> bool:
        if status == 404 or (400 <= status < 500 and _says_model_not_found(body)):
            return True
        pattern = self.model_not_found_pattern
        return status == 400 and bool(pattern and re.search(pattern, message, re.I))

    # -- shared machinery -----------------------------------------------------

    def speaks(self, wire_format: WireFormat) -> bool:
        """Whether this backend takes jobs in ``wire_format`` natively."""
        return wire_format in self.wire_formats and self._path(wire_format) is not None

    def _path(self, wire_format: WireFormat) -> Optional[str]:
        if wire_format is WireFormat.ANTHROPIC:
            return self.messages_path
        return self.chat_path

    def _route(self, wire_format: WireFormat) -> str:
        path = self._path(wire_format)
        if wire_format not in self.wire_formats or path is None:
            raise UnsupportedWireFormatError(
                self.id,
                f"does not speak the {wire_format.value} wire format natively "
                "(jobs are never transcoded)",
            )
        return path

    def _prepare(self, job: Job) -> Dict[str, Any]:
        request = dict(job.request)
        request["stream"] = True
        if "model" not in request:
            request["model"] = job.model_id
        if job.format is WireFormat.OPENAI and "stream_options" not in request:
            request["stream_options"] = {"include_usage": True}
        return request

    def _headers(self, wire_format: Optional[WireFormat] = None) -> Dict[str, str]:
        headers = dict(self._extra_headers)
        if self._key is not None:
            headers["Authorization"] = f"Bearer {self._key.reveal()}"
            if wire_format is WireFormat.ANTHROPIC and self.anthropic_key_header:
                headers["x-api-key"] = self._key.reveal()
        if wire_format is WireFormat.ANTHROPIC:
            headers.setdefault("anthropic-version", "2023-06-01")
        return headers

    def _redact(self, text: Optional[str]) -> Optional[str]:
        return redact(text, self._key)

    def _request_json(
        self,
        method: str,
        path: str,
        *,
        body: Optional[Dict[str, Any]] = None,
        params: Optional[Dict[str, str]] = None,
    ) -> Any:
        """A JSON reply from the backend; BackendError when it cannot be had."""
        data = None if body is None else json.dumps(body).encode("utf-8")
        _, raw, truncated, _ = self._fetch(
            method,
            path,
            self.request_timeout,
            LISTING_BODY_LIMIT,
            body=data,
            params=params,
            check_status=True,
        )
        try:
            return load_json(self.id, raw, truncated, f"the reply to {method} {path}")
        except ProtocolError as exc:
            raise self._transport.scrub(exc) from None

    def _fetch(
        self,
        method: str,
        path: str,
        timeout: float,
        limit: int,
        *,
        body: Optional[bytes] = None,
        params: Optional[Dict[str, str]] = None,
        check_status: bool = False,
    ) -> Tuple[int, bytes, bool, Mapping[str, str]]:
        """One bounded request: its status, up to ``limit`` bytes of its body,
        whether there was more, and its headers. ``timeout`` bounds the whole
        call; the calling thread's ``Stopper``, if any, may end it sooner."""
        watch = Watch(timeout)
        stopper = current_stopper()
        if stopper is not None:
            stopper.add(watch)
        try:
            headers = self._headers()
            if body is not None:
                headers["Content-Type"] = "application/json"
            response = self._transport.open(
                method, path, watch, body=body, headers=headers, params=params
            )
            try:
                if check_status:
                    self._raise_for_status(response, watch)
                raw, truncated = self._transport.read_body(response, watch, limit)
            finally:
                watch.finish()
                response.close()
        finally:
            if stopper is not None:
                stopper.discard(watch)
        return response.status_code, raw, truncated, response.headers

    def _get_json(self, path: str, params: Optional[Dict[str, str]] = None) -> Any:
        return self._request_json("GET", path, params=params)

    def _check_stream_reply(
        self, response: requests.Response, watch: Watch, job: Job
    ) -> None:
        self._raise_for_status(response, watch, job)
        content_type = response.headers.get("Content-Type", "")
        media = content_type.split(";", 1)[0].strip().lower()
        if media and media != "text/event-stream":
            body, _ = self._transport.read_body(response, watch, MAX_ERROR_BODY)
            error = ProtocolError(
                self.id,
                f"expected an event stream, got {media}: "
                f"{error_message(body, content_type)}",
                body.decode("utf-8", "replace"),
            )
            raise self._transport.scrub(error)

    def _raise_for_status(
        self, response: requests.Response, watch: Watch, job: Optional[Job] = None
    ) -> None:
        status = response.status_code
        if 200 <= status < 300:
            return
        body, _ = self._transport.read_body(response, watch, MAX_ERROR_BODY)
        text = body.decode("utf-8", "replace")
        message = self._status_problem(status, body, response)
        error: BadStatusError
        if job is not None and self._is_model_not_found(status, message, body):
            error = ModelNotFoundError(
                self.id,
                job.model_id,
                status,
                text,
                f"model {job.model_id!r} not found: {message}",
            )
        else:
            error = BadStatusError(self.id, status, text, message)
        raise self._transport.scrub(error)

    def _status_problem(
        self,
        status: int,
        body: bytes,
        response: Optional[requests.Response] = None,
        asked: Optional[str] = None,
    ) -> str:
        """One line for a reply that is not a success; ``asked`` is the method
        and path, when there is no ``response`` to read them from."""
        content_type = response.headers.get("Content-Type", "") if response else ""
        detail = error_message(body, content_type)
        if 300 <= status < 400:
            location = response.headers.get("Location", "") if response else ""
            target = urlsplit(location)
            where = (
                f"{target.scheme}://{target.netloc}{target.path}" if location else "?"
            )
            return f"HTTP {status}: redirect to {where} not followed"
        if status in (401, 403):
            hint = (
                "API key rejected" if self._key is not None else "an API key is needed"
            )
            return f"HTTP {status}: {hint}: {detail}"
        if response is not None and response.request is not None:
            asked = f"{response.request.method} {urlsplit(response.url).path}"
        if status == 404 and asked:
            # Names the path: a wrong base URL shows as a doubled or missing prefix.
            return f"HTTP 404 for {asked}: {detail}"
        return f"HTTP {status}: {detail}"


def _says_model_not_found(body: bytes) -> bool:
    """Whether an error body carries OpenAI's ``"code": "model_not_found"`` (LM
    Studio answers an unknown model so, with HTTP 400 on recent builds)."""
    if b"model_not_found" not in body:
        return False
    try:
        payload = json.loads(body)
    except ValueError:
        return False
    error = payload.get("error") if isinstance(payload, dict) else None
    return isinstance(error, dict) and error.get("code") == "model_not_found"
