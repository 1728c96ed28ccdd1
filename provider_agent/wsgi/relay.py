"""``StreamBody``: a job's stream as the body of a WSGI reply.

It hands the WSGI server the upstream bytes as they are read, verbatim. If the
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
from .replies import error_event

__all__ = ["StreamBody"]

log = logging.getLogger("provider_agent.wsgi")


class StreamBody(Iterator[bytes]):
    """The WSGI body of ``stream``; error events are in ``wire_format`` (the
    job's by default). Hand it to Flask's ``Response``, Django's
    ``StreamingHttpResponse`` or return it from a WSGI app."""

    def __init__(
        self, stream: JobStream, wire_format: Optional[WireFormat] = None
    ) -> None:
        self.stream = stream
        self._format = wire_format or stream.job.format
        self._tail = b"\n\n"  # the last two bytes handed over
        self._ended = False

    def __iter__(self) -> StreamBody:
        return self

    def __next__(self) -> bytes:
        if self._ended:
            raise StopIteration
        try:
            chunk = next(self.stream)
        except StopIteration:
            self._ended = True
            raise
        except BackendError as exc:
            self._ended = True
            self.stream.close()
            return self._failed(exc)
        if len(chunk) >= 2:
            self._tail = chunk[-2:]
        else:
            self._tail = self._tail[-1:] + chunk
        return chunk

    def _failed(self, exc: BackendError) -> bytes:
        job = self.stream.job
        log.warning(
            "job %s (model %r) failed after %d bytes: %s",
            job.job_id,
            job.model_id,
            self.stream.bytes_relayed,
            exc,
        )
        if isinstance(exc, StreamError) and exc.in_band:
            return b""  # the client has the upstream's own error event
        event = error_event(exc, self._format)
        if not self._tail.endswith(b"\n\n"):
            event = b"\n\n" + event  # end the event the cut left open first
        return event

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
