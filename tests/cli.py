"""Running the ``provider-agent`` command in tests: through click's runner, with
stdout and stderr apart, or as the installed console script."""

from __future__ import annotations

import inspect
import os
import shutil
import sys
from pathlib import Path
from typing import Dict, List, Optional

from click.testing import CliRunner, Result

from provider_agent.cli import main


def runner() -> CliRunner:
    # click 8.1 (the last for Python 3.9) mixes stderr in unless told not to.
    if "mix_stderr" in inspect.signature(CliRunner.__init__).parameters:
        return CliRunner(mix_stderr=False)  # type: ignore[call-arg]
    return CliRunner()


def run(
    *args: str, env: Optional[Dict[str, str]] = None, input: Optional[str] = None
) -> Result:
    """``provider-agent ARGS`` in a pipe (CliRunner's stdout is not a terminal)."""
    return runner().invoke(main, list(args), env=env, input=input)


def console_script() -> List[str]:
    """The installed ``provider-agent`` (beside this Python), else ``-m``."""
    script = Path(sys.executable).with_name("provider-agent")
    if script.exists():
        return [str(script)]
    found = shutil.which("provider-agent")
    return [found] if found else [sys.executable, "-m", "provider_agent"]


def child_env(**extra: str) -> Dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    return env
