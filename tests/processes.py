"""Running a snippet of Python in a fresh interpreter: for what only a new process
shows (what an import loads, what a fork or the interpreter's exit does)."""

from __future__ import annotations

import subprocess
import sys
import textwrap


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
