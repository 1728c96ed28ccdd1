"""The dataclasses at the boundary and their JSON form."""

from __future__ import annotations

import json
import uuid

import pytest

from provider_agent.backend import (
    BackendHealth,
    BackendModel,
    Job,
    JobResult,
    WireFormat,
)

COORDINATOR_JOB = {
    "job_id": "8c8a2d64-2f3b-4bd1-9a57-2f4e5c8a1b00",
    "model_id": "qwen3-8b",
    "request": {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8},
    "format": "anthropic",
    "deadline_ms": 5000,
}


def test_job_from_the_coordinators_json() -> None:
    job = Job.from_json(json.dumps(COORDINATOR_JOB))
    assert job.job_id == uuid.UUID(COORDINATOR_JOB["job_id"])
    assert job.format is WireFormat.ANTHROPIC
    assert job.deadline_ms == 5000
    assert job.request == COORDINATOR_JOB["request"]
    assert json.loads(job.to_json()) == COORDINATOR_JOB


def test_job_defaults_to_openai_and_five_minutes() -> None:
    payload = {
        k: v for k, v in COORDINATOR_JOB.items() if k not in ("format", "deadline_ms")
    }
    job = Job.from_dict(payload)
    assert job.format is WireFormat.OPENAI
    assert job.deadline_ms == 300_000


def test_job_accepts_strings_for_id_and_format() -> None:
    job = Job(COORDINATOR_JOB["job_id"], "m", {}, "OpenAI")  # type: ignore[arg-type]
    assert isinstance(job.job_id, uuid.UUID)
    assert job.format is WireFormat.OPENAI


@pytest.mark.parametrize(
    "change, error, field",
    [
        ({"format": "grpc"}, ValueError, "Job.format"),
        ({"format": None}, ValueError, "Job.format"),
        ({"job_id": "not-a-uuid"}, ValueError, "Job.job_id"),
        ({"job_id": 7}, ValueError, "Job.job_id"),
        ({"job_id": None}, ValueError, "Job.job_id"),
        ({"deadline_ms": 0}, ValueError, "Job.deadline_ms"),
        ({"deadline_ms": 1.5}, TypeError, "Job.deadline_ms"),
        ({"request": ["not", "an", "object"]}, TypeError, "Job.request"),
        ({"model_id": 7}, TypeError, "Job.model_id"),
    ],
)
def test_job_rejects_invalid_fields(change: dict, error: type, field: str) -> None:
    with pytest.raises(error, match=field):
        Job.from_json(json.dumps({**COORDINATOR_JOB, **change}))


@pytest.mark.parametrize("field", ["job_id", "model_id", "request"])
def test_a_missing_field_is_named(field: str) -> None:
    payload = {k: v for k, v in COORDINATOR_JOB.items() if k != field}
    with pytest.raises(ValueError, match=f"needs the field\\(s\\) {field}$"):
        Job.from_json(json.dumps(payload))


def test_job_rejects_a_malformed_id_given_directly() -> None:
    with pytest.raises(ValueError, match="Job.job_id must be a UUID string"):
        Job("8c8a2d64", "m", {})  # type: ignore[arg-type]


def test_job_new_makes_a_fresh_id() -> None:
    first, second = Job.new("m", {}), Job.new("m", {})
    assert first.job_id != second.job_id


def test_wire_format_values_are_lower_case() -> None:
    assert [f.value for f in WireFormat] == ["openai", "anthropic"]


@pytest.mark.parametrize(
    "value",
    [
        BackendModel("tiny", 256, True),
        BackendModel("openai/gpt-4", None, False),
        BackendHealth(True, 3, None),
        BackendHealth(False, None, "cannot connect: Connection refused"),
        JobResult(12, 28, 420, first_byte_ms=35, bytes_relayed=1024),
        JobResult(1, 2, 3, finish_reason="end_turn"),
        JobResult(None, None, 5),
    ],
)
def test_round_trip_through_json(value: object) -> None:
    cls = type(value)
    assert cls.from_json(value.to_json()) == value  # type: ignore[attr-defined]
    assert cls.from_dict(value.to_dict()) == value  # type: ignore[attr-defined]


def test_field_names_follow_the_trait() -> None:
    assert BackendModel("m", 1, True).to_dict() == {
        "model_id": "m",
        "context_window": 1,
        "native": True,
    }
    assert BackendHealth(True, 1, None).to_dict() == {
        "reachable": True,
        "latency_ms": 1,
        "last_error": None,
    }
    assert set(JobResult(1, 2, 3).to_dict()) >= {
        "input_tokens",
        "output_tokens",
        "duration_ms",
    }
