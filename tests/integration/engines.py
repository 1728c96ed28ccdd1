"""Starting and stopping real inference engines for the integration tests.

Each engine runs in its own process group with a private temp directory, on a
free 127.0.0.1 port; it is ready when its health route answers 200. Stopping
sends SIGTERM to the whole group (vLLM runs three processes), then SIGKILL
after a grace period, and removes the temp directory with whatever the engine
left there (vLLM leaves unix sockets, ``vllm_dist_*`` and ``torchinductor_*``).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import ModuleType
from typing import Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

ROOT = Path(__file__).resolve().parents[2]


def script(name: str) -> ModuleType:
    """One of the project's preparation scripts, imported by path."""
    path = ROOT / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_prepare_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Engine:
    """One engine process; ``url`` is its base URL once ``start()`` returned."""

    def __init__(
        self,
        name: str,
        command: Sequence[object],
        *,
        port: int,
        env: Optional[Mapping[str, str]] = None,
        health_path: str = "/health",
        ready_within: float = 60.0,
        cwd: Optional[Path] = None,
    ) -> None:
        self.name = name
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.command = [str(part) for part in command]
        self.health_path = health_path
        self.ready_within = ready_within
        self.cwd = cwd
        self.tmp = Path(tempfile.mkdtemp(prefix=f"provider-agent-{name}-"))
        self.log_path = self.tmp / "engine.log"
        self.env: Dict[str, str] = dict(os.environ)
        self.env.update(env or {})
        # Everything the engine writes to the temp directory lands here.
        self.env.update({"TMPDIR": str(self.tmp), "TEMP": str(self.tmp)})
        self.process: Optional[subprocess.Popen[bytes]] = None
        self.health_statuses: List[int] = []
        self.spawned_at = 0.0
        self._groups: List[int] = []
        self.started_in: Optional[float] = None

    def start(self) -> Engine:
        """Spawn the engine and wait until its health route answers 200."""
        try:
            self.spawn()
            self._wait_ready(self.spawned_at)
        except BaseException:
            self.stop()
            raise
        self.started_in = time.monotonic() - self.spawned_at
        return self

    def spawn(self) -> Engine:
        """Spawn the engine without waiting for it."""
        self.spawned_at = time.monotonic()
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,  # its own group: children stop with it
            )
        return self

    def _wait_ready(self, started: float) -> None:
        assert self.process is not None
        while True:
            code = self.process.poll()
            if code is not None:
                raise RuntimeError(
                    f"{self.name} exited with status {code} before it was ready; "
                    f"its log ends:\n{self.log_tail()}"
                )
            status = self._health_status()
            if status is not None:
                self.health_statuses.append(status)
                if status == 200 and self.process.poll() is None:
                    return  # and not another server that took the port first
            if time.monotonic() - started > self.ready_within:
                raise RuntimeError(
                    f"{self.name} was not ready within {self.ready_within:.0f} s; "
                    f"its log ends:\n{self.log_tail()}"
                )
            time.sleep(0.02)

    def _health_status(self) -> Optional[int]:
        try:
            with urllib.request.urlopen(self.url + self.health_path, timeout=5) as r:
                return int(r.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)
        except OSError:
            return None  # not listening yet

    @property
    def stopped_clean(self) -> bool:
        """No process of the engine's group is left, nor its temp directory."""
        return (
            self.process is None
            and not self.tmp.exists()
            and not any(_group_alive(pgid) for pgid in self._groups)
        )

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, grace: float = 30.0) -> None:
        process, self.process = self.process, None
        if process is not None:
            self._groups.append(process.pid)
            _signal_group(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                _signal_group(process.pid, signal.SIGKILL)
                process.wait()
            # Children may outlive the leader by a few seconds.
            deadline = time.monotonic() + grace
            while _group_alive(process.pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if _group_alive(process.pid):
                _signal_group(process.pid, signal.SIGKILL)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __repr__(self) -> str:
        return f"Engine({self.name!r}, {self.url!r})"


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _group_alive(pgid: int) -> bool:
    """Whether a live (not zombie) process remains in the group. Orphans whose
    new parent does not reap them stay zombies; those count as gone."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        return True
    return any(pgrp == pgid for _, _, pgrp in live_processes())


def live_processes() -> Iterator[Tuple[int, int, int]]:
    """(pid, parent pid, process group) of each live (not zombie) process, from
    ``/proc``."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...: comm may hold spaces and parentheses.
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 2 and fields[0] != "Z":
            yield int(entry.name), int(fields[1]), int(fields[2])
