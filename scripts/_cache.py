"""Where prepared engines live, and a lock so two runs never build at once."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator, Sequence


def cache_root() -> Path:
    """``$PROVIDER_AGENT_CACHE``, else ``~/.cache/provider-agent``: outside
    the checkout, so a fresh clone reuses what an earlier one prepared."""
    configured = os.environ.get("PROVIDER_AGENT_CACHE")
    if configured:
        return Path(configured).expanduser().resolve()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser().resolve() / "provider-agent"


@contextlib.contextmanager
def locked(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``directory`` while preparing it."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    lock_path = directory.parent / (directory.name + ".lock")
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def say(message: str) -> None:
    print(f"[prepare] {message}", file=sys.stderr, flush=True)


def run(command: Sequence[str], **kwargs: object) -> None:
    """Run a command with its output shown; raise with the command on failure."""
    say("$ " + " ".join(str(part) for part in command))
    started = time.monotonic()
    subprocess.run([str(part) for part in command], check=True, **kwargs)  # type: ignore[call-overload]
    say(f"  done in {time.monotonic() - started:.0f} s")


def download(url: str, sha256: str, target: Path) -> None:
    """Fetch ``url`` into ``target`` unless a file with that digest is there."""
    if target.exists() and _digest(target) == sha256:
        return
    say(f"downloading {url}")
    partial = target.with_name(target.name + ".part")
    with urllib.request.urlopen(url, timeout=120) as reply, open(partial, "wb") as out:
        shutil.copyfileobj(reply, out, 1 << 20)
    actual = _digest(partial)
    if actual != sha256:
        partial.unlink()
        raise RuntimeError(f"{url}: sha256 {actual}, expected {sha256}")
    partial.replace(target)


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        for block in iter(lambda: source.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
