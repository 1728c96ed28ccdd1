"""Which backends a command talks to: a config file, or ``--backend`` flags.

``find_config`` looks for ``agent.toml`` where the command line says, in this
order: the path given (``-c FILE``), ``$PROVIDER_AGENT_CONFIG``, the platform's
config directory (the caller passes it: ``click.get_app_dir`` knows it, and no
library module imports click), then ``./agent.toml``. ``parse_target`` reads one
``--backend`` value (``KIND``, ``KIND=URL``, or a bare URL whose kind the server
says itself) and ``config_from_targets`` makes a ``Config`` of them, so every
command works on a ``Config`` whichever way the backends were named.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Sequence

from ..backend import BACKENDS, BackendError
from ..backend._checks import normalise_url
from ..backend.identify import detect_kind
from ..fleet.config import KEYLESS_KINDS, BackendConfig, Config

__all__ = [
    "CONFIG_ENV",
    "CONFIG_NAME",
    "Target",
    "config_from_targets",
    "find_config",
    "parse_target",
]

#: The environment variable that names the config file.
CONFIG_ENV = "PROVIDER_AGENT_CONFIG"
#: The config file's name, in the config directory and the working directory.
CONFIG_NAME = "agent.toml"


def find_config(
    explicit: Optional[str],
    environ: Mapping[str, str],
    app_dir: Optional[str],
    cwd: Optional[str] = None,
) -> Optional[Path]:
    """The config file to read, or None when there is none.

    A file named by ``explicit`` or by ``$PROVIDER_AGENT_CONFIG`` is returned
    whether it exists or not (reading it then says why it cannot be read); the
    config directory's and the working directory's ``agent.toml`` only if they
    exist.
    """
    if explicit:
        return Path(explicit)
    named = environ.get(CONFIG_ENV, "").strip()
    if named:
        return Path(named)
    candidates = [Path(app_dir) / CONFIG_NAME] if app_dir else []
    candidates.append(Path(cwd) / CONFIG_NAME if cwd else Path(CONFIG_NAME))
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    return None


@dataclass(frozen=True)
class Target:
    """One ``--backend`` value: its kind (None for a bare URL not yet
    identified) and its URL (None: the kind's default)."""

    kind: Optional[str]
    url: Optional[str]

    @property
    def label(self) -> str:
        return self.url or self.kind or "?"


def parse_target(spec: str) -> Target:
    """Read ``KIND``, ``KIND=URL`` or a bare ``URL`` (``host:port`` is taken as
    ``http://host:port``). Raises ``ValueError`` for an unknown kind, listing
    the valid ones, and for a URL that is not http(s)."""
    spec = spec.strip()
    head, sep, tail = spec.partition("=")
    if sep and not any(c in head for c in ":/"):
        kind, url = head, tail.strip() or None
    elif sep or any(c in spec for c in ":/."):
        kind, url = None, spec
    else:
        kind, url = spec, None
    if kind is not None and kind not in BACKENDS:
        valid = ", ".join(sorted(BACKENDS))
        raise ValueError(f"unknown kind {kind!r}; valid kinds: {valid}")
    if url and "://" not in url:
        url = f"http://{url}"  # host:port, as people type it
    if url:
        normalise_url(url)  # refused now, as a usage error, not at first use
    return Target(kind, url)


def identify(target: Target, timeout: float = 2.0) -> Target:
    """``target`` with its kind, asked of the server for a bare URL. Raises
    ``ValueError`` when the server does not answer, or does not say which kind
    it is."""
    if target.kind is not None or target.url is None:
        return target
    try:
        kind = detect_kind(target.url, timeout)
    except BackendError as exc:
        raise ValueError(
            f"{target.url}: cannot ask which kind it is: {exc.message}"
        ) from None
    if kind is None:
        raise ValueError(
            f"{target.url}: no server there says which kind it is; "
            f"name it: --backend KIND={target.url}"
        )
    return Target(kind, target.url)


def config_from_targets(
    targets: Sequence[Target], api_key_env: Optional[str] = None
) -> Config:
    """A config of ``targets`` (each with its kind), as if a file listed them.

    ``api_key_env`` names the variable every backend reads its key from (a
    local engine started with ``--api-key``); without it, remote kinds read
    their usual one and local kinds send none."""
    entries = []
    for index, target in enumerate(targets):
        if target.kind is None:
            raise ValueError(f"{target.label}: the kind is not known")
        key_env = None if target.kind in KEYLESS_KINDS else api_key_env
        entries.append(BackendConfig(target.kind, target.url, key_env, index=index))
    return Config(backends=tuple(entries), source="--backend")
