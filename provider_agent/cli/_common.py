"""What every command shares: the options naming the backends, the config's
lookup, the error boundary, and writing listings, JSON and progress.

Only click and the lightest modules are imported here; each command imports the
fleet and the backends when it runs, so that ``--help`` stays cheap.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional, Sequence, Tuple

import click

from ..console.table import Column, render, use_colour, use_terminal

if TYPE_CHECKING:
    from ..fleet.config import Config

APP_NAME = "provider-agent"
#: The exit code of a command interrupted by Ctrl-C, as a shell expects.
INTERRUPTED = 130
CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"]}
F = Callable[..., Any]


class Failure(click.ClickException):
    """A library error at the boundary: one message, and the command's exit code."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        setattr(self, "exit_code", exit_code)  # noqa: B010 - a class variable in click


def log_to_stderr(ctx: click.Context, level: int, timestamps: bool = False) -> None:
    """Send the library's log records of ``level`` and up to stderr until the
    command ends (undone then, for a caller that runs commands in-process)."""
    handler = logging.StreamHandler(sys.stderr)
    stamp = "%(asctime)s " if timestamps else ""
    handler.setFormatter(
        logging.Formatter(stamp + "%(levelname)s %(name)s: %(message)s")
    )
    logger = logging.getLogger("provider_agent")
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(level)

    def restore() -> None:
        logger.removeHandler(handler)
        logger.setLevel(previous)

    ctx.call_on_close(restore)


def verbosity(count: int, quiet: int = logging.WARNING) -> int:
    """The log level of ``-v`` given ``count`` times (none: ``quiet``)."""
    return (quiet, logging.INFO, logging.DEBUG)[min(count, 2)]


def _verbose(ctx: click.Context, param: click.Parameter, value: int) -> int:
    if value:
        log_to_stderr(ctx, verbosity(value))
    return value


def _targets(
    ctx: click.Context, param: click.Parameter, value: Tuple[str, ...]
) -> Tuple[Any, ...]:
    if not value:
        return ()
    from ..console.targets import parse_target

    try:
        return tuple(parse_target(spec) for spec in value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


def backend_options(fn: F) -> F:
    """``-c/--config``, ``--backend``, ``--api-key-env`` and ``-v``."""
    return _backend_options(fn, search=True)


def scan_options(fn: F) -> F:
    """``backend_options`` for a command that reads a config only from ``-c``."""
    return _backend_options(fn, search=False)


def _backend_options(fn: F, search: bool) -> F:
    config_help = (
        "The agent.toml to read (default: $PROVIDER_AGENT_CONFIG, then "
        "agent.toml in the config directory, then ./agent.toml)."
        if search
        else "Probe the backends of this agent.toml."
    )
    options = [
        click.option(
            "-c",
            "--config",
            "config_path",
            metavar="FILE",
            help=config_help,
        ),
        click.option(
            "--backend",
            "targets",
            multiple=True,
            metavar="KIND[=URL]",
            callback=_targets,
            help="Talk to this backend instead of a config's (repeatable). A bare "
            "URL is asked which kind it is.",
        ),
        click.option(
            "--api-key-env",
            metavar="NAME",
            help="Read the --backend key from this environment variable "
            "(remote kinds default to their usual one).",
        ),
        click.option(
            "-v",
            "--verbose",
            count=True,
            expose_value=False,
            is_eager=True,
            callback=_verbose,
            help="Log what the library does on stderr (-vv: more). Keys are "
            "never printed.",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


@contextlib.contextmanager
def library_errors(exit_code: int = 1) -> Iterator[None]:
    """Turn the library's errors into one ``Failure`` with ``exit_code``."""
    from ..backend import BackendError
    from ..fleet.config import ConfigError

    try:
        yield
    except ConfigError as exc:
        raise Failure("\n".join(exc.problems), exit_code) from exc
    except BackendError as exc:
        raise Failure(str(exc), exit_code) from exc
    except ValueError as exc:  # a URL, a key or a value the library refused
        raise Failure(str(exc), exit_code) from exc


def load(
    config_path: Optional[str],
    targets: Sequence[Any],
    api_key_env: Optional[str],
    *,
    search: bool = True,
) -> Tuple[Optional[Config], bool]:
    """The config the command works on, and whether it came from a file: the
    ``--backend`` targets, else the file the lookup finds (only ``-c`` without
    ``search``). None when there is neither. Raises library errors."""
    from ..console.targets import config_from_targets, find_config, identify
    from ..fleet.config import load_config

    if targets:
        found = [identify(target) for target in targets]
        return config_from_targets(found, api_key_env), False
    if not search and not config_path:
        return None, False
    app_dir = click.get_app_dir(APP_NAME)
    path = find_config(config_path, os.environ if search else {}, app_dir)
    if path is None:
        return None, False
    return load_config(path), True


def require(config: Optional[Config], exit_code: int = 1) -> Config:
    if config is None:
        app_dir = click.get_app_dir(APP_NAME)
        raise Failure(
            "no backends: name them with --backend KIND[=URL], or give a config "
            f"with -c FILE, $PROVIDER_AGENT_CONFIG, {app_dir}/agent.toml or "
            "./agent.toml",
            exit_code,
        )
    return config


def terminal() -> bool:
    return use_terminal(sys.stdout, os.environ)


def echo_table(columns: Sequence[Column], rows: Sequence[Sequence[Any]]) -> None:
    shown = terminal()
    text = render(columns, rows, terminal=shown, colour=use_colour(shown, os.environ))
    click.echo(text, nl=False, color=shown)  # keep what was chosen above


def echo_json(value: Any, one_line: bool = False) -> None:
    click.echo(json.dumps(value, indent=None if one_line else 2))


def note(message: str) -> None:
    """A line for the person, on stderr."""
    click.echo(message, err=True)


@contextlib.contextmanager
def progress(message: str) -> Iterator[None]:
    """``message`` on stderr while the block runs, for a terminal only."""
    shown = use_terminal(sys.stderr, {})
    if shown:
        click.echo(f"{message}...", err=True, nl=False)
    try:
        yield
    finally:
        if shown:
            click.echo("\r\x1b[K", err=True, nl=False)
