"""Settings an operator changes while the platform runs (the dashboard's Settings page).

Precedence, lowest first: the defaults, ``ARENAHUB_*`` environment variables, command-line flags,
then the overrides stored in the database (``platform_settings`` row ``runtime_overrides``). An
override applies at once in the process that stored it and within about a second in every other
platform process on the same database (``follow``); it is loaded again at start. Setting one back
to null drops the override: the flag or environment value applies again.

    LIVE                                       # name -> description, the settings that can change
    SettingsPatch                              # a change: {name: value | null}, with each setting's bounds
    live = LiveSettings(base)                  # base: the settings from defaults, env and flags
    live.current -> PlatformSettings           # base with the overrides
    live.view() -> dict                        # values, defaults, overridden, choices, descriptions
    await live.load(engine) -> bool            # read the stored overrides; True when they changed
    await live.change(engine, {name: value})   # validate, store and use; ValueError when invalid
    await follow(engine, live, apply)          # poll for other processes' changes, call apply()
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from typing import Annotated, Any, Literal

import msgspec
from sqlalchemy.ext.asyncio import AsyncEngine

from arenahub.platform.cluster.changes import ChangeFeed, pause
from arenahub.platform.routing import STRATEGIES
from arenahub.platform.settings import ABOVE_ZERO, BOUNDS, PlatformSettings
from arenahub.platform.storage.db import DATABASE_ERRORS
from arenahub.platform.storage.settings_store import get_setting, put_setting

log = logging.getLogger("arenahub.platform.settings")

ROW = "runtime_overrides"
AUTO = ""  # routing_strategy: what most connected clients prefer, else least_load

LIVE: dict[str, str] = {
    "routing_strategy": "How a client is chosen for a request: " + ", ".join(STRATEGIES) + "; empty: what most "
                        "connected clients prefer, else least_load.",
    "queue_size": "Requests that may wait when every eligible client is busy (0: refuse at once with a 503).",
    "queue_timeout_seconds": "Longest wait in that queue before a 503 with Retry-After (0: no queue).",
    "first_byte_timeout_seconds": "Time a client may take to start a streamed answer before the request is "
                                  "retried on another client.",
    "idle_timeout_seconds": "Longest silence between two chunks of an answer.",
    "total_timeout_seconds": "Longest a whole answer may take, retries included.",
    "max_attempts": "Clients tried for one request, before its first byte.",
    "record_retention_days": "Raw request records (and stored prompts) older than this many days are deleted; "
                             "the aggregates stay (0: keep forever).",
    "store_prompts": "Keep each request's prompt and answer for the request log. Off: they are never stored.",
    "sticky_routing": "Send a conversation's follow-ups to the client that served it, while it can take it.",
    "model_catalogue": "Serve only the models listed in the model catalogue, each by the clients allowed to serve "
                       "it; what else a client offers waits for approval. Off: every model a client offers is "
                       "served.",
}

# The bounds of each setting are the start-up bounds of its flag and ARENAHUB_* variable (settings.BOUNDS),
# so a value is taken or refused alike whichever way it is set: the API checks a change with them and shows
# them in its OpenAPI document, and a stored override outside them is ignored at load.
def _range(name: str, unit: str, note: str = "") -> msgspec.Meta:
    low, high = BOUNDS[name]
    above = name in ABOVE_ZERO
    words = f"{unit}, " + (f"above {low:g}, up to {high:g}" if above else f"{low:g} to {high:g}") + note
    return msgspec.Meta(gt=low, le=high, description=words) if above else msgspec.Meta(ge=low, le=high,
                                                                                       description=words)


Timeout = Annotated[float, _range("total_timeout_seconds", "seconds")]
QueueSize = Annotated[int, _range("queue_size", "requests", " (0: no queue)")]
QueueTimeout = Annotated[float, _range("queue_timeout_seconds", "seconds", " (0: no queue)")]
Attempts = Annotated[int, _range("max_attempts", "clients")]
RetentionDays = Annotated[int, _range("record_retention_days", "days", " (0: keep forever)")]


class SettingsPatch(msgspec.Struct, forbid_unknown_fields=True):
    """Only the settings sent change; null drops an override (the flag or environment value applies)."""

    routing_strategy: Literal[("", *STRATEGIES)] | None | msgspec.UnsetType = msgspec.UNSET  # type: ignore[valid-type]
    queue_size: QueueSize | None | msgspec.UnsetType = msgspec.UNSET
    queue_timeout_seconds: QueueTimeout | None | msgspec.UnsetType = msgspec.UNSET
    first_byte_timeout_seconds: Timeout | None | msgspec.UnsetType = msgspec.UNSET
    idle_timeout_seconds: Timeout | None | msgspec.UnsetType = msgspec.UNSET
    total_timeout_seconds: Timeout | None | msgspec.UnsetType = msgspec.UNSET
    max_attempts: Attempts | None | msgspec.UnsetType = msgspec.UNSET
    record_retention_days: RetentionDays | None | msgspec.UnsetType = msgspec.UNSET
    store_prompts: bool | None | msgspec.UnsetType = msgspec.UNSET
    sticky_routing: bool | None | msgspec.UnsetType = msgspec.UNSET
    model_catalogue: bool | None | msgspec.UnsetType = msgspec.UNSET

    def changes(self) -> dict[str, Any]:
        return {name: value for name in self.__struct_fields__ if (value := getattr(self, name)) is not msgspec.UNSET}


def _valid(stored: Any) -> dict[str, Any]:
    """The stored overrides that are still valid (a value another version wrote may not be)."""
    out: dict[str, Any] = {}
    if not isinstance(stored, dict):
        return out
    for name, value in stored.items():
        try:
            patch = msgspec.convert({name: value}, SettingsPatch)
        except msgspec.ValidationError as exc:
            log.warning("ignoring the stored setting %s: %s", name, exc)
            continue
        value = getattr(patch, name)
        if value is not None:
            out[name] = value
    return out


class LiveSettings:
    def __init__(self, base: PlatformSettings) -> None:
        self.base = base
        self.overrides: dict[str, Any] = {}
        self.current = base
        # A poll that read the row before a change was stored must not undo the change: one at a time.
        self._lock = asyncio.Lock()

    def _use(self, overrides: dict[str, Any]) -> bool:
        current = dataclasses.replace(self.base, **overrides)  # PlatformSettings' own checks: ValueError
        changed = overrides != self.overrides
        self.overrides, self.current = overrides, current
        return changed

    def view(self) -> dict[str, Any]:
        return {"values": {name: getattr(self.current, name) for name in LIVE},
                "defaults": {name: getattr(self.base, name) for name in LIVE},
                "overridden": sorted(self.overrides),
                "choices": {"routing_strategy": [AUTO, *STRATEGIES]},
                "descriptions": dict(LIVE)}

    async def load(self, engine: AsyncEngine) -> bool:
        """Read the stored overrides; True when they differ from the ones in use."""
        async with self._lock:
            overrides = _valid(await get_setting(engine, ROW))
            if overrides == self.overrides:
                return False
            try:
                return self._use(overrides)
            except ValueError as exc:
                log.warning("ignoring the stored settings %s: %s", overrides, exc)
                return False

    async def change(self, engine: AsyncEngine, changes: dict[str, Any]) -> None:
        """Merge ``changes`` (None drops an override) into the stored overrides, store and use them.
        Raises ValueError (nothing stored) when the result is not valid settings."""
        async with self._lock:
            overrides = _valid(await get_setting(engine, ROW))  # another process may have changed others
            for name, value in changes.items():
                if value is None:
                    overrides.pop(name, None)
                else:
                    overrides[name] = value
            dataclasses.replace(self.base, **overrides)  # check before storing
            await put_setting(engine, ROW, overrides)
            self._use(overrides)


async def follow(engine: AsyncEngine, live: LiveSettings, apply: Callable[[PlatformSettings], None],
                 period: float = 1.0, feed: ChangeFeed | None = None) -> None:
    """Every ``period`` seconds, or when the feed hears a settings change, read the stored overrides (one
    small row) and apply another process's change."""
    while True:
        await pause(feed, ["settings"], period)
        try:
            changed = await live.load(engine)
        except DATABASE_ERRORS as exc:  # the database is away: keep the settings in use, try again
            log.warning("reading the live settings failed: %s", exc)
            continue
        if changed:
            log.info("settings changed by another platform process: %s", live.overrides)
            apply(live.current)
