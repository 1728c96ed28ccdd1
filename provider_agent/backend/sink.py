"""Sinks: where ``Backend.run`` pushes a job's streamed bytes.

A sink is anything with ``send_chunk(data: bytes)``. A sink that raises aborts the
stream: the upstream connection is closed and the sink's exception propagates as is.
"""

from __future__ import annotations

from typing import Callable, Protocol, Union, runtime_checkable

__all__ = ["JobSink", "CallbackSink", "SinkLike", "as_sink"]


@runtime_checkable
class JobSink(Protocol):
    """Receives each chunk of a job's stream, in order, as soon as it is read."""

    def send_chunk(self, data: bytes) -> None: ...


class CallbackSink:
    """A sink that hands each chunk to a plain callable."""

    def __init__(self, fn: Callable[[bytes], object]) -> None:
        if not callable(fn):
            raise TypeError("CallbackSink needs a callable")
        self._fn = fn

    def send_chunk(self, data: bytes) -> None:
        self._fn(data)

    def __repr__(self) -> str:
        return f"CallbackSink({self._fn!r})"


SinkLike = Union[JobSink, Callable[[bytes], object]]


def as_sink(sink: SinkLike) -> JobSink:
    """Return ``sink`` itself when it is a JobSink, else wrap the callable."""
    if isinstance(sink, JobSink):
        return sink
    return CallbackSink(sink)


def sender(sink: SinkLike) -> Callable[[bytes], object]:
    """The function each chunk goes to: a JobSink's ``send_chunk``, or the callable
    itself (a call less per chunk than through ``CallbackSink``). ``TypeError``
    for anything else."""
    if isinstance(sink, JobSink) or not callable(sink):
        return as_sink(sink).send_chunk
    return sink
