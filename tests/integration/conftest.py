"""Live engines for the integration tests: a llama.cpp server and a vLLM.

The engines are prepared once into the cache by ``scripts/build_llama_server.py``
and ``scripts/setup_vllm.py`` (``tox -e integration`` runs both first). A missing
or broken engine is an error, never a skip: these tests exist to prove the SDK
against the real servers.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any, Iterator, List

import pytest

from provider_agent.backend import LlamaCppBackend, VllmBackend

from ..processes import free_port
from .engines import Engine, script

#: llama.cpp splits -c across -np slots: each slot (each request) gets 256 tokens.
LLAMA_CTX = 512
LLAMA_SLOTS = 2
VLLM_MAX_MODEL_LEN = 4096
VLLM_MODEL = "tiny"


def _prepared(name: str, ready: Path) -> None:
    if not ready.exists():
        pytest.fail(
            f"{name} is not prepared: run `python scripts/{name}.py` "
            "(or `tox -e integration`, which prepares both engines first)",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def llama_server_binary() -> Path:
    build = script("build_llama_server")
    _prepared("build_llama_server", build.home() / "finished")
    return Path(build.prepare())


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from .tiny_gguf import write

    return write(tmp_path_factory.mktemp("gguf") / "tiny.gguf")


def llama_engine(binary: Path, model: Path, *extra: object, name: str) -> Engine:
    """A llama-server with the tiny model and two slots of 256 tokens (not yet
    started). Context shift lets a generation run past the window, so that a
    long one lasts seconds even at the tiny model's ~2,000 tokens/s."""
    port = free_port()
    command = [binary, "-m", model, "--host", "127.0.0.1", "--port", port]
    command += ["-c", LLAMA_CTX, "-np", LLAMA_SLOTS, "--threads", 2]
    command += ["--context-shift", *extra]
    return Engine(name, command, port=port, ready_within=60)


@pytest.fixture(scope="session")
def llama(llama_server_binary: Path, tiny_gguf: Path) -> Iterator[Engine]:
    engine = llama_engine(llama_server_binary, tiny_gguf, name="llama-server").start()
    yield engine
    engine.stop()
    assert engine.stopped_clean, f"{engine.name} left processes or files behind"


@pytest.fixture
def llama_spare(llama_server_binary: Path, tiny_gguf: Path) -> Iterator[Engine]:
    """A second llama-server with the same model, of one test's own: the test
    may stop it (``stop()`` again here is a no-op)."""
    engine = llama_engine(llama_server_binary, tiny_gguf, name="llama-spare").start()
    yield engine
    engine.stop()
    assert engine.stopped_clean, f"{engine.name} left processes or files behind"


@pytest.fixture(scope="session")
def llama_key() -> str:
    return "llama-" + secrets.token_hex(16)


@pytest.fixture(scope="session")
def llama_keyed(
    llama_server_binary: Path, tiny_gguf: Path, llama_key: str
) -> Iterator[Engine]:
    engine = llama_engine(
        llama_server_binary,
        tiny_gguf,
        "--api-key",
        llama_key,
        name="llama-server-keyed",
    ).start()
    yield engine
    engine.stop()
    assert engine.stopped_clean, f"{engine.name} left processes or files behind"


@pytest.fixture
def llamacpp(llama: Engine) -> Iterator[LlamaCppBackend]:
    with LlamaCppBackend(llama.url) as backend:
        yield backend


@pytest.fixture(scope="session")
def vllm_key() -> str:
    return "vllm-" + secrets.token_hex(16)


@pytest.fixture(scope="session")
def vllm(vllm_key: str) -> Iterator[Engine]:
    setup = script("setup_vllm")
    _prepared("setup_vllm", setup.home() / "finished")
    python = setup.prepare()
    port = free_port()
    engine = Engine(
        "vllm",
        [
            python,
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            setup.model_path(),
            "--served-model-name",
            VLLM_MODEL,
            "--host",
            "127.0.0.1",
            "--port",
            port,
            "--max-model-len",
            VLLM_MAX_MODEL_LEN,
            "--enforce-eager",
            "--api-key",
            vllm_key,
        ],
        port=port,
        env={
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "VLLM_CPU_KVCACHE_SPACE": "1",
            "VLLM_NO_USAGE_STATS": "1",
            "DO_NOT_TRACK": "1",
        },
        ready_within=300,
    )
    # Compiled kernels and the like go to the engine's own temp directory.
    engine.env["VLLM_CACHE_ROOT"] = str(engine.tmp / "vllm-cache")
    engine.start()
    yield engine
    engine.stop()
    assert engine.stopped_clean, f"{engine.name} left processes or files behind"


@pytest.fixture
def vllm_backend(vllm: Engine, vllm_key: str) -> Iterator[VllmBackend]:
    with VllmBackend(vllm.url, api_key=vllm_key) as backend:
        yield backend


class _NoSkips:
    """Fails the run when any integration test was skipped: a skip is not a pass."""

    def __init__(self) -> None:
        self.skipped: list[str] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.skipped and report.nodeid.startswith("tests/integration/"):
            self.skipped.append(report.nodeid)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.skipped and session.exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        for nodeid in self.skipped:
            terminalreporter.write_line(
                f"FAILED (skipped, which integration tests must not be): {nodeid}",
                red=True,
            )


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(_NoSkips(), "integration-no-skips")


def pytest_collection_modifyitems(items: List[pytest.Item]) -> None:
    # The per-test timeout bounds each test, not the engines' start (vLLM needs
    # about a minute, bounded by its own ``ready_within``) nor their stop.
    for item in items:
        if item.nodeid.startswith("tests/integration/"):
            item.add_marker(pytest.mark.timeout(120, func_only=True))
