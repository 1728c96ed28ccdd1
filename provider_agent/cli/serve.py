"""``provider-agent serve``: the fleet of an agent.toml behind one HTTP endpoint."""

from __future__ import annotations

import os
import signal
from typing import Any, Optional

import click

from ._common import (
    CONTEXT_SETTINGS,
    INTERRUPTED,
    Failure,
    library_errors,
    load,
    log_to_stderr,
    note,
    require,
    verbosity,
)


@click.command("serve", context_settings=CONTEXT_SETTINGS)
@click.option(
    "-c",
    "--config",
    "config_path",
    metavar="FILE",
    help="The agent.toml to serve (default: $PROVIDER_AGENT_CONFIG, then "
    "agent.toml in the config directory, then ./agent.toml).",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8787,
    show_default=True,
    help="Port to bind (0: any free one).",
)
@click.option(
    "--auth-token-env",
    metavar="NAME",
    help="Require 'Authorization: Bearer <token>' (as both SDKs send their key; "
    "'x-api-key: <token>' works too) on "
    "every request, the token read from this environment variable. Needed to "
    "bind anything but loopback.",
)
@click.option(
    "--threads",
    type=click.IntRange(1),
    help="Server threads (default: the fleet's max_concurrent + 4).",
)
@click.option(
    "--max-body-bytes",
    type=click.IntRange(1),
    help="The largest request body accepted (default: 8 MiB).",
)
@click.option(
    "--deadline",
    "deadline_s",
    type=click.FloatRange(0, min_open=True),
    help="Each job's deadline in seconds (default: 300).",
)
@click.option(
    "-v",
    "--verbose",
    count=True,
    help="Log each job's errors and hang-ups on stderr (-vv: more).",
)
def serve_command(
    config_path: Optional[str],
    host: str,
    port: int,
    auth_token_env: Optional[str],
    threads: Optional[int],
    max_body_bytes: Optional[int],
    deadline_s: Optional[float],
    verbose: int,
) -> None:
    """Serve the fleet to OpenAI and Anthropic clients, under waitress.

    POST /v1/chat/completions and /v1/messages stream jobs over the fleet;
    GET /v1/models lists its models, GET /health its health (503 when every
    backend is down). Binds to 127.0.0.1:8787 by default. Needs waitress:
    pip install 'provider-agent[serve]'. Stops on Ctrl-C or SIGTERM, cancelling
    the jobs still running.
    """

    from ..fleet import Fleet
    from ..wsgi import Gateway, MissingExtraError, make_server
    from ..wsgi.serve import run, server_urls, threads_for

    # Warnings (a job that failed mid-stream) always; -v adds hang-ups.
    log_to_stderr(click.get_current_context(), verbosity(verbose), timestamps=True)
    token = None
    if auth_token_env is not None:
        token = os.environ.get(auth_token_env, "")
        if not token.strip():
            raise Failure(f"--auth-token-env: ${auth_token_env} is unset or empty", 2)
    options: Any = {"auth_token": token}
    if max_body_bytes is not None:
        options["max_body_bytes"] = max_body_bytes
    if deadline_s is not None:
        options["deadline_ms"] = max(1, int(deadline_s * 1000))
    with library_errors():
        config = require(load(config_path, (), None)[0])
        fleet = Fleet.from_config(config)
    gateway = Gateway(fleet, close_fleet=True, **options)
    try:
        server = make_server(gateway, host, port, threads=threads)
    except ValueError as exc:
        gateway.close()
        raise Failure(str(exc), 2) from None
    except MissingExtraError as exc:
        gateway.close()
        raise Failure(str(exc), 1) from None
    except OSError as exc:
        gateway.close()
        raise Failure(f"cannot bind {host}:{port}: {exc.strerror or exc}", 1) from None

    def ready(url: str) -> None:
        up = sum(1 for status in fleet.snapshot().values() if status.up)
        urls = " and ".join(server_urls(server))
        note(
            f"serving {len(fleet.backends)} backends ({up} up) on {urls} with "
            f"{threads or threads_for(gateway)} threads, "
            f"{'a token required' if token else 'no token (loopback only)'}"
        )

    if run(server, gateway, ready=ready) == signal.SIGINT:
        click.get_current_context().exit(INTERRUPTED)
