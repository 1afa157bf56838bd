"""What one client's package is filled in with, checked before any file is written."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

DEFAULT_BRIDGE_URL = "http://127.0.0.1:5102"
# "images" is always offered: the client declares it only while its bridge serves an image model
# (client/capabilities.py), which the platform cannot know when it makes the package.
DEFAULT_CAPABILITIES = ("chat", "models", "images")
# Values land in sh single quotes and JSONC strings: no quotes, spaces, backslashes or shell specials.
_URL_SAFE = re.compile(r"^[A-Za-z0-9._~:/?#\[\]@!&()*+,;=%-]+$")
_CLIENT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class ClientPackageError(Exception):
    """The package cannot be made: a bad input, or no installed arenahub to make the wheel from."""


def package_filename(client_id: str) -> str:
    return f"lmarena-client-{_checked_client_id(client_id)}.zip"


@dataclass(frozen=True)
class PackageInputs:
    platform_url: str
    client_id: str
    api_key: str
    name: str
    bridge_url: str
    bridge_port: int
    heartbeat_interval_seconds: float
    capabilities: tuple[str, ...]
    max_concurrent_requests: int
    made_at: dt.datetime

    @property
    def made_at_text(self) -> str:
        return self.made_at.strftime("%Y-%m-%d %H:%M UTC")

    @property
    def userscript_url(self) -> str:
        parts = urlsplit(self.bridge_url)
        return f"{'wss' if parts.scheme == 'https' else 'ws'}://{parts.netloc}/ws"


def package_inputs(*, platform_url: str, client_id: str, api_key: str, client_name: str, bridge_url: str,
                   heartbeat_interval_seconds: float, capabilities: Sequence[str], max_concurrent_requests: int,
                   made_at: dt.datetime | None) -> PackageInputs:
    """The checked values; raises ClientPackageError naming the first bad one."""
    if not api_key or not api_key.isprintable() or '"' in api_key or "\\" in api_key:
        raise ClientPackageError("api_key must be the client's key (printable, without quotes)")
    if not 0.2 <= heartbeat_interval_seconds <= 3600:
        raise ClientPackageError(f"heartbeat_interval_seconds must be between 0.2 and 3600, got "
                                 f"{heartbeat_interval_seconds}")
    if not 1 <= max_concurrent_requests <= 10_000:
        raise ClientPackageError(f"max_concurrent_requests must be between 1 and 10000, got {max_concurrent_requests}")
    caps = tuple(c.strip() for c in capabilities if c.strip())
    if not caps or not all(re.fullmatch(r"[A-Za-z0-9_.-]{1,40}", c) for c in caps):
        raise ClientPackageError(f"capabilities must be short names like 'chat', got {list(capabilities)!r}")
    bridge_url = _checked_url("bridge_url", bridge_url)
    parts = urlsplit(bridge_url)
    return PackageInputs(_checked_url("platform_url", platform_url), _checked_client_id(client_id), api_key,
                         _one_line(client_name) or client_id, bridge_url,
                         parts.port or (443 if parts.scheme == "https" else 80), float(heartbeat_interval_seconds),
                         caps, max_concurrent_requests, (made_at or dt.datetime.now(dt.UTC)).astimezone(dt.UTC))


def _checked_client_id(client_id: str) -> str:
    if not _CLIENT_ID.match(client_id):
        raise ClientPackageError(f"client_id must be 1-64 letters, digits, '_' or '-', got {client_id!r}")
    return client_id


def _checked_url(what: str, value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or not _URL_SAFE.match(value):
        raise ClientPackageError(f"{what} must be an http:// or https:// URL without spaces or quotes, got {value!r}")
    try:
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise ClientPackageError(f"{what} has a bad port: {value!r}") from None
    return value.rstrip("/")


def _one_line(text: str, limit: int = 120) -> str:
    """Free text (a client's name) made safe for a comment line."""
    return re.sub(r"[\x00-\x1f\x7f]+", " ", text).strip()[:limit]
