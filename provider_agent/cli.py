"""The ``provider-agent`` command: a thin shell over the library.

Library errors become one ``click.ClickException`` at this boundary; anything else
is a bug and keeps its traceback.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Dict, List, Optional, Tuple

import click

from . import __version__
from .backend import BACKENDS, Backend, BackendError, create_backend
from .scan import ScanResult, local_backends, scan


def _parse_target(spec: str) -> Tuple[str, Optional[str]]:
    kind, _, url = spec.partition("=")
    if kind not in BACKENDS:
        valid = ", ".join(sorted(BACKENDS))
        raise click.BadParameter(f"unknown kind {kind!r}; valid kinds: {valid}")
    if url and "://" not in url:
        url = f"http://{url}"  # host:port, as people type it
    return kind, url or None


def _format_models(result: ScanResult) -> str:
    if result.error:
        return f"models unavailable: {result.error}"
    names = []
    for model in result.models:
        window = f"ctx {model.context_window}" if model.context_window else "ctx ?"
        names.append(f"{model.model_id} ({window})")
    return ", ".join(names) or "-"


def _print_table(results: List[ScanResult]) -> None:
    rows = [("KIND", "URL", "STATUS", "LATENCY", "MODELS")]
    for r in results:
        status = "up" if r.health.reachable else "down"
        latency = (
            f"{r.health.latency_ms} ms" if r.health.latency_ms is not None else "-"
        )
        detail = (
            _format_models(r) if r.health.reachable else (r.health.last_error or "")
        )
        rows.append((r.kind, r.url, status, latency, detail))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths)]
        click.echo("  ".join(cells + [row[4]]).rstrip())


@click.group()
@click.version_option(__version__, prog_name="provider-agent")
def main() -> None:
    """One blocking API over local and remote LLM inference backends."""


@main.command("scan")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Host whose default ports are probed.",
)
@click.option(
    "--backend",
    "targets",
    multiple=True,
    metavar="KIND[=URL]",
    help="Probe this backend instead of the default ports (repeatable). "
    "Remote kinds read their key from their usual environment variable.",
)
@click.option(
    "--timeout",
    type=float,
    default=2.0,
    show_default=True,
    help="Seconds allowed for each probe.",
)
@click.option(
    "--no-models", is_flag=True, help="Only probe health; do not list models."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def scan_command(
    host: str, targets: Tuple[str, ...], timeout: float, no_models: bool, as_json: bool
) -> None:
    """Probe backends concurrently and print what answers.

    Without --backend, probes vLLM, llama.cpp, LM Studio and Ollama on their default
    ports of HOST.
    """
    options: Dict[str, Any] = {
        "health_timeout": timeout,
        "request_timeout": max(timeout, 5.0),
    }
    backends: List[Backend] = []
    try:
        if targets:
            for spec in targets:
                kind, url = _parse_target(spec)
                backends.append(create_backend(kind, url, **options))
        else:
            backends = local_backends(host, **options)
        results = scan(backends, with_models=not no_models)
    except BackendError as exc:
        raise click.ClickException(str(exc)) from exc
    except ValueError as exc:  # a URL or host that cannot be used
        raise click.BadParameter(str(exc)) from exc
    finally:
        for backend in backends:
            backend.close()
    if as_json:
        json.dump([r.to_dict() for r in results], sys.stdout, indent=2)
        click.echo()
    else:
        _print_table(results)
