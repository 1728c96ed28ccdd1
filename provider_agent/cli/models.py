"""``provider-agent models`` and ``provider-agent discover``: what the backends
serve, as rows or as the capabilities message."""

from __future__ import annotations

from typing import Any, List, Optional, Tuple

import click

from ..console.table import Column
from ._common import (
    CONTEXT_SETTINGS,
    backend_options,
    echo_json,
    echo_table,
    library_errors,
    load,
    note,
    progress,
    require,
)

COLUMNS = [
    Column("MODEL"),
    Column("BACKEND"),
    Column("CONTEXT", "tokens"),
    Column("NATIVE"),
]
PRICE_COLUMNS = [Column("INPUT/1M"), Column("OUTPUT/1M")]


@click.command("models", context_settings=CONTEXT_SETTINGS)
@backend_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of rows.")
def models_command(
    config_path: Optional[str],
    targets: Tuple[Any, ...],
    api_key_env: Optional[str],
    as_json: bool,
) -> None:
    """List every model the backends serve, one row per model and backend.

    With a config, each backend's allow-list applies and the prices are the
    ones its [pricing] resolves to (USDC micro-units per million tokens).

    \b
    In a pipe, one tab-separated row per model and backend:
    model, backend, context_window, native, and with a config
    input_per_1m, output_per_1m.

    Exits 0 when some backend answered, 1 when none did.
    """
    from ..console.inventory import model_rows
    from ..scan import build_all, close_all, scan

    with library_errors():
        config, from_file = load(config_path, targets, api_key_env)
        config = require(config)
        built = build_all(config.backends)
    try:
        with progress(f"listing the models of {len(built)} backends"):
            results = scan([backend for _, backend in built])
    finally:
        close_all([backend for _, backend in built])
    for result in results:
        if not result.health.reachable:
            note(f"{result.id}: down: {result.health.last_error}")
        elif result.error:
            note(f"{result.id}: models unavailable: {result.error}")
    allowed = [entry.models for entry, _ in built]
    rows = model_rows(
        list(zip(allowed, results)), config.pricing if from_file else None
    )
    if as_json:
        echo_json([row.to_dict() for row in rows])
    else:
        columns = COLUMNS + (PRICE_COLUMNS if from_file else [])
        echo_table(columns, [_row(row, from_file) for row in rows])
    if not any(r.health.reachable for r in results):
        click.get_current_context().exit(1)


def _row(row: Any, priced: bool) -> List[Any]:
    cells = [row.model, row.backend, row.context_window, row.native]
    return cells + ([row.input_per_1m, row.output_per_1m] if priced else [])


@click.command("discover", context_settings=CONTEXT_SETTINGS)
@backend_options
def discover_command(
    config_path: Optional[str], targets: Tuple[Any, ...], api_key_env: Optional[str]
) -> None:
    """Print the capabilities message the backends make now, as JSON.

    Probes every backend, lists the models of those that answer and prices
    them as the config's [pricing] says; a model whose price resolves to zero
    is left out, and a backend that is down is left out with a warning (-v).
    """
    from ..fleet import discover

    with library_errors():
        config = require(load(config_path, targets, api_key_env)[0])
        with progress(f"discovering {len(config.backends)} backends"):
            capabilities = discover(config).to_capabilities()
    echo_json(capabilities)
