"""``agent.toml``: the backends to serve from, their prices and the agent's limits.

``load_config(path)`` reads a file and ``Config.from_toml(text)`` a string; both
check the whole file and raise one ``ConfigError`` listing every problem, each a line
``<source>: <place>: <what is wrong>``. The config holds the names of the
environment variables with API keys, never a key; ``Config.build_backends()`` reads
them and builds each backend, skipping (with a warning) one whose variable is unset.
"""

from __future__ import annotations

import logging
import math
import os
import re
import sys
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union
from urllib.parse import urlsplit

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

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")
_TOML_PLACE = re.compile(r"^(.*) \(at (line \d+, column \d+|end of document)\)$")
_DEFAULT_PORTS = {"http": 80, "https": 443}


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
        return _Checker(source).config(document)

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


def _type_name(value: Any) -> str:
    names = {bool: "boolean", int: "integer", float: "float", str: "string"}
    names.update({list: "array", dict: "table"})
    return names.get(type(value), type(value).__name__)


def _normalised_url(url: str) -> str:
    """The URL as compared for duplicates: scheme and host in lower case, default
    port dropped, no trailing slash."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    netloc = (
        host if port in (None, _DEFAULT_PORTS.get(parts.scheme)) else f"{host}:{port}"
    )
    path = parts.path.rstrip("/")
    query = f"?{parts.query}" if parts.query else ""
    return f"{parts.scheme.lower()}://{netloc}{path}{query}"


class _Checker:
    """Walks a parsed document, collecting every problem before raising."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: List[str] = []

    def problem(self, place: str, message: str) -> None:
        self.problems.append(f"{self.source}: {place}: {message}")

    def config(self, document: Dict[str, Any]) -> Config:
        backends = self.backends(document.get("backends"))
        pricing = self.pricing(document.get("pricing"))
        limits = self.limits(document.get("limits"))
        if self.problems:
            raise ConfigError(self.source, self.problems)
        sections = {k: v for k, v in document.items() if k not in READ_SECTIONS}
        return Config(
            tuple(backends), pricing, limits, MappingProxyType(sections), self.source
        )

    # -- shapes and scalars ---------------------------------------------------

    def table(
        self, place: str, value: Any, valid: Optional[Tuple[str, ...]]
    ) -> Optional[Dict[str, Any]]:
        """``value`` when it is a table, its unknown keys (unless ``valid`` is
        None) reported; else None."""
        if not isinstance(value, dict):
            self.problem(place, f"must be a table, not {_type_name(value)}")
            return None
        for key in value:
            if valid is not None and key not in valid:
                hint = (
                    "; name the variable that holds it in api_key_env"
                    if key == "api_key"
                    else ""
                )
                self.problem(
                    f"{place}.{key}",
                    f"unknown key{hint}; valid keys: {', '.join(valid)}",
                )
        return value

    def required(
        self, place: str, table: Dict[str, Any], names: Tuple[str, ...], low: int
    ) -> List[Optional[int]]:
        """The integers ``names`` of ``table``, each reported when missing."""
        values: List[Optional[int]] = []
        for name in names:
            if name in table:
                values.append(self.integer(f"{place}.{name}", table[name], low))
            else:
                self.problem(f"{place}.{name}", "required")
                values.append(None)
        return values

    def integer(
        self, place: str, value: Any, low: int, high: Optional[int] = None
    ) -> Optional[int]:
        if isinstance(value, bool) or not isinstance(value, int):
            self.problem(place, f"must be an integer, not {_type_name(value)}")
            return None
        if value < low or (high is not None and value > high):
            if high is not None:
                bound = f"from {low} to {high}"
            else:
                bound = "> 0" if low == 1 else f">= {low}"
            self.problem(place, f"must be {bound}, not {value}")
            return None
        return value

    def positive(self, place: str, value: Any) -> Optional[float]:
        return self.number(place, value, positive=True)

    def number(self, place: str, value: Any, positive: bool = False) -> Optional[float]:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.problem(place, f"must be a number, not {_type_name(value)}")
            return None
        if not math.isfinite(value) or value < 0 or (positive and value == 0):
            self.problem(place, f"must be a number {'>' if positive else '>='} 0")
            return None
        return float(value)

    def string(self, place: str, value: Any) -> Optional[str]:
        if not isinstance(value, str):
            self.problem(place, f"must be a string, not {_type_name(value)}")
            return None
        if not value.strip():
            self.problem(place, "must not be empty")
            return None
        return value

    def url(self, place: str, value: Any) -> Optional[str]:
        # Never quote a URL that may carry a secret: credentials or a query.
        url = self.string(place, value)
        if url is None:
            return None
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError for a bad port
        except ValueError:
            parts = None
        if parts is not None and (parts.username or parts.password):
            self.problem(place, "must not hold credentials; use api_key_env")
            return None
        if (
            parts is None
            or parts.scheme not in ("http", "https")
            or not parts.hostname
            or any(c.isspace() for c in url)
        ):
            quoted = "" if "?" in url or "@" in url else f", not {url!r}"
            self.problem(place, f"must be an http(s) URL{quoted}")
            return None
        return url

    # -- [[backends]] ---------------------------------------------------------

    def backends(self, value: Any) -> List[BackendConfig]:
        if value is None or value == []:
            self.problem("backends", "at least one [[backends]] entry is required")
            return []
        if not isinstance(value, list):
            self.problem("backends", "must be an array of tables ([[backends]])")
            return []
        entries = []
        for index, item in enumerate(value):
            entry = self.backend(index, item)
            if entry is not None:
                entries.append(entry)
        self.duplicates(entries)
        return entries

    def backend(self, index: int, value: Any) -> Optional[BackendConfig]:
        place = f"backends[{index}]"
        before = len(self.problems)
        item = self.table(place, value, BACKEND_KEYS)
        if item is None:
            return None
        kind = self.kind(place, item.get("kind"))
        cls = BACKENDS.get(kind or "")
        required = {"url": cls.native, "api_key_env": cls.needs_key} if cls else {}
        checks: Dict[str, Callable[[str, Any], Any]] = {
            "url": self.url,
            "api_key_env": lambda p, v: self.api_key_env(p, v, kind),
            "models": self.models,
            "markup": self.number,
            "max_concurrent": lambda p, v: self.integer(p, v, 1, MAX_CONCURRENT_LIMIT),
            "max_connections": lambda p, v: self.integer(p, v, 1),
            "headers": self.headers,
            **{name: self.positive for name in TIMEOUT_OPTIONS},
        }
        values = {}
        for key, check in checks.items():
            if key in item:
                values[key] = check(f"{place}.{key}", item[key])
            elif required.get(key):
                self.problem(f"{place}.{key}", f"required for kind {kind!r}")
        if len(self.problems) > before or kind is None:
            return None
        options = {key: values[key] for key in OPTION_KEYS if key in values}
        return BackendConfig(
            kind,
            values.get("url"),
            values.get("api_key_env"),
            values.get("models"),
            values.get("markup"),
            values.get("max_concurrent"),
            MappingProxyType(options),
            index,
        )

    def kind(self, place: str, value: Any) -> Optional[str]:
        valid = ", ".join(BACKENDS)
        if value is None:
            self.problem(f"{place}.kind", f"required; one of: {valid}")
            return None
        kind = self.string(f"{place}.kind", value)
        if kind is not None and kind not in BACKENDS:
            self.problem(f"{place}.kind", f"unknown kind {kind!r}; one of: {valid}")
            return None
        return kind

    def api_key_env(self, place: str, value: Any, kind: Optional[str]) -> Any:
        # The value is never quoted: a key pasted here by mistake must not leak.
        if not isinstance(value, str):
            self.problem(place, f"must be a string, not {_type_name(value)}")
            return None
        if not _ENV_NAME.match(value):
            self.problem(
                place,
                "must be the name of an environment variable (letters, digits "
                "and _), not the key itself",
            )
            return None
        if kind in KEYLESS_KINDS:
            self.problem(place, f"kind {kind!r} takes no API key")
            return None
        return value

    def models(self, place: str, value: Any) -> Optional[Tuple[str, ...]]:
        if not isinstance(value, list):
            self.problem(place, f"must be an array of strings, not {_type_name(value)}")
            return None
        if not value:
            self.problem(place, "must list at least one model id; leave it out for all")
            return None
        ids = [self.string(f"{place}[{i}]", item) for i, item in enumerate(value)]
        return tuple(i for i in ids if i is not None)

    def headers(self, place: str, value: Any) -> Mapping[str, str]:
        # Header values are never quoted: they may carry a proxy's credentials.
        if not isinstance(value, dict):
            self.problem(place, f"must be a table of strings, not {_type_name(value)}")
            return MappingProxyType({})
        for name, text in value.items():
            if not _HEADER_NAME.match(name):
                self.problem(f"{place}.{name}", "not a valid header name")
            elif name.lower() in KEY_HEADERS:
                self.problem(f"{place}.{name}", "the key goes in api_key_env")
            elif not isinstance(text, str):
                self.problem(
                    f"{place}.{name}", f"must be a string, not {_type_name(text)}"
                )
        return MappingProxyType(dict(value))

    def duplicates(self, entries: List[BackendConfig]) -> None:
        """Two entries for one server, or for one remote account, are an error."""
        seen: Dict[Tuple[str, str, str], BackendConfig] = {}
        for entry in entries:
            cls = BACKENDS[entry.kind]
            keys = [("url", _normalised_url(entry.url or cls.default_url))]
            if not cls.native and entry.api_key_env:
                # Two local servers may share a key; a remote key is one account.
                keys.append(("api_key_env", entry.api_key_env))
            for what, value in keys:
                first = seen.setdefault((entry.kind, what, value), entry)
                if first is not entry:
                    self.problem(
                        entry.place,
                        f"duplicate of {first.place}: same kind and {what}",
                    )
                    break

    # -- [pricing] and [limits] -----------------------------------------------

    def pricing(self, value: Any) -> PricingConfig:
        if value is None:
            return PricingConfig()
        table = self.table("pricing", value, PRICING_KEYS)
        if table is None:
            return PricingConfig()
        defaults = self.required("pricing", table, PRICING_KEYS[:2], 1)
        models = {}
        overrides = self.table("pricing.models", table.get("models", {}), None)
        for model_id, price in (overrides or {}).items():
            place = f'pricing.models."{model_id}"'
            entry = self.table(place, price, PRICE_KEYS)
            if entry is not None:
                cost = self.required(place, entry, PRICE_KEYS, 0)
                if cost[0] is not None and cost[1] is not None:
                    models[model_id] = ModelPrice(cost[0], cost[1])
        return PricingConfig(defaults[0], defaults[1], MappingProxyType(models))

    def limits(self, value: Any) -> LimitsConfig:
        if value is None:
            return LimitsConfig()
        table = self.table("limits", value, LIMITS_KEYS)
        if table is None:
            return LimitsConfig()
        cap = self.integer(
            "limits.max_concurrent",
            table.get("max_concurrent", DEFAULT_MAX_CONCURRENT),
            1,
            MAX_CONCURRENT_LIMIT,
        )
        rate = table.get("max_tokens_per_minute")
        if rate is not None:
            rate = self.integer("limits.max_tokens_per_minute", rate, 1)
        return LimitsConfig(cap or DEFAULT_MAX_CONCURRENT, rate)
