"""``provider-agent exec``: run one chat request and stream its reply."""

from __future__ import annotations

import sys
from typing import Any, Dict, Optional, Tuple

import click

from ..console.table import printable
from ._common import (
    CONTEXT_SETTINGS,
    INTERRUPTED,
    Failure,
    backend_options,
    library_errors,
    load,
    note,
    require,
    terminal,
)

#: The exit code of a job past its deadline (that of timeout(1)).
TIMED_OUT = 124


@click.command("exec", context_settings=CONTEXT_SETTINGS)
@backend_options
@click.argument("prompt", required=False)
@click.option(
    "-m",
    "--model",
    metavar="MODEL",
    help="The model (default: the request's, else the first one listed).",
)
@click.option("-s", "--system", metavar="TEXT", help="A system prompt.")
@click.option(
    "--request",
    "request_file",
    metavar="FILE",
    help="Send the whole request body in FILE (JSON; - for stdin) instead of a prompt.",
)
@click.option(
    "--format",
    "wire_format",
    type=click.Choice(["openai", "anthropic"]),
    default="openai",
    show_default=True,
    help="The wire format of the request and of its stream.",
)
@click.option(
    "--deadline",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    default=300.0,
    show_default=True,
    help="Seconds the whole job may take.",
)
@click.option("--raw", is_flag=True, help="Write the upstream SSE bytes verbatim.")
def exec_command(
    config_path: Optional[str],
    targets: Tuple[Any, ...],
    api_key_env: Optional[str],
    prompt: Optional[str],
    model: Optional[str],
    system: Optional[str],
    request_file: Optional[str],
    wire_format: str,
    deadline: float,
    raw: bool,
) -> None:
    """Run one chat request and stream the reply's text to stdout.

    The request is PROMPT, or stdin when PROMPT is - or left out, or the body
    in --request FILE. With --backend it goes to that one backend; with a
    config the fleet routes it, failing over before the first byte. Usage and
    timing follow on one stderr line.

    Exits 0 when the reply ended, 1 when the job failed, 124 past the
    deadline, 130 on Ctrl-C (the job is cancelled upstream).
    """
    from ..backend import BackendTimeoutError, Job, WireFormat
    from ..console.oneshot import summary_line

    fmt = WireFormat(wire_format)
    if len(targets) > 1:
        raise click.UsageError("exec talks to one --backend at a time")
    with library_errors():
        # Backends first: with none named, say so before waiting on stdin.
        config = require(load(config_path, targets, api_key_env)[0])
        request = _request(prompt, system, request_file, fmt)
    runner = _Runner(config, direct=bool(targets))
    try:
        with library_errors():
            model_id = model or request.get("model") or runner.first_model()
            if model and "model" in request:
                request = {**request, "model": model}  # what was asked, routed
            job = Job.new(model_id, request, fmt, max(1, int(deadline * 1000)))
            # A body copied from elsewhere may say "stream": false; exec streams.
            job = job.without_stream_flag()
            result = runner.run(job, raw)
    except KeyboardInterrupt:
        note("cancelled")  # leaving the stream's with block closed it upstream
        click.get_current_context().exit(INTERRUPTED)
    except Failure as exc:
        if isinstance(exc.__cause__, BackendTimeoutError):
            setattr(exc, "exit_code", TIMED_OUT)  # noqa: B010
        raise
    finally:
        runner.close()
    if not raw:
        click.echo()  # the reply's text ends its line
    note(summary_line(result))


def _request(
    prompt: Optional[str],
    system: Optional[str],
    request_file: Optional[str],
    fmt: Any,
) -> Dict[str, Any]:
    """The request body the arguments make; raises library errors."""
    from ..console.oneshot import prompt_request, read_request

    if request_file is not None:
        if prompt is not None or system is not None:
            raise click.UsageError("give a prompt (and -s) or --request, not both")
        stdin = request_file == "-"
        source = "<stdin>" if stdin else request_file
        try:
            if stdin:
                text = sys.stdin.read()
            else:
                with open(request_file, encoding="utf-8") as file:
                    text = file.read()
        except OSError as exc:
            raise Failure(f"{source}: cannot read: {exc.strerror or exc}") from exc
        return read_request(text, source)
    if prompt is None or prompt == "-":
        if sys.stdin.isatty():
            note("reading the prompt from stdin (end it with Ctrl-D)")
        prompt = sys.stdin.read()
    if not prompt.strip():
        raise click.UsageError("the prompt is empty")
    return prompt_request(prompt, system, fmt)


class _Runner:
    """The job's way out: one backend directly, or the fleet of the config."""

    def __init__(self, config: Any, direct: bool) -> None:
        from ..fleet import Fleet

        self.backend: Any = None
        self.fleet: Any = None
        with library_errors():
            if direct:
                self.backend = config.backends[0].build()
            else:
                self.fleet = Fleet.from_config(config)

    def first_model(self) -> str:
        if self.backend is not None:
            models = [m.model_id for m in self.backend.list_models()]
        else:
            models = [m["model_id"] for m in self.fleet.capabilities()["models"]]
        if not models:
            raise Failure("no backend lists a model; name one with -m MODEL")
        return str(models[0])

    def run(self, job: Any, raw: bool) -> Any:
        target = self.backend if self.backend is not None else self.fleet
        with target.execute(job) as stream:
            if raw:
                for chunk in stream:
                    click.echo(chunk, nl=False)
            else:
                shown = terminal()
                for piece in stream.iter_text():
                    # color=True: click would strip escape codes from a pipe's
                    # data; a terminal's were made printable already.
                    text = printable(piece) if shown else piece
                    click.echo(text, nl=False, color=True)
            return stream.partial_result

    def close(self) -> None:
        for owned in (self.backend, self.fleet):
            if owned is not None:
                owned.close()
