"""``provider-agent health``: every configured backend's health, for a person
or a monitoring system (exit codes in the Nagios convention)."""

from __future__ import annotations

import sys
import time
from typing import Any, List, Optional, Sequence, Tuple

import click

from ..console.table import Column
from ._common import (
    CONTEXT_SETTINGS,
    Failure,
    backend_options,
    echo_json,
    echo_table,
    library_errors,
    load,
    progress,
    require,
    terminal,
)
from .scan import Seconds

#: The exit code of a config or arguments that cannot be used (Nagios UNKNOWN).
UNUSABLE = 3
COLUMNS = [
    Column("BACKEND"),
    Column("KIND"),
    Column("URL"),
    Column("STATUS"),
    Column("LATENCY", "ms"),
    Column("MODELS"),
    Column("ERROR"),
]
_CLEAR = "\x1b[H\x1b[2J"


class _NagiosCommand(click.Command):
    """A command whose usage errors exit 3 (UNKNOWN), as a plugin's must."""

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        try:
            return super().make_context(*args, **kwargs)
        except click.UsageError as exc:
            setattr(exc, "exit_code", UNUSABLE)  # noqa: B010
            raise


@click.command("health", cls=_NagiosCommand, context_settings=CONTEXT_SETTINGS)
@backend_options
@click.option(
    "--timeout",
    type=Seconds,
    metavar="SECONDS",
    help="Seconds allowed for each probe (default: each backend's own).",
)
@click.option(
    "--watch",
    type=Seconds,
    is_flag=False,
    flag_value=5.0,
    metavar="[SECONDS]",
    help="Probe again every SECONDS (default 5) until interrupted: a terminal "
    "is redrawn, a pipe gets each round appended.",
)
@click.option(
    "--count",
    type=click.IntRange(min=1),
    metavar="N",
    help="With --watch: stop after this many rounds.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of rows.")
@click.option("--nagios", is_flag=True, help="Print the Nagios plugin line.")
@click.option(
    "--prometheus",
    metavar="FILE|-",
    help="Write the Prometheus textfile-collector format to FILE (atomically), "
    "or to stdout with -.",
)
def health_command(
    config_path: Optional[str],
    targets: Tuple[Any, ...],
    api_key_env: Optional[str],
    timeout: Optional[float],
    watch: Optional[float],
    count: Optional[int],
    as_json: bool,
    nagios: bool,
    prometheus: Optional[str],
) -> None:
    """Probe every configured backend at once and print their health.

    \b
    In a pipe, one tab-separated row per backend:
    backend, kind, url, status, latency_ms, models (how many), error.

    \b
    Exits 0 when every backend is up, 1 when some are down, 2 when all are
    down, 3 when the config or the arguments cannot be used.
    """
    from ..console.monitoring import exit_code, health_rows, nagios_unknown
    from ..scan import build_all, close_all, scan

    if sum((as_json, nagios, prometheus == "-")) > 1:
        raise Failure("choose one of --json, --nagios and --prometheus -", UNUSABLE)
    overrides = {"health_timeout": timeout} if timeout else {}
    try:
        with library_errors(UNUSABLE):
            config = require(load(config_path, targets, api_key_env)[0], UNUSABLE)
            built = [b for _, b in build_all(config.backends, **overrides)]
    except Failure as exc:
        if nagios:  # a plugin says UNKNOWN on stdout, where Nagios reads it
            click.echo(nagios_unknown(exc.message))
        raise
    code = 0
    rounds = 0
    try:
        while True:
            with progress(f"probing {len(built)} backends"):
                rows = health_rows(scan(built))
            code = exit_code(rows)
            rounds += 1
            _show(rows, code, as_json, nagios, prometheus, watch)
            if watch is None or (count is not None and rounds >= count):
                break
            time.sleep(watch)
    except KeyboardInterrupt:
        if watch is None or not rounds:
            raise  # cut short before any answer: not "all up"
        # The way out of --watch: exit with the last round's code.
    finally:
        close_all(built)
    click.get_current_context().exit(code)


def _show(
    rows: Sequence[Any],
    code: int,
    as_json: bool,
    nagios: bool,
    prometheus: Optional[str],
    watch: Optional[float],
) -> None:
    from ..console.monitoring import nagios_line, prometheus_text, write_atomic

    now = time.time()
    if prometheus is not None:
        text = prometheus_text(rows, now)
        if prometheus == "-":
            click.echo(text, nl=False)
            return
        try:
            write_atomic(prometheus, text)
        except OSError as exc:
            raise Failure(f"{prometheus}: cannot write: {exc}", UNUSABLE) from exc
    if nagios:
        click.echo(nagios_line(rows))
    elif as_json and watch is not None:
        round_ = {"checked_at": round(now, 3), "exit_code": code}
        echo_json({**round_, "backends": [r.to_dict() for r in rows]}, one_line=True)
    elif as_json:
        echo_json([r.to_dict() for r in rows])
    else:
        if watch is not None and terminal():
            stamp = time.strftime("%H:%M:%S", time.localtime(now))
            click.echo(f"{_CLEAR}every {watch:g} s, last at {stamp}", color=True)
        echo_table(COLUMNS, [_row(r) for r in rows])
    sys.stdout.flush()


def _row(r: Any) -> List[Any]:
    models = len(r.models) if r.models is not None else None
    return [r.backend, r.kind, r.url, r.status, r.latency_ms, models, r.error]
