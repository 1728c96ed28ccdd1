"""Checks on a backend's configuration: its URL, its key and its extra headers.

Each refuses, at construction, what would otherwise fail later in the middle of a
request (or, for a key, leak into an error message): ``ValueError`` says what is
wrong without quoting the key.
"""

from __future__ import annotations

from typing import Dict, Mapping, Optional
from urllib.parse import urlsplit

from ._secret import Secret


def checked_key(api_key: Optional[str]) -> Optional[Secret]:
    """The key, stripped, or None; ValueError (which never quotes it) when it
    cannot travel in an HTTP header."""
    if api_key is None:
        return None
    if not isinstance(api_key, str):
        raise TypeError("api_key must be a string")
    key = api_key.strip()
    if not key:
        return None
    if not key.isprintable() or not key.isascii():
        raise ValueError("the API key holds characters an HTTP header cannot carry")
    return Secret(key)


def checked_headers(headers: Mapping[str, str]) -> Dict[str, str]:
    for name, value in headers.items():
        text = f"{name}{value}"
        if not text.isprintable() or not text.isascii():
            raise ValueError(f"header {name!r} holds characters HTTP cannot carry")
    return dict(headers)


def normalise_url(url: str) -> str:
    parts = urlsplit(url)
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or any(c.isspace() for c in url)
    ):
        raise ValueError(f"not an http(s) URL: {url!r}")
    if parts.username or parts.password:
        raise ValueError("put credentials in api_key, not in the URL")
    try:
        parts.port  # noqa: B018 - parsed here: out of range or not a number
    except ValueError:
        raise ValueError(f"not a valid port in {url!r}") from None
    return url.rstrip("/")


def local_base(url: str) -> str:
    """A local engine's base URL without the ``/v1`` an OpenAI client's base URL
    ends in: the backend's routes carry it (``/v1/chat/completions``), and kept it
    would make every job a 404 while ``/health`` still answered."""
    return url[: -len("/v1")] if url.endswith("/v1") else url
