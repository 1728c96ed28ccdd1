"""The values that cross the backend boundary, with their JSON form.

Each is a dataclass with ``dataclasses-json``'s ``to_dict``/``from_dict``/``to_json``/
``from_json``. ``Job.from_json`` reads the coordinator's JSON: ``job_id`` as a string,
``format`` in lower case (``"openai"`` or ``"anthropic"``).
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, replace
from typing import Any, Dict, Optional

from dataclasses_json import DataClassJsonMixin

__all__ = [
    "BackendHealth",
    "BackendModel",
    "Job",
    "JobResult",
    "Reply",
    "WireFormat",
    "DEFAULT_DEADLINE_MS",
]

#: A job's deadline when the coordinator names none: five minutes.
DEFAULT_DEADLINE_MS = 300_000


class WireFormat(str, enum.Enum):
    """The request and stream shape a job's client expects."""

    OPENAI = "openai"
    ANTHROPIC = "anthropic"


# The annotations below use typing.Optional, not ``int | None``: dataclasses-json
# evaluates them at run time, and Python 3.9 cannot evaluate the ``|`` form.


@dataclass
class BackendModel(DataClassJsonMixin):
    """A model a backend serves now.

    ``context_window`` is the usable window in tokens (prompt plus output) where the
    server reports one; ``native`` is True for local engines, False for remote ones.
    """

    model_id: str
    context_window: Optional[int]
    native: bool


@dataclass
class BackendHealth(DataClassJsonMixin):
    """The outcome of one health probe; a failing probe is data, not an exception."""

    reachable: bool
    latency_ms: Optional[int]
    last_error: Optional[str]


@dataclass
class Job(DataClassJsonMixin):
    """One chat request to run: the body is relayed to the backend untouched.

    Raises ``ValueError`` (or ``TypeError``) when a field cannot be a valid job;
    the message names the field.
    """

    job_id: uuid.UUID
    model_id: str
    request: Dict[str, Any]
    format: WireFormat = WireFormat.OPENAI
    deadline_ms: int = DEFAULT_DEADLINE_MS

    def __post_init__(self) -> None:
        if not isinstance(self.job_id, uuid.UUID):
            self.job_id = _uuid(self.job_id)
        if not isinstance(self.format, WireFormat):
            self.format = _wire_format(self.format)
        if not isinstance(self.request, dict):
            raise TypeError("Job.request must be a JSON object (a dict)")
        if not isinstance(self.model_id, str):
            raise TypeError("Job.model_id must be a string")
        if isinstance(self.deadline_ms, bool) or not isinstance(self.deadline_ms, int):
            raise TypeError("Job.deadline_ms must be an int")
        if self.deadline_ms <= 0:
            raise ValueError("Job.deadline_ms must be positive")

    @classmethod
    def from_dict(cls, kvs: Any, *, infer_missing: Any = False) -> Job:
        """Read a job from its JSON object, checking the types before any
        conversion (a float deadline or a list body is an error, not coerced)."""
        if not isinstance(kvs, dict):
            raise TypeError("a job must be a JSON object")
        missing = [name for name in _REQUIRED if name not in kvs]
        if missing:
            raise ValueError(f"a job needs the field(s) {', '.join(missing)}")
        # Checked before dataclasses-json converts them, whose errors name no field.
        kvs = dict(kvs, job_id=_uuid(kvs["job_id"]))
        if "format" in kvs:
            kvs["format"] = _wire_format(kvs["format"])
        for name, kind in (("model_id", str), ("request", dict), ("deadline_ms", int)):
            value = kvs.get(name)
            if name in kvs and (not isinstance(value, kind) or isinstance(value, bool)):
                raise TypeError(f"Job.{name} must be {kind.__name__}")
        return super().from_dict(kvs, infer_missing=infer_missing)

    def without_stream_flag(self) -> Job:
        """This job with any ``stream`` key left out of its body, for a caller
        who wants the whole reply (``complete()``): it is still read as a
        stream, since the relay always streams."""
        if "stream" not in self.request:
            return self
        request = {k: v for k, v in self.request.items() if k != "stream"}
        return replace(self, request=request)

    @classmethod
    def new(
        cls,
        model_id: str,
        request: Dict[str, Any],
        format: WireFormat = WireFormat.OPENAI,
        deadline_ms: int = DEFAULT_DEADLINE_MS,
    ) -> Job:
        """A job with a fresh random ``job_id``."""
        return cls(uuid.uuid4(), model_id, request, format, deadline_ms)


_REQUIRED = ("job_id", "model_id", "request")


def _uuid(value: Any) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    if isinstance(value, str):
        try:
            return uuid.UUID(value)
        except ValueError:
            pass
    raise ValueError(f"Job.job_id must be a UUID string, not {value!r:.80}")


def _wire_format(value: Any) -> WireFormat:
    try:
        return WireFormat(str(value).lower())
    except ValueError:
        valid = " or ".join(repr(f.value) for f in WireFormat)
        raise ValueError(f"Job.format must be {valid}, not {value!r:.80}") from None


@dataclass
class JobResult(DataClassJsonMixin):
    """What a finished job reports.

    Token counts are advisory: read from the stream's own usage events when it has
    them, otherwise None. ``input_tokens`` is the whole prompt, prompt-cache reads
    included, in both wire formats. ``duration_ms`` runs from the call to the end
    of the stream; ``first_byte_ms`` to the first body byte; ``bytes_relayed``
    counts the body. ``finish_reason`` is why generation stopped, as the stream
    says it (``stop``, ``length``, ``tool_calls``, ``end_turn``, ``max_tokens``,
    ...), or None when it says nothing; ``backend_id`` is the backend that served
    the job.
    """

    input_tokens: Optional[int]
    output_tokens: Optional[int]
    duration_ms: int
    first_byte_ms: Optional[int] = None
    bytes_relayed: int = 0
    finish_reason: Optional[str] = None
    backend_id: Optional[str] = None


@dataclass
class Reply(DataClassJsonMixin):
    """A whole reply, assembled from a job's stream (``JobStream.reply()``,
    ``Backend.complete()``): its text, its reasoning text ("" when the model sent
    none) and the job's result."""

    text: str
    reasoning: str
    result: JobResult

    @property
    def finish_reason(self) -> Optional[str]:
        return self.result.finish_reason
