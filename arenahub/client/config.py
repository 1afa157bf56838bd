"""The client's settings, read from config.jsonc (sections ``platform_integration`` and
``platform_features``, as in the seed)."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from arenahub import jsonc
from arenahub.jsonc import ConfigError

DEFAULT_BRIDGE_URL = "http://127.0.0.1:5102"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# What a client may ask the platform to route by (sent in Hello; the platform decides).
ROUTING_STRATEGIES = ("least_load", "round_robin", "random", "fastest", "priority")
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class ClientConfig:
    path: Path
    enabled: bool
    platform_url: str
    client_id: str
    api_key: str = field(repr=False)
    heartbeat_interval_seconds: float = 30.0
    capabilities: tuple[str, ...] = ("chat", "models", "images")
    log_level: str = "INFO"
    enable_request_logging: bool = False
    enable_performance_monitoring: bool = True
    reconnect_max_delay_seconds: float = 30.0
    lmarena_bridge_url: str = DEFAULT_BRIDGE_URL
    bridge_api_key: str | None = field(default=None, repr=False)
    max_concurrent_requests: int = 4
    enable_request_validation: bool = True
    allowed_origins: tuple[str, ...] = ()
    preferred_routing_strategy: str | None = None
    # Keys of platform_integration and platform_features that nothing reads (typos), as warnings to log.
    warnings: tuple[str, ...] = field(default=(), compare=False)
    # Every platform URL when ``platform_url`` is a list (the instances of a cluster without a load
    # balancer): the client connects to one and moves to the next when it is lost. Empty: just platform_url.
    platform_urls: tuple[str, ...] = ()

    @property
    def urls(self) -> tuple[str, ...]:
        return self.platform_urls or (self.platform_url,)

    @property
    def tunnel_url(self) -> str:
        return tunnel_url(self.platform_url)

    def public(self) -> dict[str, Any]:
        """The configuration without its secrets, for status pages."""
        return {
            "config_file": str(self.path), "enabled": self.enabled, "platform_url": self.platform_url,
            "platform_urls": list(self.urls),
            "client_id": self.client_id, "api_key_set": bool(self.api_key),
            "heartbeat_interval_seconds": self.heartbeat_interval_seconds,
            "capabilities": list(self.capabilities), "log_level": self.log_level,
            "enable_request_logging": self.enable_request_logging,
            "enable_performance_monitoring": self.enable_performance_monitoring,
            "reconnect_max_delay_seconds": self.reconnect_max_delay_seconds,
            "lmarena_bridge_url": self.lmarena_bridge_url,
            "bridge_api_key_set": bool(self.bridge_api_key),
            "max_concurrent_requests": self.max_concurrent_requests,
            "enable_request_validation": self.enable_request_validation,
            "allowed_origins": list(self.allowed_origins),
            "preferred_routing_strategy": self.preferred_routing_strategy,
        }


def tunnel_url(platform_url: str) -> str:
    """The WebSocket URL of the tunnel under a platform URL (``.../api`` -> ``ws://.../api/ws``)."""
    base = platform_url.rstrip("/")
    scheme, rest = base.split("://", 1)
    return {"http": "ws", "https": "wss"}.get(scheme, scheme) + "://" + rest + "/ws"


MAX_PLATFORM_URLS = 16


class _Reader:
    """Typed access to one section, raising ConfigError that names file, line and key."""

    def __init__(self, path: Path, text: str, data: dict[str, Any], prefix: str) -> None:
        self.path, self.text, self.data, self.prefix = path, text, data, prefix
        self.known: set[str] = set()  # the keys read (or known) so far

    def unknown_keys(self) -> list[str]:
        """A warning for each key of the section that nothing reads: a typo, most likely."""
        warnings = []
        for key in self.data:
            if key in self.known:
                continue
            near = difflib.get_close_matches(key, sorted(self.known), n=1, cutoff=0.6)
            hint = f' (did you mean "{near[0]}"?)' if near else ""
            line = jsonc.line_of(self.text, key)
            where = f"{self.path}, line {line}" if line else str(self.path)
            warnings.append(f"{where}: {self.prefix}{key} is not a key arenahub knows{hint}; it is ignored")
        return warnings

    def fail(self, key: str, reason: str) -> ConfigError:
        # "allowed_origins[2]" points at the line of "allowed_origins".
        line = jsonc.line_of(self.text, key.split("[", 1)[0])
        return ConfigError(self.path, reason, key=self.prefix + key, line=line)

    def get(self, key: str, kind: type | tuple[type, ...], default: Any, *, required: bool = False) -> Any:
        self.known.add(key)
        if key not in self.data or self.data[key] is None:
            if required:
                raise self.fail(key, "is required")
            return default
        value = self.data[key]
        if kind in (int, float, (int, float)) and isinstance(value, bool):
            raise self.fail(key, f"must be a number, got {value!r}")
        if not isinstance(value, kind):
            names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            raise self.fail(key, f"must be {names}, got {type(value).__name__} {value!r}")
        return value


def _check_url(reader: _Reader, key: str, value: str, schemes: tuple[str, ...]) -> str:
    parts = urlsplit(value)
    if parts.scheme not in schemes or not parts.netloc:
        raise reader.fail(key, f"must be a {'/'.join(schemes)} URL, got {value!r}")
    return value.rstrip("/")


def normalize_origin(value: str) -> str:
    """An ``allowed_origins`` entry as browsers send it in ``Origin`` (lower case, no default port,
    no trailing slash), so that it matches exactly; ValueError says what is wrong with it."""
    if value == "*":
        return value
    parts = urlsplit(value.strip())
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"has an invalid port: {value!r}") from None
    if (not parts.scheme or not parts.hostname or parts.path not in ("", "/") or parts.query or parts.fragment
            or parts.username is not None or "://" not in value):
        raise ValueError(f'must be "*" or scheme://host[:port] with no path, got {value!r}')
    if "*" in parts.hostname:
        raise ValueError(f'cannot hold a wildcard host, got {value!r}: list each origin, or use "*" for any')
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    scheme = parts.scheme.lower()
    suffix = "" if port is None or port == _DEFAULT_PORTS.get(scheme) else f":{port}"
    return f"{scheme}://{host}{suffix}"


def read_allowed_origins(value: Any) -> tuple[tuple[str, ...], tuple[int, str] | None]:
    """``platform_features.allowed_origins`` normalized, or the index and reason of the first bad entry
    (index -1: not a list). Shared with the bridge, which reads the same key from the same file."""
    if not isinstance(value, list):
        return (), (-1, f'must be a list of origins like ["https://your-platform-domain.com"], got {value!r}')
    origins = []
    for i, item in enumerate(value):
        if not isinstance(item, str):
            return (), (i, f"must be a string, got {type(item).__name__} {item!r}")
        try:
            origins.append(normalize_origin(item))
        except ValueError as exc:
            return (), (i, str(exc))
    return tuple(dict.fromkeys(origins)), None


def load_client_config(path: Path | str) -> ClientConfig:
    path = Path(path)
    data = jsonc.load(path)
    text = path.read_text(encoding="utf-8-sig")
    if not isinstance(data, dict):
        raise ConfigError(path, "the file must hold a JSON object")
    top = _Reader(path, text, data, "")
    section = top.get("platform_integration", dict, None, required=True)
    pi = _Reader(path, text, section, "platform_integration.")
    features = _Reader(path, text, top.get("platform_features", dict, {}), "platform_features.")

    enabled = pi.get("enabled", bool, True)
    raw_url = pi.get("platform_url", (str, list), "", required=enabled)
    platform_urls: tuple[str, ...] = ()
    if isinstance(raw_url, list):
        if not raw_url or len(raw_url) > MAX_PLATFORM_URLS:
            raise pi.fail("platform_url", f"must list 1 to {MAX_PLATFORM_URLS} URLs (the platform's instances), "
                                          f"got {len(raw_url)}")
        urls = []
        for item in raw_url:
            if not isinstance(item, str):
                raise pi.fail("platform_url", f"must list URLs as strings, got {type(item).__name__} {item!r}")
            urls.append(_check_url(pi, "platform_url", item, ("http", "https")))
        platform_urls = tuple(dict.fromkeys(urls))
        platform_url = platform_urls[0]
    else:
        platform_url = _check_url(pi, "platform_url", raw_url, ("http", "https")) if raw_url else ""
    client_id = pi.get("client_id", str, "", required=enabled)
    api_key = pi.get("api_key", str, "", required=enabled)
    if enabled and (not client_id.strip() or client_id.startswith("your-")):
        raise pi.fail("client_id", "is not filled in: copy it from the dashboard or the client package")
    if enabled and (not api_key.strip() or api_key.startswith("your-")):
        raise pi.fail("api_key", "is not filled in: copy it from the dashboard or the client package")
    interval = pi.get("heartbeat_interval_seconds", (int, float), 30.0)
    if not 0.2 <= interval <= 3600:
        raise pi.fail("heartbeat_interval_seconds", f"must be between 0.2 and 3600 seconds, got {interval}")
    capabilities = pi.get("capabilities", list, ["chat", "models", "images"])
    if not all(isinstance(c, str) for c in capabilities):
        raise pi.fail("capabilities", "must be a list of strings")
    log_level = pi.get("log_level", str, "INFO").upper()
    if log_level not in LOG_LEVELS:
        raise pi.fail("log_level", f"must be one of {', '.join(LOG_LEVELS)}, got {log_level!r}")
    max_delay = pi.get("reconnect_max_delay_seconds", (int, float), 30.0)
    if not 0.1 <= max_delay <= 3600:
        raise pi.fail("reconnect_max_delay_seconds", f"must be between 0.1 and 3600, got {max_delay}")

    pi.known.add("lmarena_bridge_url")  # read when the top level has none
    bridge_url = top.get("lmarena_bridge_url", str, None)
    if bridge_url is None:
        bridge_url = pi.get("lmarena_bridge_url", str, DEFAULT_BRIDGE_URL)
    bridge_url = _check_url(top, "lmarena_bridge_url", bridge_url, ("http", "https"))
    bridge_key = top.get("api_key", str, None) or None
    max_concurrent = features.get("max_concurrent_requests", int, 4)
    if not 1 <= max_concurrent <= 10_000:
        raise features.fail("max_concurrent_requests", f"must be between 1 and 10000, got {max_concurrent}")
    origins, problem = read_allowed_origins(features.get("allowed_origins", object, []))
    if problem is not None:
        index, reason = problem
        raise features.fail("allowed_origins" + (f"[{index}]" if index >= 0 else ""), reason)
    strategy = features.get("preferred_routing_strategy", str, None)
    if strategy is not None:
        strategy = strategy.strip().lower()
        if strategy not in ROUTING_STRATEGIES:
            raise features.fail("preferred_routing_strategy",
                                f"must be one of {', '.join(ROUTING_STRATEGIES)}, got {strategy!r}")

    enable_request_logging = pi.get("enable_request_logging", bool, False)
    enable_performance_monitoring = pi.get("enable_performance_monitoring", bool, True)
    enable_request_validation = features.get("enable_request_validation", bool, True)
    return ClientConfig(
        warnings=tuple(pi.unknown_keys() + features.unknown_keys()),
        path=path, enabled=enabled, platform_url=platform_url, platform_urls=platform_urls, client_id=client_id,
        api_key=api_key,
        heartbeat_interval_seconds=float(interval), capabilities=tuple(capabilities), log_level=log_level,
        enable_request_logging=enable_request_logging, enable_performance_monitoring=enable_performance_monitoring,
        reconnect_max_delay_seconds=float(max_delay), lmarena_bridge_url=bridge_url,
        bridge_api_key=bridge_key, max_concurrent_requests=max_concurrent,
        enable_request_validation=enable_request_validation,
        allowed_origins=origins, preferred_routing_strategy=strategy)


def load_client_config_or_disabled(path: Path | str) -> ClientConfig:
    """As ``load_client_config``, but a file without a platform_integration section (an LMArenaBridge
    config never set up for a platform) gives a disabled integration rather than an error."""
    try:
        return load_client_config(path)
    except ConfigError as exc:
        if exc.key != "platform_integration" or exc.reason != "is required":
            raise
        return disabled_client_config(Path(path))


def disabled_client_config(path: Path) -> ClientConfig:
    """For a config.jsonc without a platform_integration section: the integration is off."""
    return ClientConfig(path=path, enabled=False, platform_url="", client_id="", api_key="")
