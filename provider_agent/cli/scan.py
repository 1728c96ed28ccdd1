"""``provider-agent scan``: what answers, on the default ports or where named."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import click

from ..console.table import Column
from ._common import (
    CONTEXT_SETTINGS,
    echo_json,
    echo_table,
    library_errors,
    load,
    progress,
    scan_options,
    terminal,
)

COLUMNS = [
    Column("KIND"),
    Column("URL"),
    Column("STATUS"),
    Column("LATENCY", "ms"),
    Column("VERSION"),
    Column("MODELS"),
]
PIPE_COLUMNS = [*COLUMNS[:5], Column("MODELS"), Column("ERROR")]

#: Seconds, positive: 0 or less would probe nothing.
Seconds = click.FloatRange(min=0, min_open=True)


#: The default ports' probes: when nothing listens there, say so quickly.
_LOCAL_TIMEOUTS: Dict[str, Any] = {"health_timeout": 2.0, "request_timeout": 5.0}


@click.command("scan", context_settings=CONTEXT_SETTINGS)
@scan_options
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Host whose default ports are probed.",
)
@click.option(
    "--timeout",
    type=Seconds,
    metavar="SECONDS",
    help="Seconds allowed for each probe [default: 2, or the config's].",
)
@click.option("--no-models", is_flag=True, help="Only probe health; list no models.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of rows.")
def scan_command(
    config_path: Optional[str],
    targets: Tuple[Any, ...],
    api_key_env: Optional[str],
    host: str,
    timeout: Optional[float],
    no_models: bool,
    as_json: bool,
) -> None:
    """Probe backends concurrently and print what answers.

    Probes the --backend targets, else the backends of the config given with
    -c, else vLLM (8000), llama.cpp (8080), LM Studio (1234) and Ollama (11434)
    on HOST. A backend that cannot be built (a key variable unset) is a row
    with its reason.

    \b
    In a pipe, one tab-separated row per backend:
    kind, url, status, latency_ms, version, models (comma-separated), error.

    Exits 0 when something answered, 1 when nothing did.
    """
    from ..scan import build_all, close_all, scan

    # A config's own timeouts stand unless --timeout is given.
    options: Dict[str, Any] = {}
    if timeout is not None:
        options = {"health_timeout": timeout, "request_timeout": max(timeout, 5.0)}
    built: List[Any] = []
    try:
        with library_errors():
            config, _ = load(config_path, targets, api_key_env, search=False)
            if config is not None:
                built = [b for _, b in build_all(config.backends, **options)]
            else:
                built = _local(host, options or _LOCAL_TIMEOUTS)
            with progress(f"probing {len(built)} backends"):
                results = scan(built, with_models=not no_models, with_version=True)
    finally:
        close_all(built)
    if as_json:
        echo_json([r.to_dict() for r in results])
    elif terminal():
        echo_table(COLUMNS, [_terminal_row(r) for r in results])
    else:
        echo_table(PIPE_COLUMNS, [_pipe_row(r) for r in results])
    if not any(r.health.reachable for r in results):
        click.get_current_context().exit(1)


def _local(host: str, options: Dict[str, Any]) -> List[Any]:
    from ..scan import local_backends

    try:
        return list(local_backends(host, **options))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'--host'") from exc


def _status(result: Any) -> str:
    return "up" if result.health.reachable else "down"


def _terminal_row(r: Any) -> List[Any]:
    if not r.health.reachable:
        detail = r.health.last_error or ""
    elif r.error:
        detail = f"models unavailable: {r.error}"
    else:
        names = []
        for m in r.models:
            window = f"ctx {m.context_window}" if m.context_window else "ctx ?"
            names.append(f"{m.model_id} ({window})")
        detail = ", ".join(names)
    return [r.kind, r.url, _status(r), r.health.latency_ms, r.version, detail]


def _pipe_row(r: Any) -> List[Any]:
    models = ",".join(m.model_id for m in r.models)
    error = r.health.last_error if not r.health.reachable else r.error
    return [r.kind, r.url, _status(r), r.health.latency_ms, r.version, models, error]
