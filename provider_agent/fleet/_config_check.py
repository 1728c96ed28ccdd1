"""Checking a parsed ``agent.toml``: every table, key and value, with every problem
collected before one ``ConfigError`` is raised. ``config.Config.from_toml`` runs it.
"""

from __future__ import annotations

import math
import re
from types import MappingProxyType
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple
from urllib.parse import urlsplit

from ..backend import BACKENDS
from .config import (
    BACKEND_KEYS,
    DEFAULT_MAX_CONCURRENT,
    KEY_HEADERS,
    KEYLESS_KINDS,
    LIMITS_KEYS,
    MAX_CONCURRENT_LIMIT,
    OPTION_KEYS,
    PRICE_KEYS,
    PRICING_KEYS,
    READ_SECTIONS,
    TIMEOUT_OPTIONS,
    BackendConfig,
    Config,
    ConfigError,
    LimitsConfig,
    ModelPrice,
    PricingConfig,
)

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")
_DEFAULT_PORTS = {"http": 80, "https": 443}


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


class Checker:
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
            try:
                url = cls.base_url(entry.url)  # the URL the backend keeps
            except ValueError:
                continue  # reported as the entry's own problem
            keys = [("url", _normalised_url(url))]
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
