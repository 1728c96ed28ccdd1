"""``StreamBody``: a job's stream as the body of a WSGI reply.

It hands the WSGI server the upstream bytes as they are read, verbatim, a whole
event at a time (an engine's read is one already). If the
stream fails after its first byte (the deadline, a cut connection, an upstream that
stops early), the status is long gone: the body then ends with one SSE error event
in the client's wire format, which the official SDKs raise on, and the failure is
logged under ``provider_agent.wsgi``. A failure the upstream already reported in its
own error event is logged but not repeated.

Every WSGI server calls ``close()`` on the body when the reply ends or the client
hangs up (even before the first chunk): that closes the upstream connection, so the
engine stops generating, and frees the job's fleet slot.
"""

from __future__ import annotations

import logging
from typing import Iterator, Optional

from ..backend import BackendError, JobStream, StreamError, WireFormat
from ..backend.usage import last_event_end
from .replies import error_event

__all__ = ["StreamBody"]

log = logging.getLogger("provider_agent.wsgi")


#: The most of an unfinished event held back (a body that is not SSE at all is
#: passed on as it comes beyond this).
MAX_HELD = 1 << 20


class StreamBody(Iterator[bytes]):
    """The WSGI body of ``stream``; error events are in ``wire_format`` (the
    job's by default). Hand it to Flask's ``Response``, Django's
    ``StreamingHttpResponse`` or return it from a WSGI app.

    It hands over whole events: the bytes after a read's last event boundary
    wait for the rest of their event (the engines' reads are whole events, so
    in practice nothing waits). A client cannot use half an event, and after a
    cut, half an event before the error event would make its SDK fail to parse
    the stream instead of raising the error.
    """

    def __init__(
        self, stream: JobStream, wire_format: Optional[WireFormat] = None
    ) -> None:
        self.stream = stream
        self._format = wire_format or stream.job.format
        self._held = b""  # the start of an unfinished event
        self._ended = False

    def __iter__(self) -> StreamBody:
        return self

    def __next__(self) -> bytes:
        while not self._ended:
            try:
                chunk = next(self.stream)
            except StopIteration:
                self._ended = True
                held, self._held = self._held, b""
                if held:
                    return held  # a clean end: the last event had no blank line
                raise
            except BackendError as exc:
                self._ended = True
                self.stream.close()
                event = self._failed(exc)
                if event:
                    return event
                raise StopIteration from None
            if self._held:
                chunk, self._held = self._held + chunk, b""
            if chunk.endswith(b"\n\n"):
                return chunk  # the common case: whole events
            end = max(last_event_end(chunk), 0)  # any line ends, as the parser
            if end < len(chunk) and len(chunk) - end <= MAX_HELD:
                chunk, self._held = chunk[:end], chunk[end:]
            if chunk:
                return chunk
        raise StopIteration

    def _failed(self, exc: BackendError) -> bytes:
        job = self.stream.job
        dropped = f", {len(self._held)} bytes of an unfinished event dropped"
        log.warning(
            "job %s (model %r) failed after %d bytes%s: %s",
            job.job_id,
            job.model_id,
            self.stream.bytes_relayed,
            dropped if self._held else "",
            exc,
        )
        self._held = b""
        if isinstance(exc, StreamError) and exc.in_band:
            return b""  # the client has the upstream's own error event
        return error_event(exc, self._format)

    def close(self) -> None:
        """Close the upstream connection and free the job's slot (idempotent)."""
        if not self._ended:
            self._ended = True
            log.info(
                "job %s: the client left after %d bytes; closing its upstream",
                self.stream.job.job_id,
                self.stream.bytes_relayed,
            )
        self.stream.close()
