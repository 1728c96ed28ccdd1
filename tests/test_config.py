"""agent.toml: what loads, what is refused (every problem at once, each with its
place), and how the backends it names are built without a key showing anywhere."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path
from typing import List

import pytest

import provider_agent.fleet as fleet_pkg
from provider_agent.backend import (
    BACKENDS,
    LlamaCppBackend,
    MissingApiKeyError,
    OpenRouterBackend,
    VllmBackend,
)
from provider_agent.fleet import (
    BackendConfig,
    Config,
    ConfigError,
    LimitsConfig,
    ModelPrice,
    PricingConfig,
    load_config,
)

from .server import ScriptedServer

EXAMPLE = Path(__file__).parent / "data" / "agent.example.toml"
KEY = "sk-SECRET-123"
LOCAL = sorted(kind for kind, cls in BACKENDS.items() if cls.native)
REMOTE = sorted(kind for kind, cls in BACKENDS.items() if not cls.native)
VLLM = '[[backends]]\nkind = "vllm"\nurl = "http://127.0.0.1:8000"\n'


def problems(text: str, source: str = "agent.toml") -> List[str]:
    with pytest.raises(ConfigError) as info:
        Config.from_toml(text, source)
    assert str(info.value) == "\n".join(info.value.problems)
    assert info.value.source == source
    for line in info.value.problems:
        assert line.startswith(f"{source}: ") and "\n" not in line
    return info.value.problems


def only_problem(text: str) -> str:
    found = problems(text)
    assert len(found) == 1, found
    return found[0]


# -- what loads ---------------------------------------------------------------


def test_the_example_config_loads_with_its_values() -> None:
    config = load_config(str(EXAMPLE))
    assert config.source == str(EXAMPLE)
    vllm, openrouter = config.backends
    assert (vllm.kind, vllm.url, vllm.api_key_env, vllm.index) == (
        "vllm",
        "http://localhost:8000",
        None,
        0,
    )
    assert (openrouter.kind, openrouter.url, openrouter.index) == (
        "openrouter",
        None,
        1,
    )
    assert openrouter.api_key_env == "OPENROUTER_API_KEY"
    assert openrouter.markup == 0.05
    assert vllm.models is None and vllm.markup is None and vllm.max_concurrent is None
    assert dict(vllm.options) == {}
    assert config.pricing.default_input_per_1m == 500_000
    assert config.pricing.default_output_per_1m == 750_000
    assert dict(config.pricing.models) == {
        "meta-llama/Llama-3.3-70B-Instruct": ModelPrice(300_000, 450_000),
        "mistralai/Mistral-Large": ModelPrice(800_000, 1_200_000),
    }
    assert config.limits == LimitsConfig(8, 200_000)
    assert sorted(config.sections) == [
        "coordinator",
        "identity",
        "observability",
        "operator",
    ]
    assert config.sections["observability"]["log_level"] == "info"
    assert config.sections["operator"]["display_name"] == "BlueBoxRig-01"


def test_the_example_is_the_reference_file_unchanged() -> None:
    reference = Path("/work/shared/reference/agent.example.toml")
    if not reference.exists():
        pytest.skip("the reference file is not on this machine")
    assert EXAMPLE.read_bytes() == reference.read_bytes()


def test_load_config_takes_a_path_and_names_it_as_given() -> None:
    assert load_config(EXAMPLE).source == str(EXAMPLE)


def test_prices_resolve_override_then_default_then_none() -> None:
    pricing = load_config(EXAMPLE).pricing
    assert pricing.resolve("mistralai/Mistral-Large") == ModelPrice(800_000, 1_200_000)
    assert pricing.resolve("any/other") == ModelPrice(500_000, 750_000)
    assert PricingConfig().resolve("any/other") is None


def test_a_config_with_only_backends_has_no_pricing_and_default_limits() -> None:
    config = Config.from_toml(VLLM)
    assert config.source == "<string>"
    assert config.pricing == PricingConfig(None, None)
    assert dict(config.pricing.models) == {}
    assert config.pricing.resolve("m") is None
    assert config.limits == LimitsConfig(max_concurrent=8, max_tokens_per_minute=None)
    assert dict(config.sections) == {}


def test_a_zero_model_price_is_a_free_model() -> None:
    config = Config.from_toml(
        VLLM + "[pricing]\ndefault_input_per_1m = 1\ndefault_output_per_1m = 2\n"
        '[pricing.models."free/one"]\ninput_per_1m = 0\noutput_per_1m = 0\n'
    )
    assert config.pricing.resolve("free/one") == ModelPrice(0, 0)
    assert ModelPrice(0, 0).is_zero
    assert not ModelPrice(0, 1).is_zero
    assert not config.pricing.resolve("paid").is_zero  # type: ignore[union-attr]


def test_every_backend_key_and_our_extensions_load() -> None:
    config = Config.from_toml(
        """
        [[backends]]
        kind = "llamacpp"
        url = "http://127.0.0.1:8080"
        api_key_env = "LLAMA_KEY"
        models = ["qwen3-8b", "gemma"]
        markup = 0
        max_concurrent = 256
        connect_timeout = 1
        health_timeout = 2.5
        request_timeout = 30
        stream_read_timeout = 600
        max_connections = 4
        headers = { X-Title = "rig" }

        [[backends]]
        kind = "venice"
        url = "https://api.venice.ai/api/v1"
        api_key_env = "VENICE_API_KEY"
        """
    )
    llama, venice = config.backends
    assert llama.models == ("qwen3-8b", "gemma")
    assert (llama.markup, llama.max_concurrent, llama.api_key_env) == (
        0.0,
        256,
        "LLAMA_KEY",
    )
    assert dict(llama.options) == {
        "connect_timeout": 1.0,
        "health_timeout": 2.5,
        "request_timeout": 30.0,
        "stream_read_timeout": 600.0,
        "max_connections": 4,
        "headers": {"X-Title": "rig"},
    }
    assert (venice.index, venice.url) == (1, "https://api.venice.ai/api/v1")


def test_unknown_top_level_sections_are_kept() -> None:
    config = Config.from_toml(VLLM + "[future]\nanswer = 42\n")
    assert config.sections["future"] == {"answer": 42}


def test_the_config_is_frozen() -> None:
    config = load_config(EXAMPLE)
    with pytest.raises(AttributeError):
        config.limits = LimitsConfig()  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.pricing.models["x"] = ModelPrice(1, 1)  # type: ignore[index]
    assert hash(config.backends[0]) == hash(load_config(EXAMPLE).backends[0])


# -- what is refused ----------------------------------------------------------


@pytest.mark.parametrize(
    "text, place, message",
    [
        (VLLM + "[limits]\nmax_concurent = 8\n", "limits.max_concurent", "unknown"),
        (VLLM + 'nmae = "x"\n', "backends[0].nmae", "unknown"),
        (
            VLLM + "[pricing]\ndefault_input_per_1m = 1\ndefault_output_per_1m = 1\n"
            "typo = 1\n",
            "pricing.typo",
            "unknown",
        ),
        (
            VLLM + "[pricing]\ndefault_input_per_1m = 1\ndefault_output_per_1m = 1\n"
            '[pricing.models."m"]\ninput_per_1m = 1\noutput_per_1m = 1\nin = 1\n',
            'pricing.models."m".in',
            "unknown",
        ),
    ],
)
def test_an_unknown_key_lists_the_valid_keys(
    text: str, place: str, message: str
) -> None:
    line = only_problem(text)
    assert line.startswith(f"agent.toml: {place}: {message} key")
    assert "valid keys: " in line
    if place.startswith("limits"):
        assert "max_concurrent, max_tokens_per_minute" in line
    if place.startswith("backends"):
        for key in ("kind", "url", "api_key_env", "models", "markup", "headers"):
            assert key in line


def test_an_api_key_in_an_entry_is_refused_without_quoting_it() -> None:
    line = only_problem(VLLM + f'api_key = "{KEY}"\n')
    assert "backends[0].api_key: unknown key" in line and "api_key_env" in line
    assert KEY not in line


def test_a_wrong_kind_lists_the_valid_kinds() -> None:
    line = only_problem('[[backends]]\nkind = "tgi"\nurl = "http://h:1"\n')
    assert line.startswith("agent.toml: backends[0].kind: unknown kind 'tgi'")
    for kind in BACKENDS:
        assert kind in line


@pytest.mark.parametrize("kind", LOCAL)
def test_a_local_kind_needs_a_url(kind: str) -> None:
    assert only_problem(f'[[backends]]\nkind = "{kind}"\n') == (
        f"agent.toml: backends[0].url: required for kind '{kind}'"
    )


@pytest.mark.parametrize("kind", REMOTE)
def test_a_remote_kind_needs_api_key_env_but_no_url(kind: str) -> None:
    assert only_problem(f'[[backends]]\nkind = "{kind}"\n') == (
        f"agent.toml: backends[0].api_key_env: required for kind '{kind}'"
    )
    config = Config.from_toml(f'[[backends]]\nkind = "{kind}"\napi_key_env = "K"\n')
    assert config.backends[0].url is None


@pytest.mark.parametrize(
    "url",
    ["ftp://127.0.0.1/x", "127.0.0.1:8000", "http://", "http://h:99999", "http://a b"],
)
@pytest.mark.parametrize("kind", ["vllm", "openrouter"])
def test_a_url_must_be_http(kind: str, url: str) -> None:
    text = f'[[backends]]\nkind = "{kind}"\nurl = "{url}"\napi_key_env = "K"\n'
    line = only_problem(text)
    assert line.startswith("agent.toml: backends[0].url: must be an http(s) URL")


def test_credentials_in_a_url_are_refused_without_quoting_them() -> None:
    line = only_problem(
        f'[[backends]]\nkind = "vllm"\nurl = "http://me:{KEY}@127.0.0.1:8000"\n'
    )
    assert "backends[0].url: must not hold credentials" in line
    assert KEY not in line
    line = only_problem(f'[[backends]]\nkind = "vllm"\nurl = "ftp://h/?key={KEY}"\n')
    assert line == "agent.toml: backends[0].url: must be an http(s) URL"


@pytest.mark.parametrize(
    "value, expected",
    [
        (f'"{KEY}"', "must be the name of an environment variable"),
        ('"MY KEY"', "must be the name of an environment variable"),
        ('"1KEY"', "must be the name of an environment variable"),
        ("12", "must be a string, not integer"),
    ],
)
def test_api_key_env_must_look_like_a_variable_name(value: str, expected: str) -> None:
    line = only_problem(f'[[backends]]\nkind = "openrouter"\napi_key_env = {value}\n')
    assert line.startswith(f"agent.toml: backends[0].api_key_env: {expected}")
    assert KEY not in line


def test_ollama_takes_no_key() -> None:
    line = only_problem(
        '[[backends]]\nkind = "ollama"\nurl = "http://h:11434"\napi_key_env = "K"\n'
    )
    assert line == "agent.toml: backends[0].api_key_env: kind 'ollama' takes no API key"


@pytest.mark.parametrize(
    "second",
    [
        'kind = "vllm"\nurl = "http://127.0.0.1:8000"',
        'kind = "vllm"\nurl = "http://127.0.0.1:8000/"',
        'kind = "vllm"\nurl = "HTTP://127.0.0.1:8000"',
        'kind = "vllm"\nurl = "http://127.0.0.1:8000/v1"',  # the same backend id
        'kind = "vllm"\nurl = "http://127.0.0.1:8000/v1/"',
        'kind = "openrouter"\napi_key_env = "OPENROUTER_API_KEY"',
        'kind = "openrouter"\napi_key_env = "OTHER"\n'
        'url = "https://OpenRouter.ai:443/api/v1/"',
    ],
)
def test_duplicate_backends_are_refused_naming_both(second: str) -> None:
    kind = "openrouter" if "openrouter" in second else "vllm"
    first = 0 if kind == "vllm" else 1
    text = (
        VLLM + '[[backends]]\nkind = "openrouter"\napi_key_env = "OPENROUTER_API_KEY"\n'
        f"[[backends]]\n{second}\n"
    )
    line = only_problem(text)
    assert line.startswith(f"agent.toml: backends[2]: duplicate of backends[{first}]")


def test_the_same_kind_on_other_servers_is_no_duplicate() -> None:
    config = Config.from_toml(
        VLLM
        + '[[backends]]\nkind = "vllm"\nurl = "http://127.0.0.1:8001"\n'
        + '[[backends]]\nkind = "llamacpp"\nurl = "http://127.0.0.1:8000"\n'
        + '[[backends]]\nkind = "vllm"\nurl = "http://10.0.0.2:8000"\n'
        'api_key_env = "K"\n'
        '[[backends]]\nkind = "vllm"\nurl = "http://10.0.0.3:8000"\n'
        'api_key_env = "K"\n'
    )
    assert len(config.backends) == 5


@pytest.mark.parametrize("value", [0, 257, 999, -1])
def test_limits_max_concurrent_is_1_to_256(value: int) -> None:
    line = only_problem(VLLM + f"[limits]\nmax_concurrent = {value}\n")
    assert line == (
        f"agent.toml: limits.max_concurrent: must be from 1 to 256, not {value}"
    )


def test_a_backend_max_concurrent_is_1_to_256() -> None:
    line = only_problem(VLLM + "max_concurrent = 999\n")
    assert line.startswith("agent.toml: backends[0].max_concurrent: must be from 1")


@pytest.mark.parametrize("name", ["default_input_per_1m", "default_output_per_1m"])
def test_zero_default_prices_are_refused(name: str) -> None:
    prices = {"default_input_per_1m": 5, "default_output_per_1m": 5, name: 0}
    table = "".join(f"{key} = {value}\n" for key, value in prices.items())
    line = only_problem(VLLM + "[pricing]\n" + table)
    assert line == f"agent.toml: pricing.{name}: must be > 0, not 0"


def test_pricing_needs_both_defaults() -> None:
    found = problems(VLLM + '[pricing.models."m"]\ninput_per_1m = 1\n')
    assert found == [
        "agent.toml: pricing.default_input_per_1m: required",
        "agent.toml: pricing.default_output_per_1m: required",
        'agent.toml: pricing.models."m".output_per_1m: required',
    ]
    assert len(problems(VLLM + "[pricing]\n")) == 2


PRICED = "[pricing]\ndefault_input_per_1m = 1\ndefault_output_per_1m = 1\n"
#: Where a bad line goes: after one good backend entry, into a table, or alone.
AT = {
    "entry": VLLM,
    "limits": VLLM + "[limits]\n",
    "pricing": VLLM + "[pricing]\ndefault_output_per_1m = 1\n",
    "priced": VLLM + PRICED,
    "alone": "",
}


@pytest.mark.parametrize(
    "at, line, place, message",
    [
        (
            "limits",
            "max_concurrent = true",
            "limits.max_concurrent",
            "an integer, not boolean",
        ),
        (
            "limits",
            "max_concurrent = 8.0",
            "limits.max_concurrent",
            "an integer, not float",
        ),
        (
            "limits",
            'max_concurrent = "8"',
            "limits.max_concurrent",
            "an integer, not string",
        ),
        (
            "limits",
            "max_tokens_per_minute = 0",
            "limits.max_tokens_per_minute",
            "> 0, not 0",
        ),
        (
            "limits",
            "max_tokens_per_minute = false",
            "limits.max_tokens_per_minute",
            "an integer, not boolean",
        ),
        (
            "pricing",
            "default_input_per_1m = true",
            "pricing.default_input_per_1m",
            "an integer, not boolean",
        ),
        (
            "pricing",
            "default_input_per_1m = 0.5",
            "pricing.default_input_per_1m",
            "an integer, not float",
        ),
        (
            "priced",
            "models.m = { input_per_1m = -1, output_per_1m = 0 }",
            'pricing.models."m".input_per_1m',
            ">= 0, not -1",
        ),
        (
            "priced",
            "models.m = { input_per_1m = 1, output_per_1m = 1.5 }",
            'pricing.models."m".output_per_1m',
            "an integer, not float",
        ),
        ("priced", "models.m = 5", 'pricing.models."m"', "a table, not integer"),
        ("priced", "models = 1", "pricing.models", "a table, not integer"),
        ("entry", "markup = -0.1", "backends[0].markup", "a number >= 0"),
        ("entry", "markup = true", "backends[0].markup", "a number, not boolean"),
        ("entry", 'markup = "5%"', "backends[0].markup", "a number, not string"),
        ("entry", "markup = nan", "backends[0].markup", "a number >= 0"),
        (
            "entry",
            "max_concurrent = true",
            "backends[0].max_concurrent",
            "an integer, not boolean",
        ),
        (
            "entry",
            'models = "m"',
            "backends[0].models",
            "an array of strings, not string",
        ),
        ("entry", "models = []", "backends[0].models", "at least one model id"),
        ("entry", 'models = ["a", ""]', "backends[0].models[1]", "not be empty"),
        (
            "entry",
            'models = ["a", 1]',
            "backends[0].models[1]",
            "a string, not integer",
        ),
        ("entry", "request_timeout = 0", "backends[0].request_timeout", "a number > 0"),
        (
            "entry",
            "connect_timeout = inf",
            "backends[0].connect_timeout",
            "a number > 0",
        ),
        (
            "entry",
            "health_timeout = true",
            "backends[0].health_timeout",
            "a number, not boolean",
        ),
        ("entry", "max_connections = 0", "backends[0].max_connections", "> 0, not 0"),
        (
            "entry",
            "max_connections = 2.0",
            "backends[0].max_connections",
            "an integer, not float",
        ),
        (
            "entry",
            'headers = "X-Title: rig"',
            "backends[0].headers",
            "a table of strings",
        ),
        (
            "entry",
            'headers = { "X Title" = "rig" }',
            "backends[0].headers.X Title",
            "not a valid header name",
        ),
        (
            "entry",
            "headers = { X-Title = 1 }",
            "backends[0].headers.X-Title",
            "a string, not integer",
        ),
        (
            "alone",
            '[[backends]]\nkind = "vllm"\nurl = 8000',
            "backends[0].url",
            "a string, not integer",
        ),
        (
            "alone",
            '[[backends]]\nkind = 1\nurl = "http://h:1"',
            "backends[0].kind",
            "a string, not integer",
        ),
        (
            "alone",
            '[[backends]]\nurl = "http://h:1"',
            "backends[0].kind",
            "required; one of",
        ),
        ("alone", 'backends = ["vllm"]', "backends[0]", "a table, not string"),
        ("alone", 'backends = "vllm"', "backends", "an array of tables"),
        ("alone", "", "backends", "at least one [[backends]] entry"),
        ("alone", "backends = []", "backends", "at least one [[backends]] entry"),
        ("alone", "limits = 8\n" + VLLM, "limits", "a table, not integer"),
        ("alone", "pricing = 8\n" + VLLM, "pricing", "a table, not integer"),
    ],
)
def test_bad_values_are_refused_with_their_place(
    at: str, line: str, place: str, message: str
) -> None:
    problem = only_problem(AT[at] + line + "\n")
    assert problem.startswith(f"agent.toml: {place}: "), problem
    assert message in problem, problem


@pytest.mark.parametrize("name", ["Authorization", "x-api-key"])
def test_a_key_header_is_refused_without_quoting_it(name: str) -> None:
    line = only_problem(VLLM + f'headers = {{ {name} = "Bearer {KEY}" }}\n')
    assert (
        line == f"agent.toml: backends[0].headers.{name}: the key goes in api_key_env"
    )


def test_every_problem_of_a_file_is_reported_together() -> None:
    found = problems(
        """
        [[backends]]
        kind = "vllm"

        [[backends]]
        kind = "openrouter"
        url = "ftp://openrouter.ai"

        [[backends]]
        kind = "tgi"

        [pricing]
        default_input_per_1m = 0
        default_output_per_1m = 750_000

        [limits]
        max_concurrent = 999
        max_concurent = 8
        """
    )
    places = [line.split(": ")[1] for line in found]
    assert places == [
        "backends[0].url",
        "backends[1].url",
        "backends[1].api_key_env",
        "backends[2].kind",
        "pricing.default_input_per_1m",
        "limits.max_concurent",
        "limits.max_concurrent",
    ]


def test_a_toml_syntax_error_is_one_problem_with_its_line() -> None:
    line = only_problem(VLLM + "[limits]\nmax_concurrent = = 8\n")
    assert line.startswith("agent.toml: line 5, column 18: invalid TOML: ")


def test_an_unreadable_file_is_one_problem(tmp_path: Path) -> None:
    missing = tmp_path / "agent.toml"
    with pytest.raises(ConfigError) as info:
        load_config(missing)
    assert info.value.problems == [f"{missing}: cannot read: No such file or directory"]
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path)
    missing.write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(missing)


def test_the_source_is_the_path_as_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("agent.toml").write_text('[[backends]]\nkind = "vllm"\n')
    with pytest.raises(ConfigError) as info:
        load_config("agent.toml")
    assert info.value.problems == [
        "agent.toml: backends[0].url: required for kind 'vllm'"
    ]


def test_config_error_is_a_value_error_that_pickles() -> None:
    error = ConfigError("a.toml", ["a.toml: x: bad", "a.toml: y: bad"])
    assert isinstance(error, ValueError)
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.source, copy.problems, str(copy)) == (
        "a.toml",
        error.problems,
        "a.toml: x: bad\na.toml: y: bad",
    )


# -- building the backends ----------------------------------------------------


def test_build_backends_skips_an_unset_or_blank_key_variable(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("OPENROUTER_API_KEY", raising=False)
    monkeypatch.setenv("BLANK_KEY", "   ")
    monkeypatch.setenv("VENICE_KEY", KEY)
    config = Config.from_toml(
        VLLM
        + '[[backends]]\nkind = "openrouter"\napi_key_env = "OPENROUTER_API_KEY"\n'
        + '[[backends]]\nkind = "llamacpp"\nurl = "http://127.0.0.1:8080"\n'
        'api_key_env = "BLANK_KEY"\n'
        + '[[backends]]\nkind = "venice"\napi_key_env = "VENICE_KEY"\n',
        "agent.toml",
    )
    with caplog.at_level(logging.WARNING, logger="provider_agent.fleet"):
        built = config.build_backends()
    assert [(entry.index, backend.id) for entry, backend in built] == [
        (0, "vllm:http://127.0.0.1:8000"),
        (3, "venice"),
    ]
    assert built[1][1].has_api_key
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in warnings] == [
        "agent.toml: backends[1] (openrouter): environment variable "
        "OPENROUTER_API_KEY is unset or blank; backend skipped",
        "agent.toml: backends[2] (llamacpp): environment variable "
        "BLANK_KEY is unset or blank; backend skipped",
    ]
    assert all(r.name == "provider_agent.fleet.config" for r in warnings)
    assert KEY not in caplog.text
    for _, backend in built:
        backend.close()


def test_build_raises_missing_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENROUTER_API_KEY", raising=False)
    entry = load_config(EXAMPLE).backends[1]
    with pytest.raises(MissingApiKeyError, match="OPENROUTER_API_KEY"):
        entry.build()
    monkeypatch.setenv("OPENROUTER_API_KEY", KEY)
    with entry.build() as backend:
        assert isinstance(backend, OpenRouterBackend) and backend.has_api_key


def test_a_local_backend_sends_the_key_its_variable_names(
    server: ScriptedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLAMA_KEY", KEY)
    server.json("GET", "/health", {"status": "ok"})
    config = Config.from_toml(
        f'[[backends]]\nkind = "llamacpp"\nurl = "{server.url}"\n'
        'api_key_env = "LLAMA_KEY"\n'
    )
    [(entry, backend)] = config.build_backends()
    with backend:
        assert isinstance(backend, LlamaCppBackend)
        assert backend.health().reachable
    assert server.last("/health").headers["Authorization"] == f"Bearer {KEY}"


def test_backend_options_reach_the_backend_and_the_server(
    server: ScriptedServer,
) -> None:
    server.json("GET", "/health", b"")
    config = Config.from_toml(
        f'[[backends]]\nkind = "vllm"\nurl = "{server.url}/"\n'
        'headers = { X-Title = "rig-01" }\nhealth_timeout = 2\nrequest_timeout = 7\n'
    )
    with config.backends[0].build() as backend:
        assert isinstance(backend, VllmBackend)
        assert (backend.health_timeout, backend.request_timeout) == (2.0, 7.0)
        assert backend.health().reachable
    assert server.last("/health").headers["X-Title"] == "rig-01"


def test_a_setting_the_backend_refuses_becomes_a_config_error() -> None:
    config = Config.from_toml(VLLM + 'headers = { X-Title = "caf\\u00e9" }\n', "a.toml")
    with pytest.raises(ConfigError) as info:
        config.build_backends()
    [line] = info.value.problems
    assert line.startswith("a.toml: backends[0]: header 'X-Title'")


def test_no_repr_shows_a_key_or_a_header_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLAMA_KEY", KEY)
    config = Config.from_toml(
        f'[[backends]]\nkind = "llamacpp"\nurl = "http://127.0.0.1:8080"\n'
        f'api_key_env = "LLAMA_KEY"\nheaders = {{ X-Proxy-Token = "{KEY}" }}\n'
    )
    [(entry, backend)] = config.build_backends()
    with backend:
        for text in (repr(config), repr(entry), str(entry), repr(backend)):
            assert KEY not in text
        assert "LLAMA_KEY" in repr(entry) and "X-Proxy-Token" in repr(entry)
    assert isinstance(entry, BackendConfig)


# -- the package --------------------------------------------------------------


def test_all_names_are_exported_and_exist() -> None:
    assert sorted(fleet_pkg.__all__) == sorted(set(fleet_pkg.__all__))
    for name in fleet_pkg.__all__:
        assert hasattr(fleet_pkg, name), name


def test_the_documented_example_is_the_example_file() -> None:
    page = (Path(__file__).parent.parent / "docs" / "fleet.md").read_text()
    example = page.split("### The example\n\n```toml\n", 1)[1].split("```", 1)[0]
    assert example == EXAMPLE.read_text()
