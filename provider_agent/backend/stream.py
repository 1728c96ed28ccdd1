"""``JobStream``: a job's upstream bytes, relayed as they are read.

Each ``next()`` returns one HTTP chunk of a chunked body (engines write an event
or a few per chunk), else whatever one read of the socket had. It waits for at most
one read, and for none when an earlier read already brought the chunk in: one read
often brings many, and they are handed over one by one, in order. A caller sees an
event as soon as it reaches us, comments and keep-alives included, byte for byte.
Usage is read from the same bytes afterwards, 16 KB at a time (the stream's
outcome is decided only at its end), never before the caller has had them: the
stream's first and last 16 KB whole, the bytes between for an in-band error and
for the running usage in the last kilobyte of each 16 KB.
``iter_text()``, ``text()`` and ``reply()`` read the reply's text instead of its
bytes (see ``text.py``).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Iterator, List, Optional

import requests

from ._closing import Closing
from ._transport import Transport
from ._watch import Watch
from .data import Job, JobResult, Reply
from .errors import (
    BackendError,
    JobCancelledError,
    StreamError,
)
from .sink import SinkLike, sender
from .text import TextDelta, TextReader
from .usage import UsageParser

log = logging.getLogger(__name__)

#: How many relayed bytes wait for the usage reader: looking at a batch of token
#: events once costs a fraction of looking at each (most hold nothing it wants).
#: A stream's last PARSE_BATCH bytes or more are read whole.
PARSE_BATCH = 16384


class JobStream(Closing, Iterator[bytes]):
    """Iterator over the upstream byte chunks of one job, exactly as received.

    ``result`` holds the ``JobResult`` once the stream has ended cleanly;
    ``partial_result`` what was read so far, however the stream ended.
    ``iter_text()``, ``text()`` and ``reply()`` read the reply's text rather than
    its bytes (from the stream's start: call one before any other iteration).
    ``cancel()`` may be called from any thread: the iterating thread then gets
    ``JobCancelledError`` and the upstream connection is closed. ``close()`` (or
    leaving a ``with`` block, or dropping the stream) releases the connection early.

    Raises, while iterating: ``BackendTimeoutError`` at the job's deadline,
    ``JobCancelledError``, and ``StreamError`` for an in-band error event or an
    upstream that stops before the stream's terminator (after every byte read
    before it was handed over; of a chunked body, every whole chunk: one the
    connection was cut inside of is not).
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
        # What the last read brought that is not handed over yet, last first.
        self._ready: List[bytes] = []
        self._parser = UsageParser(job.format)
        self._unparsed: List[bytes] = []
        self._held: Optional[bytes] = None  # a batch waiting to be skimmed
        self._relayed = 0
        self._parsed = 0  # of the bytes relayed
        self._first_byte_ms: Optional[int] = None
        self._ended_ms: Optional[int] = None
        # close() may come from another thread while this one reads: it then
        # only cancels, and the reading thread releases the connection.
        self._lock = threading.Lock()
        self._reading = False
        self._on_release: List[Callable[[], None]] = []
        self._cancelled = False  # by cancel() while nobody was reading

    @property
    def bytes_relayed(self) -> int:
        return self._relayed

    @property
    def partial_result(self) -> JobResult:
        """``result`` after a clean end; otherwise (cancelled, past the deadline,
        failed, or still running) the usage, finish reason and timings read so
        far, with None for what the stream had not said yet (while it runs,
        usage is read 16 KB at a time and lags by one or two of those)."""
        return self.result or self._snapshot()

    def iter_text(self, include_reasoning: bool = False) -> Iterator[TextDelta]:
        """Each piece of the reply's text as soon as its event has arrived, a
        ``TextDelta`` (a ``str``). With ``include_reasoning``, the model's
        reasoning pieces come too, marked ``reasoning=True``. Consumes the
        stream: ``result`` is set at its end; raises as iterating bytes does."""
        reader = self._parser
        if not isinstance(reader, TextReader):
            if self._relayed:
                raise RuntimeError(
                    "iter_text() reads a stream from its start, "
                    "but bytes of this one were already taken"
                )
            reader = self._parser = TextReader(self.job.format)
        for _ in self:
            self._parse()  # now, not a batch later: the text is due
            yield from self._pieces(reader, include_reasoning)
        # What the stream's end completed (a last event without its blank line).
        yield from self._pieces(reader, include_reasoning)

    def text(self) -> str:
        """The whole reply text (no reasoning); consumes the stream like
        ``iter_text()``."""
        return "".join(self.iter_text())

    def reply(self) -> Reply:
        """The whole reply: text, reasoning and result; consumes the stream like
        ``iter_text()``."""
        text: List[str] = []
        reasoning: List[str] = []
        for piece in self.iter_text(include_reasoning=True):
            (reasoning if piece.reasoning else text).append(piece)
        if self.result is None:
            raise RuntimeError("the stream was closed before its end")
        return Reply("".join(text), "".join(reasoning), self.result)

    @staticmethod
    def _pieces(reader: TextReader, include_reasoning: bool) -> List[TextDelta]:
        pieces = reader.take()
        if include_reasoning:
            return pieces
        return [piece for piece in pieces if not piece.reasoning]

    def __iter__(self) -> JobStream:
        return self

    def __next__(self) -> bytes:
        ready = self._ready
        if ready:
            # The fast path: a chunk the last read already brought in.
            watch = self._watch
            if watch.state is None and time.monotonic() < watch.due:
                chunk = ready.pop()
                self._relayed += len(chunk)
                self._unparsed.append(chunk)
                return chunk
        return self._read_next()

    def _read_next(self) -> bytes:
        response = self._response
        if response is None:
            if self._cancelled:
                raise JobCancelledError(self.backend_id, "job cancelled")
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
            # cancel() from another thread may have come since the checks
            # above, and be letting go of the connection: never read it then.
            idle = self._cancelled or self._response is None
            self._reading = not idle
        if idle:
            return self._read_next()  # reports it, as for a stream stopped before
        try:
            if self._relayed - self._parsed >= PARSE_BATCH:
                # While reading: a cancel() or close() from another thread
                # then leaves the parser to this thread, as it does the socket.
                self._parse_batch()
                stopped = watch.stop_error(self.backend_id)  # during the parse
                if stopped is not None:
                    raise stopped
            chunks = self._transport.read_chunks(self._read, self._watch, self._relayed)
        except BaseException:
            self._reading = False
            self._release(reuse=False)
            raise
        self._reading = False
        if chunks:
            if self._first_byte_ms is None:
                self._first_byte_ms = self._watch.elapsed_ms()
            chunks.reverse()  # popped from the end, first chunk first
            self._ready = chunks
            return self.__next__()
        self._finish()
        raise StopIteration

    def _parse_batch(self) -> None:
        """Hand a batch of relayed bytes to the usage reader. The first batch is
        read whole; each later one is held until the next batch has followed it,
        and then only skimmed (see ``UsageParser.skim``): so a stream's last
        PARSE_BATCH bytes or more are read whole, by ``_parse`` at its end."""
        first = self._parsed == 0
        batch = b"".join(self._unparsed)
        self._unparsed, self._parsed = [], self._relayed
        if first:
            self._parser.feed(batch)  # the first events: Anthropic's message_start
            return
        if self._held is not None:
            self._parser.skim(self._held)  # a batch or more follows it now
        self._held = batch

    def _parse(self) -> None:
        """Hand the usage reader every relayed byte it has not had, to read whole."""
        held, self._held = self._held, None
        if held is not None:
            self._parser.feed(held)
        if self._unparsed:
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
        self.result = self._snapshot()
        log.debug("%s job %s done: %s", self.backend_id, self.job.job_id, self.result)

    def _snapshot(self) -> JobResult:
        parser = self._parser
        return JobResult(
            input_tokens=parser.input_tokens,
            output_tokens=parser.output_tokens,
            duration_ms=(
                self._watch.elapsed_ms() if self._ended_ms is None else self._ended_ms
            ),
            first_byte_ms=self._first_byte_ms,
            bytes_relayed=self._relayed,
            finish_reason=parser.finish_reason,
            backend_id=self.backend_id,
        )

    def _failure(self) -> Optional[BackendError]:
        """Why a stream that has ended did not succeed, or None."""
        if self._parser.error is not None:
            return StreamError(
                self.backend_id,
                f"in-band error: {self._parser.error}",
                self._relayed,
                in_band=True,
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
        with self._lock:
            response, self._response = self._response, None
            callbacks, self._on_release = self._on_release, []
        if response is None:
            return
        self._ready = []  # read, but never handed over
        self._parse()  # what it read, for partial_result: nobody reads it now
        self._ended_ms = self._watch.elapsed_ms()
        try:
            self._watch.finish()  # stops the deadline timer; forgets the socket
            if reuse:
                response.raw.release_conn()
            else:
                response.close()
        finally:
            for callback in callbacks:
                callback()

    def add_release_callback(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once, when the stream lets go of its connection (it
        ended, failed, was closed, cancelled or dropped); at once if it has."""
        with self._lock:
            if self._response is not None:
                self._on_release.append(callback)
                return
        callback()

    def send_to(self, sink: SinkLike) -> JobResult:
        """Push each chunk into ``sink`` as it is read, then close the stream;
        the job's result. A sink that raises aborts the stream (the connection
        is closed) and its exception propagates unchanged."""
        with self:
            send = sender(sink)
            for chunk in self:
                send(chunk)
        assert self.result is not None  # set whenever iteration ends cleanly
        return self.result

    def cancel(self) -> None:
        """Stop the job from any thread: the connection is closed at once, and
        the iterating thread (or the next ``next()``) gets JobCancelledError."""
        self._watch.cancel()
        with self._lock:
            if self._response is None or self._reading:
                return  # ended, or the reading thread wakes up and releases
            self._cancelled = True
        self._release(reuse=False)

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
