"""``agent.toml``: the backends to serve from, their prices and the agent's limits.

``load_config(path)`` reads a file and ``Config.from_toml(text)`` a string; both
check the whole file and raise one ``ConfigError`` listing every problem, each a line
``<source>: <place>: <what is wrong>``. The config holds the names of the
environment variables with API keys, never a key; ``Config.build_backends()`` reads
them and builds each backend, skipping (with a warning) one whose variable is unset.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, List, Mapping, Optional, Tuple, Union

from ..backend import BACKENDS, Backend, MissingApiKeyError, create_backend

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the same parser, published as a backport
    import tomli as tomllib

__all__ = [
    "BackendConfig",
    "Config",
    "ConfigError",
    "LimitsConfig",
    "ModelPrice",
    "PricingConfig",
    "load_config",
]

log = logging.getLogger(__name__)

DEFAULT_MAX_CONCURRENT = 8
MAX_CONCURRENT_LIMIT = 256
#: The top-level tables this module reads; any other is kept in ``Config.sections``.
READ_SECTIONS = ("backends", "pricing", "limits")
#: Backend options passed through to the backend's constructor.
TIMEOUT_OPTIONS = (
    "connect_timeout",
    "health_timeout",
    "request_timeout",
    "stream_read_timeout",
)
OPTION_KEYS = (*TIMEOUT_OPTIONS, "headers", "max_connections")
BACKEND_KEYS = (
    "kind",
    "url",
    "api_key_env",
    "models",
    "markup",
    "max_concurrent",
    *OPTION_KEYS,
)
PRICE_KEYS = ("input_per_1m", "output_per_1m")
PRICING_KEYS = ("default_input_per_1m", "default_output_per_1m", "models")
LIMITS_KEYS = ("max_concurrent", "max_tokens_per_minute")
#: Kinds whose backend takes no key at all (``OllamaBackend(url)``).
KEYLESS_KINDS = ("ollama",)
#: Headers that carry a key: the key goes in an environment variable instead.
KEY_HEADERS = ("authorization", "x-api-key")

_TOML_PLACE = re.compile(r"^(.*) \(at (line \d+, column \d+|end of document)\)$")


class ConfigError(ValueError):
    """The configuration cannot be used. ``problems`` lists every problem found,
    each one line that starts with ``source``; ``str()`` joins them."""

    def __init__(self, source: str, problems: List[str]) -> None:
        super().__init__("\n".join(problems))
        self.source = source
        self.problems = list(problems)

    def __reduce__(self) -> Tuple[Any, ...]:
        return (type(self), (self.source, self.problems))


@dataclass(frozen=True)
class ModelPrice:
    """What a model costs, in USDC micro-units per million tokens."""

    input_per_1m: int
    output_per_1m: int

    @property
    def is_zero(self) -> bool:
        """Whether the model is free (both prices zero)."""
        return self.input_per_1m == 0 and self.output_per_1m == 0


@dataclass(frozen=True)
class PricingConfig:
    """``[pricing]``: default prices and per-model overrides (all None when the
    file has no ``[pricing]``)."""

    default_input_per_1m: Optional[int] = None
    default_output_per_1m: Optional[int] = None
    models: Mapping[str, ModelPrice] = field(
        default_factory=lambda: MappingProxyType({}), hash=False
    )

    def resolve(self, model_id: str) -> Optional[ModelPrice]:
        """The model's own price, else the defaults, else None (no pricing)."""
        price = self.models.get(model_id)
        if price is not None:
            return price
        if self.default_input_per_1m is None or self.default_output_per_1m is None:
            return None
        return ModelPrice(self.default_input_per_1m, self.default_output_per_1m)


@dataclass(frozen=True)
class LimitsConfig:
    """``[limits]``: jobs run at once, and the token rate advertised (not enforced)."""

    max_concurrent: int = DEFAULT_MAX_CONCURRENT
    max_tokens_per_minute: Optional[int] = None


@dataclass(frozen=True, repr=False)
class BackendConfig:
    """One ``[[backends]]`` entry; ``index`` is its position in the file (from 0).

    ``options`` holds the backend options the entry sets (timeouts, ``headers``,
    ``max_connections``), passed to the backend's constructor as they are.
    """

    kind: str
    url: Optional[str] = None
    api_key_env: Optional[str] = None
    models: Optional[Tuple[str, ...]] = None
    markup: Optional[float] = None
    max_concurrent: Optional[int] = None
    options: Mapping[str, Any] = field(
        default_factory=lambda: MappingProxyType({}), hash=False
    )
    index: int = 0

    @property
    def place(self) -> str:
        """``backends[<index>]``, as messages name the entry."""
        return f"backends[{self.index}]"

    def build(self) -> Backend:
        """The backend this entry describes, its key read from ``api_key_env``.

        Raises ``MissingApiKeyError`` when that variable is unset or blank, and
        ``ValueError`` when the backend refuses an option.
        """
        return create_backend(
            self.kind, self.url, api_key_env=self.api_key_env, **self.options
        )

    def __repr__(self) -> str:
        # Header values may carry credentials of a proxy: show only their names.
        options = dict(self.options)
        if "headers" in options:
            options["headers"] = {name: "<redacted>" for name in options["headers"]}
        return (
            f"BackendConfig(kind={self.kind!r}, url={self.url!r}, "
            f"api_key_env={self.api_key_env!r}, models={self.models!r}, "
            f"markup={self.markup!r}, max_concurrent={self.max_concurrent!r}, "
            f"options={options!r}, index={self.index!r})"
        )


@dataclass(frozen=True)
class Config:
    """A checked ``agent.toml``. ``sections`` keeps the other top-level tables
    (``[operator]``, ``[coordinator]``, ``[identity]``, ``[observability]``, any
    other) as read; ``source`` names where the text came from."""

    backends: Tuple[BackendConfig, ...] = ()
    pricing: PricingConfig = field(default_factory=PricingConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    sections: Mapping[str, Any] = field(
        default_factory=lambda: MappingProxyType({}), hash=False, repr=False
    )
    source: str = "<string>"

    @classmethod
    def from_toml(cls, text: str, source: str = "<string>") -> Config:
        """Parse and check ``text``; raises ``ConfigError`` listing every problem."""
        try:
            document = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(source, [f"{source}: {_toml_problem(exc)}"]) from None
        from ._config_check import Checker  # it builds these classes

        return Checker(source).config(document)

    def build_backends(self) -> List[Tuple[BackendConfig, Backend]]:
        """Build every backend, in file order, paired with its entry.

        An entry whose ``api_key_env`` variable is unset or blank is skipped with
        a warning and the others still load. Raises ``ConfigError`` (closing what
        it built) when a backend refuses its settings.
        """
        built: List[Tuple[BackendConfig, Backend]] = []
        problems = []
        for entry in self.backends:
            try:
                built.append((entry, entry.build()))
            except MissingApiKeyError:
                log.warning(
                    "%s: %s (%s): environment variable %s is unset or blank; "
                    "backend skipped",
                    self.source,
                    entry.place,
                    entry.kind,
                    entry.api_key_env or BACKENDS[entry.kind].key_env_var,
                )
            except (TypeError, ValueError) as exc:
                problems.append(f"{self.source}: {entry.place}: {exc}")
        if problems:
            for _, backend in built:
                backend.close()
            raise ConfigError(self.source, problems)
        return built


def load_config(path: Union[str, os.PathLike[str]]) -> Config:
    """Read and check the file at ``path``; raises ``ConfigError`` listing every
    problem (``<path>: cannot read: <reason>`` when it cannot be read)."""
    source = os.fspath(path)
    try:
        with open(source, encoding="utf-8") as file:
            text = file.read()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError(source, [f"{source}: cannot read: {reason}"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(source, [f"{source}: cannot read: {exc}"]) from None
    return Config.from_toml(text, source)


def _toml_problem(exc: Exception) -> str:
    """tomllib's "Invalid value (at line 3, column 9)" as "line 3, column 9:
    invalid value"."""
    message = str(exc)
    match = _TOML_PLACE.match(message)
    if match is None:
        return f"invalid TOML: {message}"
    what, where = match.groups()
    return f"{where}: invalid TOML: {what[:1].lower()}{what[1:]}"
