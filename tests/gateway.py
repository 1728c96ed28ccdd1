"""``provider-agent serve`` as a process of its own, for the tests: the gateway a
client meets, over whatever backends an agent.toml in the test's directory names.

The child imports the same ``provider_agent`` as the tests (a source tree or an
installed package); its stdout and stderr go to files, read once it has stopped.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

from .processes import free_port, package_env


def write_config(
    path: Path, urls: Sequence[str], max_concurrent: Optional[int] = None
) -> Path:
    """An agent.toml of llama-servers at ``urls``."""
    text = "".join(f'[[backends]]\nkind = "llamacpp"\nurl = "{u}"\n\n' for u in urls)
    if max_concurrent is not None:
        text += f"[limits]\nmax_concurrent = {max_concurrent}\n"
    path.write_text(text)
    return path


class ServeProcess:
    """``provider-agent serve -c CONFIG --port PORT ARGS`` in ``directory``.

    ``token``: what to send on the readiness probe (a gateway with a token
    answers nobody without it). ``url`` is its base URL, ``pid`` its process id.
    """

    def __init__(
        self,
        config: Path,
        *args: str,
        env: Optional[Mapping[str, str]] = None,
        token: Optional[str] = None,
        command: Optional[Sequence[str]] = None,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = token
        self.directory = config.parent
        self.stdout_path = self.directory / f"serve-{self.port}.out"
        self.stderr_path = self.directory / f"serve-{self.port}.err"
        base = list(command or [sys.executable, "-m", "provider_agent"])
        self.command = [*base, "serve", "-c", str(config), "--port", str(self.port)]
        self.command += list(args)
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.process = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                cwd=str(self.directory),
                env=package_env(env),
                start_new_session=True,  # its own group: see that nothing is left
            )
        self.pid = self.process.pid
        self.returncode: Optional[int] = None

    def wait_ready(self, within: float = 30.0) -> ServeProcess:
        """Wait until ``/health`` answers (200 or 503); fail if the process ends."""
        deadline = time.monotonic() + within
        while True:
            code = self.process.poll()
            if code is not None:
                raise AssertionError(
                    f"serve exited with {code} before answering:\n{self.stderr()}"
                )
            try:
                self.health()
                return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"serve did not answer within {within} s")
            time.sleep(0.05)

    def get(
        self,
        path: str,
        timeout: float = 10.0,
        headers: Optional[Mapping[str, str]] = None,
    ) -> Tuple[int, Any]:
        """GET ``path`` with ``headers``, else the token as a Bearer token (if
        any): (status, decoded JSON)."""
        request = urllib.request.Request(self.url + path)
        if headers is not None:
            for name, value in headers.items():
                request.add_header(name, value)
        elif self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as reply:
                return int(reply.status), json.load(reply)
        except urllib.error.HTTPError as exc:
            with exc:
                return int(exc.code), json.load(exc)

    def health(self) -> Dict[str, Any]:
        status, document = self.get("/health")
        assert status in (200, 503), (status, document)
        return dict(document)

    def stop(self, within: float = 15.0, sig: int = signal.SIGTERM) -> int:
        """``sig``, and its exit status (SIGKILL and fail after ``within`` s)."""
        if self.returncode is not None:
            return self.returncode
        self.process.send_signal(sig)
        try:
            self.returncode = self.process.wait(timeout=within)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"serve did not exit within {within} s of {sig!r}:\n{self.stderr()}"
            ) from None
        return self.returncode

    def kill(self) -> None:
        """Whatever is left of it, gone (for a test that failed)."""
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.returncode = self.process.wait()

    @property
    def left_behind(self) -> bool:
        """Whether a process of its group still runs."""
        try:
            os.killpg(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # pragma: no cover - a reused id of another user
            return True
        return True

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def status_fields(self) -> Dict[str, str]:
        """The process's ``/proc/<pid>/status`` (Linux): VmRSS, Threads, ..."""
        fields = {}
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                name, _, value = line.partition(":")
                fields[name] = value.strip()
        return fields

    def rss_kib(self) -> int:
        return int(self.status_fields()["VmRSS"].split()[0])

    def threads(self) -> int:
        return int(self.status_fields()["Threads"])
