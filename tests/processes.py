"""Running a snippet of Python in a fresh interpreter: for what only a new process
shows (what an import loads, what a fork or the interpreter's exit does); and what
a child process of the tests needs: a free port, this ``provider_agent`` on its path."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Dict, Mapping, Optional

import provider_agent

#: The directory ``provider_agent`` was imported from: the child's too (the
#: working tree's here, the installed one under tox).
PACKAGE_ROOT = str(Path(provider_agent.__file__).resolve().parents[1])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def package_path() -> str:
    """``$PYTHONPATH`` with the tests' ``provider_agent`` first."""
    paths = [PACKAGE_ROOT] + [
        p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p
    ]
    return os.pathsep.join(paths)


def package_env(extra: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """This environment, with ``extra`` and the tests' ``provider_agent`` first
    on the path."""
    env = dict(os.environ)
    env.update(extra or {})
    env["PYTHONPATH"] = package_path()
    return env


def run_python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` (dedented) with ``args``; its exit status, stdout and stderr."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def output_of(code: str) -> str:
    """The stripped stdout of ``code``, which must exit 0."""
    done = run_python(code)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()
