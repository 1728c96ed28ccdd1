"""The ``provider-agent`` command, every command through click's runner against
scripted servers on loopback; the exit codes; pipe and terminal output."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator, List

import pytest

from . import fakes
from .cli import child_env, console_script, run
from .polling import eventually
from .server import ScriptedServer
from .sse import data

TERMINAL = {"PROVIDER_AGENT_TERMINAL": "1", "NO_COLOR": "1"}
COMMANDS = ["scan", "health", "models", "exec", "discover", "config", "serve"]


@pytest.fixture
def engine(server: ScriptedServer) -> ScriptedServer:
    """A llama-server fake with a chat route."""
    fakes.chat(fakes.llamacpp(server))
    server.json("GET", "/props", {"build_info": "b6123-abc1234"})
    return server


@pytest.fixture(autouse=True)
def _no_config_around(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """No agent.toml found but the tests' own: a clean config dir and cwd."""
    monkeypatch.delenv("PROVIDER_AGENT_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(tmp_path)
    yield


def write_config(path: Path, *urls: str, pricing: bool = True) -> Path:
    text = "".join(f'[[backends]]\nkind = "llamacpp"\nurl = "{u}"\n\n' for u in urls)
    if pricing:
        text += "[pricing]\ndefault_input_per_1m = 100\ndefault_output_per_1m = 200\n"
    path.write_text(text)
    return path


# -- the group -----------------------------------------------------------------


@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_help_lists_every_command(flag: str) -> None:
    result = run(flag)
    assert result.exit_code == 0
    for command in COMMANDS:
        assert f"  {command} " in result.stdout


@pytest.mark.parametrize("command", [*COMMANDS, "config validate", "config path"])
def test_every_command_has_help(command: str) -> None:
    result = run(*command.split(), "-h")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Usage: ")


def test_version() -> None:
    result = run("--version")
    assert result.exit_code == 0 and "0.1.0" in result.stdout


def test_a_typo_gets_a_suggestion_and_no_default_command() -> None:
    result = run("helth")
    assert result.exit_code == 2
    assert "Did you mean 'health'?" in result.stderr
    assert run().exit_code in (0, 2)  # the usage, never a command run


@pytest.mark.parametrize("module", ["provider_agent", "provider_agent.cli"])
def test_python_dash_m_runs_the_command(module: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", module, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "scan" in done.stdout and "health" in done.stdout


def test_help_imports_neither_the_fleet_nor_the_backends() -> None:
    code = (
        "import sys; from provider_agent.cli import main\n"
        "try: main(['--help'])\n"
        "except SystemExit: pass\n"
        "print(sorted(m for m in sys.modules if m.startswith('provider_agent.')"
        " or m == 'requests'), file=sys.stderr)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "Usage:" in done.stdout  # the help was printed, not an import error
    loaded = done.stderr.strip()
    assert loaded.startswith("['provider_agent.")
    assert "provider_agent.backend" not in loaded and "requests" not in loaded
    assert "provider_agent.fleet" not in loaded


# -- scan ----------------------------------------------------------------------


@pytest.mark.parametrize("timeout", ["0", "-1"])
def test_scan_refuses_a_timeout_that_probes_nothing(timeout: str) -> None:
    result = run("scan", "--timeout", timeout)
    assert result.exit_code == 2
    assert "--timeout" in result.stderr


def test_scan_a_bare_url_finds_its_kind(server: ScriptedServer) -> None:
    server.json("GET", "/health", {"status": "ok"}, headers={"Server": "llama.cpp"})
    server.json("GET", "/v1/models", {"data": [{"id": "tiny", "meta": {"n_ctx": 64}}]})
    server.json("GET", "/props", {"build_info": "b6123-abc1234"})
    result = run("scan", "--backend", server.url)
    assert result.exit_code == 0, result.output
    kind, url, status, latency, version, models, error = result.stdout.split("\t")
    assert (kind, url, status, version, models) == (
        "llamacpp",
        server.url,
        "up",
        "b6123-abc1234",
        "tiny",
    )
    assert latency.isdigit() and error == "\n"


def test_scan_exits_1_when_nothing_answers() -> None:
    result = run("scan", "--backend", "llamacpp=127.0.0.1:9", "--json")
    assert result.exit_code == 1
    [found] = json.loads(result.stdout)
    assert found["health"]["reachable"] is False and found["version"] is None


def test_scan_a_url_that_says_nothing_is_one_error_line(
    server: ScriptedServer,
) -> None:
    server.json("GET", "/health", {"status": "ok"})
    result = run("scan", "--backend", server.url)
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and "--backend KIND=" in result.stderr
    assert "Traceback" not in result.output


# -- health --------------------------------------------------------------------


def test_health_all_up_exits_0(engine: ScriptedServer) -> None:
    result = run("health", "--backend", f"llamacpp={engine.url}")
    assert result.exit_code == 0, result.output
    backend, kind, url, status, latency, models, error = result.stdout.split("\t")
    assert (backend, kind, url, status, models) == (
        f"llamacpp:{engine.url}",
        "llamacpp",
        engine.url,
        "up",
        "1",
    )
    assert latency.isdigit() and error == "\n"


def test_health_some_down_exits_1_and_all_down_2(engine: ScriptedServer) -> None:
    dead = "llamacpp=127.0.0.1:9"
    some = run("health", "--backend", f"llamacpp={engine.url}", "--backend", dead)
    assert some.exit_code == 1
    assert run("health", "--backend", dead).exit_code == 2


def test_health_of_a_config_in_a_terminal(engine: ScriptedServer) -> None:
    config = write_config(Path("agent.toml"), engine.url, "http://127.0.0.1:9")
    result = run("health", "-c", str(config), env=TERMINAL)
    assert result.exit_code == 1
    header, up, down = result.stdout.splitlines()
    assert header.split() == [
        "BACKEND",
        "KIND",
        "URL",
        "STATUS",
        "LATENCY",
        "MODELS",
        "ERROR",
    ]
    assert " up " in up and " ms " in up
    assert " down " in down and down.endswith("cannot connect: Connection refused")
    assert "\x1b" not in result.stdout  # NO_COLOR


def test_health_colours_a_terminal_without_no_color(engine: ScriptedServer) -> None:
    result = run(
        "health",
        "--backend",
        f"llamacpp={engine.url}",
        env={"PROVIDER_AGENT_TERMINAL": "1", "NO_COLOR": ""},
    )
    assert "\x1b[32mup\x1b[0m" in result.stdout


@pytest.mark.parametrize(
    "args",
    [
        [],  # no config, no --backend
        ["--timeout", "0"],
        ["--backend", "tgi=http://x"],
        ["--no-such-option"],
        ["-c", "missing.toml"],
        ["--json", "--nagios", "--backend", "llamacpp"],
    ],
)
def test_health_exits_3_when_the_config_or_arguments_are_unusable(args) -> None:
    result = run("health", *args)
    assert result.exit_code == 3, result.output
    assert "Traceback" not in result.output


def test_health_exits_3_for_an_invalid_config_naming_each_problem() -> None:
    Path("agent.toml").write_text('[[backends]]\nkind = "tgi"\n[limits]\nx = 1\n')
    result = run("health")
    assert result.exit_code == 3
    assert result.stderr.splitlines() == [
        "Error: agent.toml: backends[0].kind: unknown kind 'tgi'; one of: vllm, "
        "llamacpp, lmstudio, ollama, openrouter, venice",
        "agent.toml: limits.x: unknown key; valid keys: max_concurrent, "
        "max_tokens_per_minute",
    ]


def test_health_json(engine: ScriptedServer) -> None:
    result = run(
        "health", "--backend", f"llamacpp={engine.url}", "--backend", "ollama", "--json"
    )
    up, down = json.loads(result.stdout)
    assert set(up) == {
        "backend",
        "kind",
        "url",
        "status",
        "latency_ms",
        "models",
        "error",
    }
    assert up["models"] == ["tiny"] and up["error"] is None
    assert down["status"] == "down" and down["latency_ms"] is None
    assert down["models"] is None


def test_health_nagios(engine: ScriptedServer) -> None:
    result = run("health", "--backend", f"llamacpp={engine.url}", "--nagios")
    assert result.exit_code == 0
    assert result.stdout.startswith("PROVIDER-AGENT OK - 1/1 backends up | up=1;")
    assert result.stdout.count("\n") == 1


def test_health_nagios_says_unknown_when_it_cannot_check() -> None:
    result = run("health", "--nagios", "-c", "missing.toml")
    assert result.exit_code == 3
    assert result.stdout == (
        "PROVIDER-AGENT UNKNOWN - missing.toml: cannot read: No such file or "
        "directory\n"
    )
    assert "cannot read" in result.stderr


def test_health_prometheus_to_a_file_and_to_stdout(
    engine: ScriptedServer, tmp_path: Path
) -> None:
    target = tmp_path / "agent.prom"
    spec = f"llamacpp={engine.url}"
    result = run("health", "--backend", spec, "--prometheus", str(target))
    assert result.exit_code == 0
    assert "provider_agent_backend_up{" in target.read_text()
    assert result.stdout.startswith(f"llamacpp:{engine.url}\t")  # the rows still
    result = run("health", "--backend", spec, "--prometheus", "-")
    assert result.stdout.startswith("# HELP provider_agent_backend_up ")
    failed = run("health", "--backend", spec, "--prometheus", "/no/such/dir/x.prom")
    assert failed.exit_code == 3 and "cannot write" in failed.stderr


def test_health_watch_appends_each_round_to_a_pipe(engine: ScriptedServer) -> None:
    spec = f"llamacpp={engine.url}"
    result = run("health", "--backend", spec, "--watch", "0.01", "--count", "3")
    assert result.exit_code == 0
    assert len(result.stdout.splitlines()) == 3


def test_health_watch_json_is_one_line_per_round(engine: ScriptedServer) -> None:
    spec = f"llamacpp={engine.url}"
    result = run(
        "health", "--backend", spec, "--watch", "0.01", "--count", "2", "--json"
    )
    rounds = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rounds) == 2
    assert rounds[0]["exit_code"] == 0 and rounds[0]["backends"][0]["status"] == "up"
    assert isinstance(rounds[0]["checked_at"], float)


def test_health_watch_redraws_a_terminal(engine: ScriptedServer) -> None:
    spec = f"llamacpp={engine.url}"
    result = run(
        "health", "--backend", spec, "--watch", "0.01", "--count", "2", env=TERMINAL
    )
    assert result.stdout.count("\x1b[H\x1b[2J") == 2
    assert "every 0.01 s" in result.stdout


def test_health_takes_the_key_from_the_named_variable(
    engine: ScriptedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "local-SECRET-123"
    monkeypatch.setenv("LLAMA_KEY", secret)
    result = run(
        "health",
        "--backend",
        f"llamacpp={engine.url}",
        "--api-key-env",
        "LLAMA_KEY",
        "-v",
    )
    assert result.exit_code == 0
    assert engine.last("/v1/models").headers["Authorization"] == f"Bearer {secret}"
    assert secret not in result.output
    unset = run(
        "health", "--backend", f"llamacpp={engine.url}", "--api-key-env", "NOPE"
    )
    assert unset.exit_code == 2  # the one backend cannot be built: down
    assert "NOPE is unset" in unset.stdout


# -- where the config comes from -----------------------------------------------


def test_the_config_is_found_in_order(
    engine: ScriptedServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead = "http://127.0.0.1:9"
    write_config(Path("agent.toml"), dead)
    assert run("health").exit_code == 2  # ./agent.toml
    app_dir = tmp_path / "xdg" / "provider-agent"
    app_dir.mkdir(parents=True)
    write_config(app_dir / "agent.toml", engine.url)
    assert run("health").exit_code == 0  # the config directory's comes first
    monkeypatch.setenv("PROVIDER_AGENT_CONFIG", str(Path("agent.toml").resolve()))
    assert run("health").exit_code == 2  # $PROVIDER_AGENT_CONFIG before both
    other = write_config(tmp_path / "other.toml", engine.url)
    assert run("health", "-c", str(other)).exit_code == 0  # -c before all
    assert run("config", "path").stdout == f"{Path('agent.toml').resolve()}\n"
    monkeypatch.delenv("PROVIDER_AGENT_CONFIG")
    assert run("config", "path").stdout == f"{app_dir / 'agent.toml'}\n"


# -- models and discover -------------------------------------------------------


def test_models_with_a_config_shows_prices(engine: ScriptedServer) -> None:
    write_config(Path("agent.toml"), engine.url)
    result = run("models")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"tiny\tllamacpp:{engine.url}\t256\ttrue\t100\t200\n"
    terminal = run("models", env=TERMINAL)
    assert terminal.stdout.splitlines()[0].split() == [
        "MODEL",
        "BACKEND",
        "CONTEXT",
        "NATIVE",
        "INPUT/1M",
        "OUTPUT/1M",
    ]
    assert "256 tokens" in terminal.stdout


def test_models_json_and_a_backend_that_is_down(engine: ScriptedServer) -> None:
    result = run(
        "models",
        "--backend",
        f"llamacpp={engine.url}",
        "--backend",
        "vllm=127.0.0.1:9",
        "--json",
    )
    assert result.exit_code == 0
    assert json.loads(result.stdout) == [
        {
            "model": "tiny",
            "backend": f"llamacpp:{engine.url}",
            "kind": "llamacpp",
            "context_window": 256,
            "native": True,
            "input_per_1m": None,
            "output_per_1m": None,
        }
    ]
    assert "vllm:http://127.0.0.1:9: down: cannot connect" in result.stderr
    assert run("models", "--backend", "vllm=127.0.0.1:9").exit_code == 1


def test_discover_prints_the_capabilities_message(engine: ScriptedServer) -> None:
    write_config(Path("agent.toml"), engine.url)
    result = run("discover")
    assert result.exit_code == 0, result.output
    message = json.loads(result.stdout)
    assert message["type"] == "capabilities"
    assert message["models"][0]["model_id"] == "tiny"
    assert message["models"][0]["input_per_1m"] == 100


def test_discover_of_named_backends_warns_of_one_down_with_v(
    engine: ScriptedServer,
) -> None:
    result = run(
        "discover",
        "--backend",
        f"llamacpp={engine.url}",
        "--backend",
        "vllm=127.0.0.1:9",
        "-v",
    )
    assert result.exit_code == 0, result.output
    assert [m["model_id"] for m in json.loads(result.stdout)["models"]] == ["tiny"]
    assert (
        "WARNING provider_agent.fleet.discovery: vllm:http://127.0.0.1:9 left out"
        in (result.stderr)
    )
    assert run("discover", "--backend", f"llamacpp={engine.url}").stderr == ""


def test_vv_logs_every_request_on_stderr(engine: ScriptedServer) -> None:
    result = run("health", "--backend", f"llamacpp={engine.url}", "-vv")
    assert "DEBUG provider_agent.backend._transport: " in result.stderr
    assert "GET /health -> 200" in result.stderr
    assert "DEBUG" not in result.stdout


def test_commands_without_backends_say_how_to_name_them() -> None:
    for command in ("models", "discover", "exec"):
        result = run(command, "hi") if command == "exec" else run(command)
        assert result.exit_code == 1
        assert "--backend KIND[=URL]" in result.stderr


# -- config validate -----------------------------------------------------------


def test_config_validate(engine: ScriptedServer) -> None:
    write_config(Path("agent.toml"), engine.url)
    result = run("config", "validate")
    assert result.exit_code == 0 and result.stdout == ""
    assert "agent.toml: valid (1 backend)" in result.stderr
    probed = run("config", "validate", "agent.toml", "--probe")
    assert probed.exit_code == 0, probed.output
    write_config(Path("down.toml"), "http://127.0.0.1:9")
    down = run("config", "validate", "down.toml", "--probe")
    assert down.exit_code == 1
    assert down.stdout.startswith("down.toml: backends[0].url: http://127.0.0.1:9 ")


def test_config_validate_lists_every_problem() -> None:
    Path("bad.toml").write_text('[[backends]]\nkind = "vllm"\n[limits]\nx = 1\n')
    result = run("config", "validate", "bad.toml")
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        "bad.toml: backends[0].url: required for kind 'vllm'",
        "bad.toml: limits.x: unknown key; valid keys: max_concurrent, "
        "max_tokens_per_minute",
    ]
    missing = run("config", "validate", "nope.toml")
    assert missing.exit_code == 1
    assert missing.stdout.startswith("nope.toml: cannot read: ")
    assert run("config", "validate").exit_code == 1  # none to be found


# -- the console script --------------------------------------------------------


def test_a_pipe_closed_early_exits_quietly(engine: ScriptedServer) -> None:
    command = console_script() + ["health", "--backend", f"llamacpp={engine.url}"]
    process = subprocess.Popen(
        [*command, "--watch", "0.01"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=child_env(),
    )
    assert process.stdout is not None and process.stderr is not None
    first = process.stdout.readline()  # `| head -1`
    process.stdout.close()
    try:
        process.wait(timeout=30)
    finally:
        process.kill()
        err = process.stderr.read()
        process.stderr.close()
    assert first.startswith(b"llamacpp:")
    assert err == b""
    assert process.returncode == 1


def test_ctrl_c_cancels_exec_and_exits_130(server: ScriptedServer) -> None:
    fakes.llamacpp(server)
    release = fakes.held(server)
    command = console_script() + ["exec", "--backend", f"llamacpp={server.url}"]
    process = subprocess.Popen(
        [*command, "-m", "tiny", "hello"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=child_env(),
    )
    try:
        deadline = time.monotonic() + 20
        while not server.requests or server.last().path != "/v1/chat/completions":
            assert time.monotonic() < deadline, "the job never reached the server"
            time.sleep(0.02)
        time.sleep(0.3)  # the first chunk is relayed; the rest is held
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=20)
    finally:
        release.set()
        process.kill()
    assert process.returncode == 130, err
    assert b"cancelled" in err and b"Traceback" not in err


# -- exec ----------------------------------------------------------------------


def test_exec_streams_the_text_and_sums_up_on_stderr(engine: ScriptedServer) -> None:
    result = run("exec", "--backend", f"llamacpp={engine.url}", "-m", "tiny", "Hi")
    assert result.exit_code == 0, result.output
    assert result.stdout == "Hithere\n"
    assert result.stderr == (
        f"llamacpp:{engine.url}  tokens in 5 out 2  " + result.stderr.split("  ", 2)[2]
    )
    assert "finish stop" in result.stderr
    assert engine.last("/v1/chat/completions").json()["messages"] == [
        {"role": "user", "content": "Hi"}
    ]


def test_exec_shows_a_terminal_no_escape_code(server: ScriptedServer) -> None:
    fakes.chat(fakes.llamacpp(server), fakes.openai_chunks("\x1b[2J wiped"))
    spec = f"llamacpp={server.url}"
    assert run("exec", "--backend", spec, "Hi", env=TERMINAL).stdout == "^[[2Jwiped\n"
    assert run("exec", "--backend", spec, "Hi").stdout == "\x1b[2Jwiped\n"


def test_exec_takes_the_first_model_and_a_system_prompt(
    engine: ScriptedServer,
) -> None:
    result = run("exec", "--backend", f"llamacpp={engine.url}", "-s", "Be brief", "Hi")
    assert result.exit_code == 0, result.output
    body = engine.last("/v1/chat/completions").json()
    assert body["model"] == "tiny"
    assert body["messages"][0] == {"role": "system", "content": "Be brief"}


def test_exec_reads_the_prompt_from_stdin(engine: ScriptedServer) -> None:
    for args in ([], ["-"]):
        result = run("exec", "--backend", f"llamacpp={engine.url}", *args, input="Yo")
        assert result.exit_code == 0, result.output
        messages = engine.last("/v1/chat/completions").json()["messages"]
        assert messages == [{"role": "user", "content": "Yo"}]
    empty = run("exec", "--backend", f"llamacpp={engine.url}", input=" \n")
    assert empty.exit_code == 2


def test_exec_sends_a_whole_request_file(
    engine: ScriptedServer, tmp_path: Path
) -> None:
    body = {"model": "tiny", "messages": [{"role": "user", "content": "x"}], "n": 1}
    path = tmp_path / "request.json"
    path.write_text(json.dumps(body))
    result = run("exec", "--backend", f"llamacpp={engine.url}", "--request", str(path))
    assert result.exit_code == 0, result.output
    sent = engine.last("/v1/chat/completions").json()
    assert {k: sent[k] for k in body} == body
    path.write_text(json.dumps({**body, "stream": False}))
    spec = f"llamacpp={engine.url}"
    result = run("exec", "--backend", spec, "--request", str(path), "-m", "other")
    assert result.exit_code == 0, result.output
    sent = engine.last("/v1/chat/completions").json()
    assert sent["model"] == "other" and sent["stream"] is True
    both = run("exec", "--backend", "llamacpp", "--request", str(path), "hi")
    assert both.exit_code == 2
    bad = tmp_path / "bad.json"
    bad.write_text("[1]")
    failed = run("exec", "--backend", "llamacpp", "--request", str(bad))
    assert failed.exit_code == 1 and "a request body is a JSON object" in failed.stderr


def test_exec_raw_writes_the_upstream_bytes(engine: ScriptedServer) -> None:
    result = run("exec", "--backend", f"llamacpp={engine.url}", "--raw", "Hi")
    assert result.exit_code == 0
    assert result.stdout_bytes == b"".join(fakes.openai_chunks())


def test_exec_in_the_anthropic_format(server: ScriptedServer) -> None:
    fakes.llamacpp(server)
    events = [
        data(
            {
                "type": "content_block_delta",
                "delta": {"type": "text_delta", "text": "Hey"},
            }
        ),
        data({"type": "message_stop"}),
    ]
    server.stream("POST", "/v1/messages", events)
    result = run(
        "exec", "--backend", f"llamacpp={server.url}", "--format", "anthropic", "Hi"
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == "Hey\n"
    assert server.last("/v1/messages").json()["max_tokens"] == 1024


def test_exec_through_the_fleet_of_a_config(
    engine: ScriptedServer, other: ScriptedServer
) -> None:
    write_config(Path("agent.toml"), "http://127.0.0.1:9", engine.url)
    result = run("exec", "-m", "tiny", "Hi")
    assert result.exit_code == 0, result.output
    assert result.stdout == "Hithere\n"
    assert result.stderr.startswith(f"llamacpp:{engine.url}  ")


def test_exec_failure_is_one_line(server: ScriptedServer) -> None:
    fakes.llamacpp(server)
    server.json("POST", "/v1/chat/completions", {"error": {"message": "boom"}}, 500)
    result = run("exec", "--backend", f"llamacpp={server.url}", "Hi")
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and "boom" in result.stderr
    assert result.stdout == ""


def test_exec_past_its_deadline_exits_124(server: ScriptedServer) -> None:
    fakes.llamacpp(server)
    fakes.held(server)
    result = run(
        "exec", "--backend", f"llamacpp={server.url}", "--deadline", "0.5", "Hi"
    )
    assert result.exit_code == 124, result.output
    assert "deadline" in result.stderr


def test_exec_talks_to_one_backend() -> None:
    result = run("exec", "--backend", "llamacpp", "--backend", "vllm", "Hi")
    assert result.exit_code == 2


def test_main_is_the_console_entry_point() -> None:
    from importlib.metadata import entry_points

    scripts = entry_points()
    found = (
        scripts.select(group="console_scripts", name="provider-agent")
        if hasattr(scripts, "select")
        else [e for e in scripts["console_scripts"] if e.name == "provider-agent"]
    )
    # (Python 3.9's metadata may list one distribution twice.)
    assert {e.value for e in found} == {"provider_agent.cli:main"}
    assert os.path.basename(console_script()[0]).startswith(
        ("provider-agent", "python")
    )


def _interrupted(args: List[str], ready: Callable[[], bool]) -> subprocess.Popen[bytes]:
    """The console script run with ``args``, sent SIGINT once ``ready()``."""
    process = subprocess.Popen(
        console_script() + args,
        stdin=subprocess.PIPE,  # never closed: a prompt read from it waits
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert eventually(ready, 20)
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=20)
    finally:
        process.kill()
    return process


def test_ctrl_c_before_any_health_answer_exits_130_not_ok(silent_url: str) -> None:
    args = ["health", "--backend", f"llamacpp={silent_url}", "--timeout", "30"]
    started = time.monotonic()
    process = _interrupted(args, lambda: time.monotonic() - started > 1.5)
    assert process.returncode == 130  # not 0, which Nagios reads as all up


def test_ctrl_c_while_exec_reads_its_prompt_exits_130(engine: ScriptedServer) -> None:
    args = ["exec", "--backend", f"llamacpp={engine.url}", "-m", "tiny", "-"]
    started = time.monotonic()
    process = _interrupted(args, lambda: time.monotonic() - started > 1.5)
    assert process.returncode == 130
    assert not any(r.method == "POST" for r in engine.requests)


def test_exec_without_backends_says_so_before_reading_stdin() -> None:
    result = run("exec", input="never read")
    assert result.exit_code == 1
    assert "backend" in result.stderr and "prompt" not in result.stderr


def test_scan_keeps_a_config_s_own_probe_timeout(silent_url: str) -> None:
    Path("agent.toml").write_text(
        f'[[backends]]\nkind = "llamacpp"\nurl = "{silent_url}"\nhealth_timeout = 0.3\n'
    )
    started = time.monotonic()
    result = run("scan", "-c", "agent.toml")
    assert result.exit_code == 1
    assert time.monotonic() - started < 1.8  # the 0.3 s, not scan's default 2 s
