"""The ``provider-agent`` command, as installed, against both live engines."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from .engines import Engine

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
