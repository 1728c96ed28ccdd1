"""``JobStream``: a job's upstream bytes, relayed as they are read.

Each ``next()`` waits for at most one read of the body and returns whatever it
got: one HTTP chunk of a chunked body (engines write an event or a few per chunk),
else whatever the socket had. A caller sees an event as soon as it reaches us,
comments and keep-alives included, byte for byte.
Usage is parsed from the same bytes afterwards, a batch of reads at a time (the
stream's outcome is decided only at its end), never before the caller has had them.
"""

from __future__ import annotations

import logging
import threading
import time
from types import TracebackType
from typing import Iterator, List, Optional, Type

import requests

from ._transport import Transport
from ._watch import Watch
from .data import Job, JobResult
from .errors import (
    BackendError,
    StreamError,
)
from .usage import UsageParser

log = logging.getLogger(__name__)

#: How many relayed bytes wait for the usage reader: looking at a batch of token
#: events once costs a fraction of looking at each (most hold nothing it wants).
PARSE_BATCH = 16384


class JobStream(Iterator[bytes]):
    """Iterator over the upstream byte chunks of one job, exactly as received.

    ``result`` holds the ``JobResult`` once the stream has ended cleanly.
    ``cancel()`` may be called from any thread: the iterating thread then gets
    ``JobCancelledError`` and the upstream connection is closed. ``close()`` (or
    leaving a ``with`` block, or dropping the stream) releases the connection early.

    Raises, while iterating: ``BackendTimeoutError`` at the job's deadline,
    ``JobCancelledError``, and ``StreamError`` for an in-band error event or an
    upstream that stops before the stream's terminator (after every byte read
    before it was handed over).
    """

    def __init__(
        self,
        backend_id: str,
        job: Job,
        response: requests.Response,
        watch: Watch,
        transport: Transport,
    ) -> None:
        self.backend_id = backend_id
        self.job = job
        self.result: Optional[JobResult] = None
        self._response: Optional[requests.Response] = response
        self._watch = watch
        self._transport = transport
        self._read = transport.reader(response)
        self._parser = UsageParser(job.format)
        self._unparsed: List[bytes] = []
        self._relayed = 0
        self._parsed = 0  # of the bytes relayed
        self._first_byte_ms: Optional[int] = None
        # close() may come from another thread while this one reads: it then
        # only cancels, and the reading thread releases the connection.
        self._lock = threading.Lock()
        self._reading = False

    @property
    def bytes_relayed(self) -> int:
        return self._relayed

    def __iter__(self) -> JobStream:
        return self

    def __next__(self) -> bytes:
        if self._relayed - self._parsed >= PARSE_BATCH:
            self._parse()
        response = self._response
        if response is None:
            raise StopIteration
        watch = self._watch
        if watch.state is not None or time.monotonic() >= watch.due:
            # Bytes may already sit in our buffers; after cancel() or the
            # deadline, none of them is handed over.
            stopped = watch.stop_error(self.backend_id)
            if stopped is not None:
                self._release(reuse=False)
                raise stopped
        with self._lock:
            self._reading = True
        try:
            chunk = self._transport.read_chunk(self._read, self._watch, self._relayed)
        except BaseException:
            self._reading = False
            self._release(reuse=False)
            raise
        self._reading = False
        if chunk:
            if self._first_byte_ms is None:
                self._first_byte_ms = self._watch.elapsed_ms()
            self._relayed += len(chunk)
            self._unparsed.append(chunk)
            return chunk
        self._finish()
        raise StopIteration

    def _parse(self) -> None:
        self._parser.feed(b"".join(self._unparsed))
        self._unparsed, self._parsed = [], self._relayed

    def _finish(self) -> None:
        """The upstream closed its side: decide between a result and an error."""
        self._parse()
        parser = self._parser
        parser.close()
        stopped = self._watch.state
        self._release(reuse=parser.terminated and stopped is None)
        error = self._failure()
        if error is not None:
            raise self._transport.scrub(error)
        self.result = JobResult(
            input_tokens=parser.input_tokens,
            output_tokens=parser.output_tokens,
            duration_ms=self._watch.elapsed_ms(),
            first_byte_ms=self._first_byte_ms,
            bytes_relayed=self._relayed,
        )
        log.debug("%s job %s done: %s", self.backend_id, self.job.job_id, self.result)

    def _failure(self) -> Optional[BackendError]:
        """Why a stream that has ended did not succeed, or None."""
        if self._parser.error is not None:
            return StreamError(
                self.backend_id, f"in-band error: {self._parser.error}", self._relayed
            )
        if self._parser.terminated:
            return None
        return self._watch.stop_error(self.backend_id) or StreamError(
            self.backend_id,
            f"upstream closed the stream before its terminator "
            f"after {self._relayed} bytes",
            self._relayed,
        )

    def _release(self, reuse: bool) -> None:
        response, self._response = self._response, None
        if response is None:
            return
        self._watch.finish()  # stops the deadline timer; forgets the socket
        if reuse:
            response.raw.release_conn()
        else:
            response.close()

    def cancel(self) -> None:
        """Stop the job from any thread; the iterating thread gets JobCancelledError."""
        self._watch.cancel()

    def close(self) -> None:
        """Release the upstream connection; the stream ends here. From another
        thread than the one iterating, this is ``cancel()``."""
        with self._lock:
            if self._response is None:
                return
            self._watch.cancel()
            if self._reading:
                return  # the reading thread wakes up and releases it
        self._release(reuse=False)

    def __enter__(self) -> JobStream:
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - never raise from a finalizer
            pass

    def __repr__(self) -> str:
        state = "open" if self._response is not None else "closed"
        return (
            f"<JobStream {self.backend_id} job={self.job.job_id} {state} "
            f"relayed={self._relayed}>"
        )
