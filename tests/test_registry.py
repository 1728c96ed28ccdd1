"""The registry, the public surface and import hygiene."""

from __future__ import annotations

import subprocess
import sys

import pytest

import provider_agent.backend as backend_pkg
from provider_agent.backend import (
    BACKENDS,
    Backend,
    LlamaCppBackend,
    LmStudioBackend,
    MissingApiKeyError,
    OllamaBackend,
    OpenRouterBackend,
    VeniceBackend,
    VllmBackend,
    WireFormat,
    create_backend,
)


def test_the_registry_holds_the_six_kinds() -> None:
    assert BACKENDS == {
        "vllm": VllmBackend,
        "llamacpp": LlamaCppBackend,
        "lmstudio": LmStudioBackend,
        "ollama": OllamaBackend,
        "openrouter": OpenRouterBackend,
        "venice": VeniceBackend,
    }
    for kind, cls in BACKENDS.items():
        assert cls.kind == kind
        assert issubclass(cls, Backend)
        assert cls.wire_formats <= frozenset(WireFormat)


def test_local_and_remote_defaults() -> None:
    assert VllmBackend().url == "http://127.0.0.1:8000"
    assert LlamaCppBackend().url == "http://127.0.0.1:8080"
    assert LmStudioBackend().url == "http://127.0.0.1:1234"
    assert OllamaBackend().url == "http://127.0.0.1:11434"
    assert OpenRouterBackend("k").url == "https://openrouter.ai/api/v1"
    assert VeniceBackend("k").url == "https://api.venice.ai/api/v1"
    assert VllmBackend().id == "vllm:http://127.0.0.1:8000"
    assert OpenRouterBackend("k").id == "openrouter"
    assert VeniceBackend("k").wire_formats == frozenset({WireFormat.OPENAI})


def test_create_backend_lists_the_valid_kinds() -> None:
    with pytest.raises(ValueError) as info:
        create_backend("tgi")
    for kind in BACKENDS:
        assert kind in str(info.value)


def test_create_backend_builds_each_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-or")
    monkeypatch.setenv("VENICE_API_KEY", "sk-ve")
    for kind, cls in BACKENDS.items():
        backend = create_backend(kind)
        assert type(backend) is cls
        backend.close()
    custom = create_backend("llamacpp", "http://127.0.0.1:9999/")
    assert custom.id == "llamacpp:http://127.0.0.1:9999"


def test_create_backend_reads_the_named_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MY_KEY", "sk-mine")
    assert create_backend("vllm", api_key_env="MY_KEY").has_api_key
    monkeypatch.delenv("MY_KEY")
    with pytest.raises(MissingApiKeyError, match="MY_KEY"):
        create_backend("vllm", api_key_env="MY_KEY")
    monkeypatch.delenv("OPENROUTER_API_KEY", raising=False)
    with pytest.raises(MissingApiKeyError, match="OPENROUTER_API_KEY"):
        create_backend("openrouter")


@pytest.mark.parametrize(
    "url", ["127.0.0.1:8000", "ftp://host", "http://", "", "http://127.0.0.1:99999"]
)
def test_a_bad_url_is_refused_at_construction(url: str) -> None:
    with pytest.raises(ValueError):
        VllmBackend(url or "http:///nohost")


def test_credentials_in_the_url_are_refused() -> None:
    with pytest.raises(ValueError, match="api_key"):
        VllmBackend("http://user:secret@127.0.0.1:8000")


def test_all_names_are_exported_and_exist() -> None:
    assert sorted(backend_pkg.__all__) == sorted(set(backend_pkg.__all__))
    for name in backend_pkg.__all__:
        assert hasattr(backend_pkg, name), name
    public = {n for n in dir(backend_pkg) if not n.startswith("_")}
    exported_classes = {
        n
        for n in public
        if isinstance(getattr(backend_pkg, n), type)
        and getattr(backend_pkg, n).__module__.startswith("provider_agent")
    }
    assert exported_classes <= set(backend_pkg.__all__)


def test_importing_the_library_does_not_import_click() -> None:
    code = (
        "import sys, provider_agent.backend, provider_agent.scan; "
        "print('click' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"


def test_the_package_ships_py_typed() -> None:
    """In the installed distribution, not only in the source tree (tox installs
    the built package; an editable install has only the tree to show)."""
    import importlib.metadata
    import importlib.resources
    import json

    dist = importlib.metadata.distribution("provider-agent")
    direct = json.loads(dist.read_text("direct_url.json") or "{}")
    if direct.get("dir_info", {}).get("editable"):
        files = importlib.resources.files("provider_agent")
        assert files.joinpath("py.typed").is_file()
    else:
        shipped = [str(f) for f in dist.files or []]
        assert "provider_agent/py.typed" in shipped, shipped
