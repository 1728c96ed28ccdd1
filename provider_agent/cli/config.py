"""``provider-agent config``: check an agent.toml, and say which one is read."""

from __future__ import annotations

import os
from typing import Optional

import click

from ._common import APP_NAME, CONTEXT_SETTINGS, Failure, note, progress


@click.group("config", context_settings=CONTEXT_SETTINGS)
def config_group() -> None:
    """Check the agent.toml, or find which one the commands read."""


def _locate(file: Optional[str]) -> str:
    from ..console.targets import find_config

    path = find_config(file, os.environ, click.get_app_dir(APP_NAME))
    if path is None:
        raise Failure(
            "no agent.toml found: give FILE, or set $PROVIDER_AGENT_CONFIG, or "
            f"put one in {click.get_app_dir(APP_NAME)} or here"
        )
    return str(path)


@config_group.command("validate", context_settings=CONTEXT_SETTINGS)
@click.argument("file", required=False)
@click.option("-c", "--config", "config_path", metavar="FILE", help="The same as FILE.")
@click.option(
    "--probe",
    is_flag=True,
    help="Also build every backend and probe it (running no job).",
)
def validate_command(
    file: Optional[str], config_path: Optional[str], probe: bool
) -> None:
    """Parse and check FILE (default: the one the lookup finds).

    Prints each problem on its own line, naming the file and the field.
    Exits 0 when the file is valid (and, with --probe, every backend answers),
    1 when it is not.
    """
    from ..console.validation import probe_problems
    from ..fleet.config import ConfigError, load_config

    source = _locate(file or config_path)
    try:
        config = load_config(source)
    except ConfigError as exc:
        for problem in exc.problems:
            click.echo(problem)
        click.get_current_context().exit(1)
    problems = []
    if probe:
        with progress(f"probing {len(config.backends)} backends"):
            problems = probe_problems(config)
    for problem in problems:
        click.echo(problem)
    if problems:
        click.get_current_context().exit(1)
    count = len(config.backends)
    what = "valid, every backend answers" if probe else "valid"
    note(f"{source}: {what} ({count} backend{'s' if count != 1 else ''})")


@config_group.command("path", context_settings=CONTEXT_SETTINGS)
@click.option("-c", "--config", "config_path", metavar="FILE", help="A file to name.")
def path_command(config_path: Optional[str]) -> None:
    """Print the path of the agent.toml the commands read.

    Looks at -c FILE, then $PROVIDER_AGENT_CONFIG, then agent.toml in the
    config directory, then ./agent.toml. Exits 1 when there is none.
    """
    click.echo(_locate(config_path))
