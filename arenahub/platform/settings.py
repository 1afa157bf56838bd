"""Platform settings: command-line flags, mirrored by ``ARENAHUB_*`` environment variables."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

from arenahub.platform.storage.db import database_key, default_data_dir, normalize_url


@dataclass(frozen=True)
class PlatformSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    database_url: str = ""
    data_dir: Path = field(default_factory=default_data_dir)
    # Largest consumer request body accepted (attachments ride in it).
    max_body_bytes: int = 8 * 1024 * 1024
    # How long a client may take to send the first chunk, and to send each next one.
    first_byte_timeout_seconds: float = 120.0
    idle_timeout_seconds: float = 120.0
    total_timeout_seconds: float = 900.0
    # Flow control: bytes of an answer a client may send ahead of its consumer (per request), and how
    # long in all a consumer may hold its client back by reading slowly before it is cut (408,
    # consumer_too_slow).
    answer_window_bytes: int = 256 * 1024
    # The longest answer relayed, in tokens the platform counts (whatever max_tokens asks): longer ones
    # end with finish_reason "length". A client is a stranger; no model answers more than this.
    max_answer_tokens: int = 262_144
    slow_consumer_seconds: float = 60.0
    # The operator's model catalogue (see the README): on, a client serves only the listed models it
    # is allowed to, and its other models wait for approval; off, every model a client offers is served.
    model_catalogue: bool = False
    # Wrong credentials (admin token, client key, consumer key) one address may offer in a minute before
    # it is answered 429 too_many_failed_credentials until the minute has room again; 0: no throttle.
    credential_failures_per_minute: int = 30
    # A failed attempt before the first byte is retried on another client, this many times in all.
    max_attempts: int = 3
    # A client is dropped after this many heartbeat intervals without one.
    missed_heartbeats: int = 3
    # Request records are written in batches this often (seconds) or when this many wait.
    record_flush_seconds: float = 0.5
    record_batch_size: int = 1000
    # Raw request records older than this many days are deleted (their per-minute aggregates stay); 0: never.
    record_retention_days: int = 30
    # The write-ahead journal of the books (journal.py): its folder (empty: "journal" in data_dir; a
    # subfolder per database), and whether each write is fsynced (off: it survives a crash of the
    # platform, not of the machine).
    journal_dir: str = ""
    journal_fsync: bool = True
    # Clean shutdown: how long streams in flight may take to finish. In a cluster, for the first
    # shutdown_notice_seconds of it (at most the grace) the instance answers 503 to health checks but still
    # serves the requests that reach it (a load balancer needs a check or two to notice).
    shutdown_grace_seconds: float = 10.0
    shutdown_notice_seconds: float = 2.0
    # Routing: one of routing.STRATEGIES; empty: what most connected clients prefer, else least_load.
    routing_strategy: str = ""
    # When every eligible client is busy, a request waits this long in a queue of at most this many.
    queue_size: int = 100
    queue_timeout_seconds: float = 30.0
    # Send a conversation's follow-ups to the client that served it, while it can take them.
    sticky_routing: bool = False
    # Keep each request's prompt and answer (request_contents) for the request log; off: never stored.
    store_prompts: bool = False
    # Circuit breaker: over a client's last breaker_window requests (at least breaker_min_requests),
    # a failed share of breaker_failure_ratio takes it out for breaker_cooldown_seconds (doubling
    # with each trip in the hour), then one probe request decides.
    breaker_window: int = 10
    breaker_min_requests: int = 4
    breaker_failure_ratio: float = 0.5
    breaker_cooldown_seconds: float = 30.0
    # A client that drops this many requests in an hour goes into maintenance (0: never).
    maintenance_drops_per_hour: int = 50
    # What one peer may hold of the HTTP server (arenahub.connections.ServerLimits): a request's headers must
    # arrive within header_timeout_seconds; its body may pause at most body_timeout_seconds and must keep
    # up body_min_bytes_per_second after that much (0: no floor), else 408; open connections per client
    # address (IPv6: per /64; a trusted proxy's are not counted; 0: no cap) and in all (0: from the open-file limit).
    header_timeout_seconds: float = 10.0
    body_timeout_seconds: float = 30.0
    body_min_bytes_per_second: int = 1024
    max_connections_per_address: int = 64
    max_connections: int = 0
    log_level: str = "info"
    # Several instances as one platform (cluster/): the Redis that holds their shared live state (limits,
    # credit, connected clients, changes); empty: one instance, everything in this process. A cluster's
    # books must be in one PostgreSQL database.
    redis_url: str = field(default="", repr=False)
    # This instance's name in logs, /api/health, metrics and the dashboard; empty: host-pid-xxxx.
    instance_id: str = ""
    # Where the other instances reach this one (its requests for clients connected here); empty:
    # http://HOST:PORT (the host name when it listens on every address).
    advertise_url: str = ""
    # Sets the admin API's token (for automated deployments); empty: one is generated on first start.
    admin_token: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        from arenahub.platform.routing import STRATEGIES
        if self.routing_strategy and self.routing_strategy not in STRATEGIES:
            raise ValueError(f"routing_strategy {self.routing_strategy!r} is not one of {', '.join(STRATEGIES)}")
        if self.log_level.lower() not in LOG_LEVELS:
            raise ValueError(f"log_level {self.log_level!r} is not one of {', '.join(LOG_LEVELS)}")
        if not 0 < self.breaker_failure_ratio <= 1:  # (a NaN fails every comparison, so it is refused too)
            raise ValueError(f"breaker_failure_ratio must be above 0 and at most 1, got {self.breaker_failure_ratio}")
        if self.redis_url:
            scheme = self.redis_url.split("://", 1)[0].lower()
            if scheme not in ("redis", "rediss", "unix"):
                raise ValueError("redis_url must look like redis://HOST:PORT/DB (or rediss://, unix://), "
                                 f"not a {scheme or 'bare'} URL")
            if self.resolved_database_url.startswith("sqlite"):
                raise ValueError("redis_url joins a cluster of platform instances, whose books must be in one "
                                 "shared database: give a PostgreSQL --database-url (postgresql+asyncpg://...) "
                                 "too; SQLite is for a platform that runs as one instance")
        if self.advertise_url and self.advertise_url.split("://", 1)[0] not in ("http", "https"):
            raise ValueError(f"advertise_url must be an http:// or https:// URL, not {self.advertise_url!r}")
        if len(self.instance_id) > 64 or not all(c.isalnum() or c in "-_." for c in self.instance_id):
            raise ValueError("instance_id must be at most 64 letters, digits, '-', '_' or '.'")
        for name, (low, high) in BOUNDS.items():
            value = getattr(self, name)
            if not low <= value <= high or (name in ABOVE_ZERO and not value > 0):
                lowest = f"above {low:g}" if name in ABOVE_ZERO else f"from {low:g}"
                raise ValueError(f"{name} must be {lowest} to {high:g}, got {value}")

    @property
    def resolved_advertise_url(self) -> str:
        if self.advertise_url:
            return self.advertise_url.rstrip("/")
        import socket
        host = socket.gethostname() if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{'[' + host + ']' if ':' in host else host}:{self.port}"

    @property
    def resolved_journal_dir(self) -> Path:
        """The journal's folder: a subfolder per database, so a journal is only replayed into its own."""
        base = Path(self.journal_dir) if self.journal_dir else self.data_dir / "journal"
        return base / database_key(self.resolved_database_url)

    @property
    def resolved_database_url(self) -> str:
        return normalize_url(self.database_url or None)

    @classmethod
    def from_env(cls, **overrides: object) -> PlatformSettings:
        """Defaults, then ``ARENAHUB_<FIELD>`` variables, then explicit overrides (flags)."""
        values: dict[str, object] = {}
        for f in dataclasses.fields(cls):
            raw = os.environ.get("ARENAHUB_" + f.name.upper())
            if raw is not None and raw != "":
                values[f.name] = _convert(f.name, f.type, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls(**values)  # type: ignore[arg-type]
        except ValueError as exc:  # name the variable the operator set
            named = next((n for n in sorted(values) if str(exc).startswith(n + " ")), None)
            if named is None:
                raise
            given = overrides.get(named)
            # A flag's default read from the variable (arenahub.cli.FromEnvironment) names the variable.
            variable = getattr(given, "variable", "") or f"ARENAHUB_{named.upper()}"
            where = "--" + named.replace("_", "-") if given is not None and not getattr(given, "variable", "") \
                else variable
            raise ValueError(f"{where}: {exc}") from None


LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
# The range of each number (flags and ARENAHUB_* variables): a value outside stops the start with one line.
BOUNDS: dict[str, tuple[float, float]] = {
    "port": (0, 65535), "max_body_bytes": (1024, 1 << 30),
    # The live settings (live_settings.py) take their bounds from here too.
    "first_byte_timeout_seconds": (0.01, 3600), "idle_timeout_seconds": (0.01, 3600),
    "total_timeout_seconds": (0.01, 3600), "header_timeout_seconds": (0.01, 3600), "body_timeout_seconds": (0.01, 3600),
    "answer_window_bytes": (4096, 64 * 1024 * 1024), "max_answer_tokens": (1, 10_000_000),
    "slow_consumer_seconds": (1, 86_400), "credential_failures_per_minute": (0, 1_000_000),
    "max_attempts": (1, 10), "missed_heartbeats": (1, 100),
    "record_flush_seconds": (0, 86_400), "record_batch_size": (1, 100_000), "record_retention_days": (0, 3650),
    "shutdown_grace_seconds": (0, 3600), "shutdown_notice_seconds": (0, 600), "queue_size": (0, 100_000),
    "queue_timeout_seconds": (0, 3600),
    "breaker_window": (1, 1_000_000), "breaker_min_requests": (0, 1_000_000), "breaker_cooldown_seconds": (0, 86_400),
    "maintenance_drops_per_hour": (0, 1_000_000), "body_min_bytes_per_second": (0, 1 << 30),
    "max_connections_per_address": (0, 1_000_000), "max_connections": (0, 10_000_000),
}
ABOVE_ZERO = {"record_flush_seconds"}


def _convert(name: str, type_name: object, raw: str) -> object:
    kind = str(type_name)
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "Path":
            return Path(raw)
        if kind == "bool":
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
    except ValueError:
        raise ValueError(f"ARENAHUB_{name.upper()}={raw!r} is not a valid {kind}") from None
    return raw
