"""The ``provider-agent`` command: a thin shell over the library.

One group, one module per command; each command imports the library when it
runs, so ``provider-agent --help`` costs little more than importing click.
Library errors become one ``click.ClickException`` at this boundary
(``_common.library_errors``); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib
from typing import Any, List, Optional, Tuple

import click

from .. import __version__
from ._common import CONTEXT_SETTINGS, INTERRUPTED
from .config import config_group
from .exec import exec_command
from .health import health_command
from .models import discover_command, models_command
from .scan import scan_command
from .serve import serve_command

__all__ = ["main"]


class _Group(click.Group):
    """A group that suggests the command a typo was meant to be."""

    def resolve_command(
        self, ctx: click.Context, args: List[str]
    ) -> Tuple[Optional[str], Optional[click.Command], List[str]]:
        name = args[0] if args else ""
        if name and not name.startswith("-") and self.get_command(ctx, name) is None:
            close = difflib.get_close_matches(name, self.list_commands(ctx), 3, 0.5)
            hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
            ctx.fail(f"No such command {name!r}.{hint}")
        return super().resolve_command(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        # Ctrl-C anywhere (a poll, a prompt read from stdin) exits 130, as a
        # shell expects of an interrupted command, not click's "Aborted!" 1.
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            ctx.exit(INTERRUPTED)


@click.group(cls=_Group, context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "--version", prog_name="provider-agent")
def main() -> None:
    """One blocking API over local and remote LLM inference backends.

    Backends come from --backend KIND[=URL] (repeatable; KIND is vllm,
    llamacpp, lmstudio, ollama, openrouter or venice, or give a bare URL), or
    from an agent.toml: -c FILE, else $PROVIDER_AGENT_CONFIG, else the config
    directory's agent.toml, else ./agent.toml.

    Data goes to stdout (a table on a terminal, tab-separated rows in a pipe,
    JSON with --json); errors, progress and timings go to stderr.
    """


for _command in (
    scan_command,
    health_command,
    models_command,
    exec_command,
    discover_command,
    config_group,
    serve_command,
):
    main.add_command(_command)
