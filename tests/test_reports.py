"""The library behind the command line: config lookup, --backend values, tables
for a terminal or a pipe, Nagios and Prometheus output, model rows, the request
of a prompt and the summary of a job."""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

import pytest

from provider_agent.backend import BackendHealth, BackendModel, JobResult, WireFormat
from provider_agent.console.inventory import model_rows
from provider_agent.console.monitoring import (
    HealthRow,
    exit_code,
    health_rows,
    nagios_line,
    nagios_unknown,
    prometheus_text,
    write_atomic,
)
from provider_agent.console.oneshot import prompt_request, read_request, summary_line
from provider_agent.console.table import (
    Column,
    printable,
    render,
    use_colour,
    use_terminal,
)
from provider_agent.console.targets import (
    Target,
    config_from_targets,
    find_config,
    identify,
    parse_target,
)
from provider_agent.console.validation import probe_problems
from provider_agent.fleet.config import Config, ModelPrice, PricingConfig
from provider_agent.scan import ScanResult, build_all, scan, unbuilt

from . import fakes
from .server import ScriptedServer

# -- where the config comes from -----------------------------------------------


def test_config_lookup_order(tmp_path: Path) -> None:
    app_dir, cwd = tmp_path / "app", tmp_path / "cwd"
    app_dir.mkdir()
    cwd.mkdir()
    env = {"PROVIDER_AGENT_CONFIG": str(tmp_path / "env.toml")}
    args = (str(app_dir), str(cwd))
    assert find_config("given.toml", env, *args) == Path("given.toml")
    assert find_config(None, env, *args) == tmp_path / "env.toml"
    assert find_config(None, {}, *args) is None
    (cwd / "agent.toml").write_text("")
    assert find_config(None, {}, *args) == cwd / "agent.toml"
    (app_dir / "agent.toml").write_text("")
    assert find_config(None, {}, *args) == app_dir / "agent.toml"
    assert find_config(None, {"PROVIDER_AGENT_CONFIG": " "}, *args) == (
        app_dir / "agent.toml"
    )


@pytest.mark.parametrize(
    "spec, target",
    [
        ("llamacpp", Target("llamacpp", None)),
        ("llamacpp=127.0.0.1:8080", Target("llamacpp", "http://127.0.0.1:8080")),
        ("vllm=https://gpu:8000/v1", Target("vllm", "https://gpu:8000/v1")),
        ("http://gpu:8000", Target(None, "http://gpu:8000")),
        ("gpu:8000", Target(None, "http://gpu:8000")),
        ("http://h/?a=b", Target(None, "http://h/?a=b")),
        ("ollama=", Target("ollama", None)),
    ],
)
def test_parse_target(spec: str, target: Target) -> None:
    assert parse_target(spec) == target


@pytest.mark.parametrize("spec", ["tgi", "tgi=http://x"])
def test_parse_target_refuses_an_unknown_kind(spec: str) -> None:
    with pytest.raises(ValueError, match="valid kinds: llamacpp, lmstudio"):
        parse_target(spec)


@pytest.mark.parametrize("spec", ["vllm=ftp://x", "ftp://x", "vllm=bad host:1"])
def test_parse_target_refuses_a_url_that_is_not_http(spec: str) -> None:
    with pytest.raises(ValueError, match="not an http"):
        parse_target(spec)


def test_identify_asks_a_bare_url_its_kind(server: ScriptedServer) -> None:
    server.json("GET", "/health", {}, headers={"Server": "llama.cpp"})
    assert identify(Target(None, server.url)) == Target("llamacpp", server.url)
    assert identify(Target("vllm", None)) == Target("vllm", None)
    server.json("GET", "/health", {})
    with pytest.raises(ValueError, match="--backend KIND="):
        identify(Target(None, server.url))
    with pytest.raises(ValueError, match="cannot ask which kind.*cannot connect"):
        identify(Target(None, "http://127.0.0.1:9"))


def test_config_from_targets_names_one_key_variable() -> None:
    config = config_from_targets(
        [Target("llamacpp", "http://h:1"), Target("ollama", None)], "LLAMA_KEY"
    )
    assert config.source == "--backend"
    assert [(b.kind, b.url, b.api_key_env, b.index) for b in config.backends] == [
        ("llamacpp", "http://h:1", "LLAMA_KEY", 0),
        ("ollama", None, None, 1),  # it takes no key
    ]


# -- tables --------------------------------------------------------------------

COLUMNS = [Column("NAME"), Column("STATUS"), Column("LATENCY", "ms")]
ROWS = [["a", "up", 12], ["bb\tb", "down", None]]


def test_a_terminal_gets_a_header_aligned_columns_and_units() -> None:
    assert render(COLUMNS, ROWS, terminal=True) == (
        "NAME  STATUS  LATENCY\na     up      12 ms\nbb b  down    -\n"
    )


def test_a_pipe_gets_tab_separated_raw_rows() -> None:
    assert render(COLUMNS, ROWS, terminal=False) == "a\tup\t12\nbb b\tdown\t\n"
    assert render(COLUMNS, [[True, False, None]], terminal=False) == "true\tfalse\t\n"


def test_colour_only_on_a_terminal_without_no_color() -> None:
    coloured = render(COLUMNS, ROWS, terminal=True, colour=True)
    assert "\x1b[32mup\x1b[0m" in coloured and "\x1b[31mdown\x1b[0m" in coloured
    assert use_colour(True, {}) and not use_colour(True, {"NO_COLOR": "1"})
    assert not use_colour(False, {})


def test_a_terminal_gets_no_control_character_but_tab_and_newline() -> None:
    assert printable("a\x1b[2Jb\tc\nd\re\x7f\x9b") == "a^[[2Jb\tc\nd^Me^?\\x9b"
    shown = render([Column("E")], [["\x1b[31mred"]], terminal=True)
    assert shown == "E\n^[[31mred\n"


def test_the_terminal_can_be_forced_either_way() -> None:
    pipe = io.StringIO()
    assert not use_terminal(pipe, {})
    assert use_terminal(pipe, {"PROVIDER_AGENT_TERMINAL": "1"})
    assert not use_terminal(pipe, {"PROVIDER_AGENT_TERMINAL": "0"})


# -- health for monitoring -----------------------------------------------------

UP = HealthRow("llamacpp:http://h:1", "llamacpp", "http://h:1", "up", 3, ("m",), None)
DOWN = HealthRow(
    "vllm:http://h:2", "vllm", "http://h:2", "down", None, None, "cannot connect"
)


@pytest.mark.parametrize(
    "rows, code", [([UP, UP], 0), ([UP, DOWN], 1), ([DOWN], 2), ([], 3)]
)
def test_exit_codes_follow_nagios(rows, code) -> None:
    assert exit_code(rows) == code


def test_nagios_line() -> None:
    assert nagios_line([UP]) == (
        "PROVIDER-AGENT OK - 1/1 backends up | up=1;;;0;1 'llamacpp:http://h:1'=3ms;;;0"
    )
    assert nagios_line([UP, DOWN]) == (
        "PROVIDER-AGENT WARNING - 1/2 backends up; down: vllm:http://h:2 "
        "(cannot connect) | up=1;;;0;2 'llamacpp:http://h:1'=3ms;;;0 "
        "'vllm:http://h:2'=U;;;0"
    )
    assert nagios_line([DOWN]).startswith("PROVIDER-AGENT CRITICAL - 0/1")
    odd = HealthRow("x='y'", "vllm", "u", "down", None, None, "two\nlines")
    assert "\n" not in nagios_line([odd]) and "'x__y_'=U" in nagios_line([odd])


def test_nagios_unknown_is_one_line() -> None:
    assert (
        nagios_unknown("a.toml: x\na.toml: y")
        == "PROVIDER-AGENT UNKNOWN - a.toml: x a.toml: y"
    )


def test_prometheus_text() -> None:
    text = prometheus_text([UP, DOWN], 1700000000.5)
    labels = 'backend="llamacpp:http://h:1",kind="llamacpp",url="http://h:1"'
    assert f"provider_agent_backend_up{{{labels}}} 1\n" in text
    assert 'provider_agent_backend_up{backend="vllm:http://h:2"' in text
    assert f"provider_agent_backend_latency_seconds{{{labels}}} 0.003\n" in text
    assert f"provider_agent_backend_models{{{labels}}} 1\n" in text
    assert text.count("latency_seconds{") == 1  # unknown values are left out
    assert "provider_agent_health_checked_timestamp_seconds 1700000000.500\n" in text
    assert "# TYPE provider_agent_backend_up gauge\n" in text
    odd = HealthRow('a"b\\c', "vllm", "u", "up", 1, (), None)
    assert 'backend="a\\"b\\\\c"' in prometheus_text([odd], 0)


def test_write_atomic_replaces_the_file_whole(tmp_path: Path) -> None:
    target = tmp_path / "agent.prom"
    target.write_text("old\n")
    write_atomic(str(target), "new\n")
    assert target.read_text() == "new\n"
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o644
    assert os.listdir(tmp_path) == ["agent.prom"]
    with pytest.raises(OSError):
        write_atomic(str(tmp_path / "missing" / "x.prom"), "x")


def test_health_rows_from_a_scan() -> None:
    up = ScanResult(
        "llamacpp",
        "llamacpp:http://h:1",
        "http://h:1",
        BackendHealth(True, 3, None),
        [BackendModel("m", 256, True)],
    )
    unlisted = ScanResult(
        "vllm", "vllm:u", "u", BackendHealth(True, 1, None), error="HTTP 401"
    )
    down = unbuilt("venice", None, "environment variable VENICE_API_KEY is unset")
    rows = health_rows([up, unlisted, down])
    assert rows[0] == UP
    assert rows[1].models is None and rows[1].error == "HTTP 401"
    assert rows[2].to_dict() == {
        "backend": "venice",
        "kind": "venice",
        "url": "https://api.venice.ai/api/v1",
        "status": "down",
        "latency_ms": None,
        "models": None,
        "error": "environment variable VENICE_API_KEY is unset",
    }


def test_build_all_keeps_a_backend_it_cannot_build_as_a_row(
    monkeypatch: pytest.MonkeyPatch, server: ScriptedServer
) -> None:
    monkeypatch.delenv("OPENROUTER_API_KEY", raising=False)
    fakes.llamacpp(server)
    config = config_from_targets(
        [Target("openrouter", None), Target("llamacpp", server.url)]
    )
    built = build_all(config.backends, health_timeout=1.0)
    results = scan([b for _, b in built], with_version=True)
    assert [r.health.reachable for r in results] == [False, True]
    assert "OPENROUTER_API_KEY" in (results[0].health.last_error or "")
    assert results[1].version is None  # a fake with no /props
    assert [m.model_id for m in results[1].models] == ["tiny"]


# -- models --------------------------------------------------------------------


def test_model_rows_keep_the_allow_list_and_resolve_prices() -> None:
    result = ScanResult(
        "vllm",
        "vllm:u",
        "u",
        BackendHealth(True, 1, None),
        [BackendModel("a", 4096, True), BackendModel("b", None, True)],
    )
    pricing = PricingConfig(10, 20, {"a": ModelPrice(1, 2)})
    rows = model_rows([(None, result), (("b",), result)], pricing)
    assert [(r.model, r.input_per_1m, r.output_per_1m) for r in rows] == [
        ("a", 1, 2),
        ("b", 10, 20),
        ("b", 10, 20),
    ]
    assert model_rows([(None, result)])[0].to_dict() == {
        "model": "a",
        "backend": "vllm:u",
        "kind": "vllm",
        "context_window": 4096,
        "native": True,
        "input_per_1m": None,
        "output_per_1m": None,
    }


# -- one job -------------------------------------------------------------------


def test_prompt_request_in_both_formats() -> None:
    assert prompt_request("Hi", None, WireFormat.OPENAI) == {
        "messages": [{"role": "user", "content": "Hi"}]
    }
    assert prompt_request("Hi", "Be brief", WireFormat.OPENAI)["messages"][0] == {
        "role": "system",
        "content": "Be brief",
    }
    assert prompt_request("Hi", "Be brief", WireFormat.ANTHROPIC) == {
        "messages": [{"role": "user", "content": "Hi"}],
        "system": "Be brief",
        "max_tokens": 1024,
    }


def test_read_request_names_its_source() -> None:
    assert read_request('{"messages": []}', "r.json") == {"messages": []}
    with pytest.raises(ValueError, match="r.json: not valid JSON"):
        read_request("{", "r.json")
    with pytest.raises(ValueError, match="r.json: a request body is a JSON object"):
        read_request("[]", "r.json")


def test_summary_line() -> None:
    result = JobResult(12, 34, 310, 45, 999, "stop", "llamacpp:http://h:1")
    assert summary_line(result) == (
        "llamacpp:http://h:1  tokens in 12 out 34  first byte 45 ms  "
        "total 310 ms  finish stop"
    )
    assert summary_line(JobResult(None, None, 5)) == (
        "?  tokens in ? out ?  first byte ? ms  total 5 ms  finish ?"
    )


# -- config validate --probe ---------------------------------------------------


def test_probe_problems_name_the_file_and_the_field(
    monkeypatch: pytest.MonkeyPatch, server: ScriptedServer
) -> None:
    monkeypatch.delenv("NO_SUCH_KEY", raising=False)
    monkeypatch.delenv("VENICE_API_KEY", raising=False)
    fakes.llamacpp(server)
    config = Config.from_toml(
        f"""
        [[backends]]
        kind = "llamacpp"
        url = "{server.url}"
        [[backends]]
        kind = "vllm"
        url = "http://127.0.0.1:9"
        api_key_env = "NO_SUCH_KEY"
        [[backends]]
        kind = "ollama"
        url = "http://127.0.0.1:9"
        [[backends]]
        kind = "venice"
        api_key_env = "VENICE_API_KEY"
        """,
        "agent.toml",
    )
    assert probe_problems(config) == [
        "agent.toml: backends[1].api_key_env: environment variable NO_SUCH_KEY "
        "is unset or blank",
        "agent.toml: backends[3].api_key_env: environment variable "
        "VENICE_API_KEY is unset or blank",
        "agent.toml: backends[2].url: http://127.0.0.1:9 does not answer: "
        "cannot connect: Connection refused",
    ]


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/v1/", "http://127.0.0.1:9/", None])
def test_a_backend_left_unbuilt_keeps_the_id_it_would_have(url) -> None:
    from provider_agent.backend import LlamaCppBackend

    row = unbuilt("llamacpp", url, "environment variable LLAMA_KEY is unset")
    with LlamaCppBackend(url) as built:
        assert (row.id, row.url) == (built.id, built.url)
    assert unbuilt("llamacpp", "ftp://x", "not an http(s) URL").url == "ftp://x"
