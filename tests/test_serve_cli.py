"""``provider-agent serve``: what it refuses before binding, and a real serve process
over a scripted llama-server that answers ``/health`` and stops on SIGTERM."""

from __future__ import annotations

import http.client
import json
import logging
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Iterator, List

import pytest

from . import fakes
from .cli import run
from .gateway import ServeProcess, write_config
from .polling import eventually
from .processes import package_env
from .server import ScriptedServer

#: ``provider-agent`` with ``Fleet.close`` reporting on stdout that it ran.
TRACED_MAIN = textwrap.dedent(
    """
    import sys
    from provider_agent.fleet import Fleet

    close = Fleet.close

    def traced(self, *args, **kwargs):
        close(self, *args, **kwargs)
        print("fleet closed; monitor running:", self.monitor.running, flush=True)

    Fleet.close = traced
    from provider_agent.cli import main

    main(sys.argv[1:], prog_name="provider-agent")
    """
)


@pytest.fixture(autouse=True)
def _no_config_around(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROVIDER_AGENT_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def config(tmp_path: Path, server: ScriptedServer) -> Path:
    """An agent.toml of one scripted llama-server."""
    fakes.llamacpp(server)
    return write_config(tmp_path / "agent.toml", [server.url])


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        yield int(sock.getsockname()[1])


def test_help_lists_the_options() -> None:
    result = run("serve", "--help")
    assert result.exit_code == 0, result.output
    for option in (
        "-c, --config FILE",
        "--host",
        "--port",
        "--auth-token-env NAME",
        "--threads",
        "--max-body-bytes",
        "--deadline",
        "-v, --verbose",
    ):
        assert option in result.output, option
    words = " ".join(result.output.split())  # as the help wraps it
    assert "Needs waitress: pip install 'provider-agent[serve]'" in words
    assert "Stops on Ctrl-C or SIGTERM" in words


def test_help_imports_neither_waitress_nor_the_fleet() -> None:
    code = textwrap.dedent(
        """
        import sys
        from provider_agent.cli import main
        try:
            main(["serve", "--help"])
        except SystemExit:
            pass
        loaded = [m for m in ("waitress", "provider_agent.fleet") if m in sys.modules]
        print(loaded, file=sys.stderr)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env=package_env(),
    )
    assert done.returncode == 0, done.stderr
    assert "Usage:" in done.stdout
    assert done.stderr.strip() == "[]"


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.1", ""])
def test_a_host_other_than_loopback_needs_a_token(config: Path, host: str) -> None:
    result = run("serve", "-c", str(config), "--host", host, "--port", "0")
    assert result.exit_code == 2, result.output
    assert f"refusing to serve on {host} without a token" in result.stderr
    assert "--auth-token-env" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("value", [None, "", "   "])
def test_an_unset_or_empty_token_variable_is_refused(
    config: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    if value is None:
        monkeypatch.delenv("GATEWAY_TOKEN", raising=False)
    else:
        monkeypatch.setenv("GATEWAY_TOKEN", value)
    result = run(
        "serve", "-c", str(config), "--port", "0", "--auth-token-env", "GATEWAY_TOKEN"
    )
    assert result.exit_code == 2, result.output
    assert "--auth-token-env: $GATEWAY_TOKEN is unset or empty" in result.stderr


def test_a_taken_port_is_a_clear_failure(config: Path, taken_port: int) -> None:
    # In a process of its own: waitress leaks the socket it could not bind.
    done = subprocess.run(
        [sys.executable, "-m", "provider_agent", "serve", "-c", str(config)]
        + ["--port", str(taken_port)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=str(config.parent),
        env=package_env(),
    )
    assert done.returncode == 1, done.stderr
    message = f"cannot bind 127.0.0.1:{taken_port}: Address already in use"
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_no_config_is_a_clear_failure() -> None:
    result = run("serve", "--port", "0")
    assert result.exit_code == 1, result.output
    assert "no backends" in result.stderr


def test_a_refusal_leaves_the_logger_as_it_was(config: Path) -> None:
    # In-process callers (tests, a wrapper script) run serve more than once.
    logger = logging.getLogger("provider_agent")
    handlers, level = list(logger.handlers), logger.level
    for _ in range(2):
        assert run("serve", "-c", str(config), "--host", "0.0.0.0").exit_code == 2
    assert logger.handlers == handlers
    assert logger.level == level


def test_without_waitress_it_says_what_to_install(config: Path) -> None:
    code = textwrap.dedent(
        """
        import sys
        sys.modules["waitress"] = None  # an import of it raises ImportError
        from provider_agent.cli import main
        main(sys.argv[1:], prog_name="provider-agent")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code, "serve", "-c", str(config), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=str(config.parent),
        env=package_env(),
    )
    assert done.returncode == 1, done.stderr
    assert "serving needs waitress: pip install 'provider-agent[serve]'" in (
        done.stderr
    )
    assert "Traceback" not in done.stderr


def traced_serve(config: Path, *args: str) -> ServeProcess:
    return ServeProcess(
        config, *args, command=[sys.executable, "-c", TRACED_MAIN]
    ).wait_ready()


def test_serves_health_and_exits_0_on_sigterm(
    config: Path, server: ScriptedServer
) -> None:
    gateway = traced_serve(config)
    try:
        health = gateway.health()
        assert health["status"] == "ok" and health["backends_up"] == 1
        assert health["pid"] == gateway.pid
        assert health["monitor_running"] is True
        assert list(health["backends"]) == [f"llamacpp:{server.url}"]
    finally:
        code = gateway.stop()
    assert code == 0, gateway.stderr()
    assert not gateway.left_behind
    assert gateway.stdout() == "fleet closed; monitor running: False\n"
    err = gateway.stderr()
    assert f"serving 1 backends (1 up) on {gateway.url} with 12 threads" in err
    assert "no token (loopback only)" in err
    assert "Traceback" not in err


def stream_in_thread(url: str, lines: List[bytes]) -> threading.Thread:
    """POST a streamed chat request; each line of the reply goes to ``lines``."""

    def work() -> None:
        host, port = url.rsplit("/", 1)[1].split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=30)
        body = json.dumps({"model": "tiny", "stream": True, "messages": []})
        try:
            connection.request("POST", "/v1/chat/completions", body)
            reply = connection.getresponse()
            lines.append(b"%d" % reply.status)
            for line in reply:
                lines.append(line)
        except (OSError, http.client.HTTPException) as exc:
            lines.append(repr(exc).encode())
        finally:
            connection.close()

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize(
    ("sig", "exit_code"),
    [(signal.SIGTERM, 0), (signal.SIGINT, 130)],
    ids=["SIGTERM", "SIGINT"],
)
def test_a_stop_signal_cancels_a_streaming_job_at_once(
    config: Path, server: ScriptedServer, sig: int, exit_code: int
) -> None:
    # waitress, stopping, waits up to 5 s for its threads: the job that keeps one
    # streaming must be cancelled first, not after that wait. Ctrl-C exits 130,
    # as in every command.
    release = fakes.held(server)
    gateway = traced_serve(config)
    lines: List[bytes] = []
    try:
        client = stream_in_thread(gateway.url, lines)
        assert eventually(lambda: len(lines) >= 2, 10), lines  # status, first event
        assert gateway.health()["in_flight"] == 1
        code = gateway.stop(sig=sig)
        client.join(10)
    finally:
        release.set()
        gateway.kill()
    assert code == exit_code, gateway.stderr()
    assert not client.is_alive()
    err = gateway.stderr()
    assert "still running" not in err and "Traceback" not in err, err
    assert gateway.stdout() == "fleet closed; monitor running: False\n"
    assert lines[0] == b"200"
    # The client learns why its stream ended, in its own format.
    errors = [json.loads(line[6:]) for line in lines if line.startswith(b'data: {"e')]
    assert [e["error"]["code"] for e in errors] == ["cancelled"], lines


#: ``provider-agent`` on a machine whose localhost is 127.0.0.1 and ::1 both.
TWO_LOCALHOSTS_MAIN = textwrap.dedent(
    """
    import socket
    import sys

    resolve = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host == "localhost":
            found = resolve("127.0.0.1", port, *args, **kwargs)
            return found + resolve("::1", port, *args, **kwargs)
        return resolve(host, port, *args, **kwargs)

    socket.getaddrinfo = getaddrinfo
    from provider_agent.cli import main

    main(sys.argv[1:], prog_name="provider-agent")
    """
)


def test_a_host_of_two_addresses_is_served_on_both(config: Path) -> None:
    # waitress binds one socket per address a name resolves to.
    gateway = ServeProcess(
        config,
        "--host",
        "localhost",
        command=[sys.executable, "-c", TWO_LOCALHOSTS_MAIN],
    )
    try:
        gateway.wait_ready()
        v6 = http.client.HTTPConnection("::1", gateway.port, timeout=10)
        try:
            v6.request("GET", "/health")
            assert v6.getresponse().status == 200
        finally:
            v6.close()
    finally:
        code = gateway.stop()
    assert code == 0, gateway.stderr()
    port = gateway.port
    assert f"on http://127.0.0.1:{port} and http://[::1]:{port} with" in (
        gateway.stderr()
    )


def test_a_token_read_with_its_newline_still_matches(config: Path) -> None:
    # A variable filled from a file (a Kubernetes secret made with echo) ends
    # with a newline that no HTTP header can carry.
    token = "gw-token-of-a-file"
    gateway = ServeProcess(
        config,
        "--auth-token-env",
        "GATEWAY_TOKEN",
        env={"GATEWAY_TOKEN": token + "\n"},
        token=token,
    )
    try:
        assert gateway.wait_ready().health()["status"] == "ok"
        status, _ = gateway.get("/v1/models", headers={"x-api-key": token})
        assert status == 200
        gateway.token = "gw-token-of-another"
        assert gateway.get("/health")[0] == 401
    finally:
        code = gateway.stop()
    assert code == 0, gateway.stderr()
