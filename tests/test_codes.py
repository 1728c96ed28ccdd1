"""``error_code``: every exception class of the package has its job error code."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from typing import Dict, List, Type

import pytest

import provider_agent
from provider_agent.backend import (
    BackendError,
    BackendTimeoutError,
    BadStatusError,
    JobCancelledError,
    MissingApiKeyError,
    ModelNotFoundError,
    ProtocolError,
    StreamError,
    TransportError,
    UnreachableError,
    UnsupportedWireFormatError,
    WireFormat,
)
from provider_agent.fleet import (
    CODES,
    AllBackendsFailedError,
    ConfigError,
    FleetError,
    ModelNotLoadedError,
    OutOfCapacityError,
    error_code,
)
from provider_agent.wsgi import MissingExtraError, RequestError, gateway_error

OPENAI = WireFormat.OPENAI
B = "vllm:http://127.0.0.1:8000"

#: One instance of every exception class the package defines, and its code.
EXAMPLES: Dict[Type[BaseException], List[tuple]] = {
    BackendError: [(BackendError(B, "other"), "internal")],
    UnreachableError: [(UnreachableError(B, "refused"), "backend_unreachable")],
    BadStatusError: [
        (BadStatusError(B, 400), "internal"),
        (BadStatusError(B, 401), "auth_rejected_by_backend"),
        (BadStatusError(B, 403), "auth_rejected_by_backend"),
        (BadStatusError(B, 429), "out_of_capacity"),
        (BadStatusError(B, 500), "internal"),
        (BadStatusError(B, 502), "backend_unreachable"),
        (BadStatusError(B, 503), "backend_unreachable"),
        (BadStatusError(B, 504), "backend_timeout"),
    ],
    ModelNotFoundError: [(ModelNotFoundError(B, "m"), "model_not_loaded")],
    MissingApiKeyError: [(MissingApiKeyError(B, "no key"), "auth_rejected_by_backend")],
    BackendTimeoutError: [(BackendTimeoutError(B, "deadline"), "backend_timeout")],
    TransportError: [(TransportError(B, "reset"), "backend_unreachable")],
    ProtocolError: [(ProtocolError(B, "html"), "internal")],
    UnsupportedWireFormatError: [
        (UnsupportedWireFormatError(B, "no"), "unsupported_format")
    ],
    JobCancelledError: [(JobCancelledError(B, "cancelled"), "cancelled")],
    StreamError: [(StreamError(B, "cut", 5), "stream_error")],
    FleetError: [(FleetError("other"), "internal")],
    ModelNotLoadedError: [(ModelNotLoadedError("m"), "model_not_loaded")],
    OutOfCapacityError: [(OutOfCapacityError("full"), "out_of_capacity")],
    AllBackendsFailedError: [
        (
            AllBackendsFailedError(
                "m", [UnreachableError(B, "a"), BadStatusError("llamacpp:x", 503)]
            ),
            "backend_unreachable",
        ),
        (
            AllBackendsFailedError(
                "m", [BadStatusError(B, 401), BadStatusError("llamacpp:x", 403)]
            ),
            "auth_rejected_by_backend",
        ),
        (
            AllBackendsFailedError(
                "m", [BadStatusError(B, 429), BadStatusError("llamacpp:x", 401)]
            ),
            "backend_unreachable",
        ),
    ],
    ConfigError: [(ConfigError("agent.toml", ["agent.toml: x: bad"]), "internal")],
    MissingExtraError: [(MissingExtraError("no waitress"), "internal")],
    # The gateway's own refusals never leave it (they become replies).
    RequestError: [
        (RequestError(gateway_error(400, "bad", OPENAI, code="x")), "internal")
    ],
}


def package_exceptions() -> List[Type[BaseException]]:
    found = set()
    for info in pkgutil.walk_packages(provider_agent.__path__, "provider_agent."):
        if info.name.startswith("provider_agent.cli") or info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, BaseException) and obj.__module__.startswith(
                "provider_agent."
            ):
                found.add(obj)
    return sorted(found, key=lambda c: c.__name__)


def test_every_exception_class_of_the_package_has_an_example():
    assert set(package_exceptions()) == set(EXAMPLES)


CASES = [case for cases in EXAMPLES.values() for case in cases]


@pytest.mark.parametrize(
    "exc, code", CASES, ids=[f"{type(e).__name__}-{c}" for e, c in CASES]
)
def test_error_code(exc, code):
    assert error_code(exc) == code
    assert code in CODES


def test_anything_else_is_internal():
    assert error_code(ValueError("bad job")) == "internal"
    assert error_code(KeyError("x")) == "internal"


def test_every_code_is_reachable():
    assert {code for _, code in CASES} == set(CODES)
