"""The ``provider-agent`` command, as installed, against both live engines: its
text and raw bytes are the engine's, and Ctrl-C frees the engine's slot."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import List, Tuple

import pytest

from ..polling import eventually
from .engines import Engine
from .helpers import openai_text
from .tap import Tap, bodies
from .test_llamacpp import MODEL, busy_slots

pytestmark = pytest.mark.integration


def test_scan_json_lists_both_engines(llama: Engine, vllm: Engine) -> None:
    command = [sys.executable, "-m", "provider_agent", "scan", "--json"]
    command += ["--backend", f"llamacpp={llama.url}", "--backend", f"vllm={vllm.url}"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    llamacpp, vllm_result = json.loads(done.stdout)
    assert llamacpp["kind"] == "llamacpp" and llamacpp["health"]["reachable"]
    assert [m["context_window"] for m in llamacpp["models"]] == [256]
    assert llamacpp["error"] is None
    # The vLLM here wants a key the command was not given: its health route is
    # open, its model listing is not, and the scan says so instead of failing.
    assert vllm_result["health"]["reachable"]
    assert vllm_result["models"] == []
    assert "HTTP 401" in vllm_result["error"]
    assert "an API key is needed" in vllm_result["error"]


def cli(*args: str) -> List[str]:
    return [sys.executable, "-m", "provider_agent", *args]


def request_file(tmp_path: Path, max_tokens: int) -> Path:
    path = tmp_path / "request.json"
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "hello world"}],
        "max_tokens": max_tokens,
        "ignore_eos": True,
    }
    path.write_text(json.dumps(body))
    return path


def exec_through_tap(llama: Engine, *args: str) -> Tuple[bytes, bytes, bytes]:
    """``exec ARGS`` through a recording tap: (stdout, stderr, the body the
    engine sent)."""
    tap = Tap(llama.port)
    try:
        done = subprocess.run(
            cli("exec", "--backend", f"llamacpp={tap.url}", *args),
            capture_output=True,
            timeout=60,
            env={**os.environ, "PYTHONIOENCODING": "utf-8"},
        )
        assert eventually(lambda: all(c.closed.is_set() for c in tap.connections), 5)
        (reply,) = tap.replies()
        ((_, body),) = bodies(reply)
    finally:
        tap.close()
    assert done.returncode == 0, done.stderr
    return done.stdout, done.stderr, body


def test_exec_prints_the_text_of_the_relayed_events(
    llama: Engine, tmp_path: Path
) -> None:
    out, err, body = exec_through_tap(
        llama, "--request", str(request_file(tmp_path, 24))
    )
    text = openai_text(body)
    assert text and out.decode("utf-8") == text + "\n"
    summary = err.decode()
    assert "tokens in " in summary and " out 24 " in summary
    assert summary.count("\n") == 1 and "finish length" in summary


def test_exec_raw_writes_the_engine_bytes(llama: Engine, tmp_path: Path) -> None:
    out, _, body = exec_through_tap(
        llama, "--raw", "--request", str(request_file(tmp_path, 16))
    )
    assert out == body and body.endswith(b"data: [DONE]\n\n")


def test_ctrl_c_cancels_the_job_upstream(llama: Engine, tmp_path: Path) -> None:
    long = request_file(tmp_path, 20_000)  # seconds of generation
    process = subprocess.Popen(
        cli("exec", "--backend", f"llamacpp={llama.url}", "--request", str(long)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        process.stdout.read(1)  # the reply is streaming
        assert busy_slots(llama.url), "the job should be generating"
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=10)
    finally:
        process.kill()
    assert process.returncode == 130, err
    assert b"Traceback" not in err
    assert eventually(lambda: not busy_slots(llama.url), 1.5), busy_slots(llama.url)


def test_health_and_models_of_an_engine_with_a_key(
    llama_keyed: Engine, llama_key: str
) -> None:
    env = {**os.environ, "LLAMA_KEY": llama_key}
    target = ["--backend", f"llamacpp={llama_keyed.url}", "--api-key-env", "LLAMA_KEY"]
    health = subprocess.run(
        cli("health", *target, "--json"),
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert health.returncode == 0, health.stderr
    [row] = json.loads(health.stdout)
    assert row["status"] == "up" and row["models"] and row["error"] is None
    models = subprocess.run(
        cli("models", *target), capture_output=True, text=True, timeout=60, env=env
    )
    assert models.returncode == 0, models.stderr
    assert models.stdout.split("\t")[2:4] == ["256", "true\n"]
    assert llama_key not in health.stdout + health.stderr + models.stderr
