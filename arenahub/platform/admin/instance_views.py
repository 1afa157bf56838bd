"""What the admin sees of the platform's instances: ``GET /api/admin/instances`` (the dashboard's
Instances page).

Each instance writes its card (cluster/instances.py) every second; the answer lists the cards of the
live ones, as the instance asked reads them, each with its ``state``:

- ``serving``: its card is fresh and it takes requests;
- ``draining``: it is shutting down (its ``/api/health`` answers 503; its requests in flight finish);
- ``unreachable``: it has written no card for ``STALE_PERIODS`` periods (stopped, paused or cut off
  from Redis). After the directory's ``ttl`` (5 s) its card is dropped, and it is no longer listed.

With one instance (no Redis) the list is this instance alone and ``shared_state`` is ``in_process``.
When Redis does not answer, ``shared_state`` is ``unreachable`` and the list is this instance alone:
the others cannot be known then. This instance is always listed as it is at the moment of the answer.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from arenahub.platform.admin.state import platform_of
from arenahub.platform.cluster.instances import InstanceCard, RedisDirectory

STALE_PERIODS = 2.5  # a card this many periods old was missed twice: its instance does not answer


def _iso(timestamp: float) -> str | None:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).isoformat() if timestamp else None


def instance_view(card: InstanceCard, *, me: str, now: float, stale_after: float) -> dict[str, Any]:
    """One instance as the admin reads it: its card, its state and its ages (from this clock)."""
    seen_ago = max(0.0, now - card.seen_at) if card.seen_at else None
    if card.draining:
        state = "draining"
    elif seen_ago is not None and seen_ago > stale_after:
        state = "unreachable"
    else:
        state = "serving"
    return {"id": card.id, "this": card.id == me, "state": state, "address": card.address, "url": card.url,
            "version": card.version, "clients": card.clients, "in_flight": card.in_flight,
            "draining": card.draining, "started_at": _iso(card.started_at),
            "uptime_seconds": round(now - card.started_at, 3) if card.started_at else None,
            "seen_at": _iso(card.seen_at), "seen_seconds_ago": None if seen_ago is None else round(seen_ago, 3)}


async def instances(request: Request) -> Response:
    platform = platform_of(request)
    directory = platform.cluster.directory
    period = directory.period if isinstance(directory, RedisDirectory) else 1.0
    health = await platform.cluster_health()
    now = time.time()
    # This instance as it is now, rather than its card of up to a second ago (or none: Redis is away).
    mine = platform.instance_card()
    mine.seen_at = now
    cards = [c for c in msgspec.convert(health["instances"], list[InstanceCard]) if c.id != mine.id] + [mine]
    views = [instance_view(c, me=platform.instance_id, now=now, stale_after=STALE_PERIODS * period)
             for c in sorted(cards, key=lambda c: c.id)]
    return JSONResponse({"instance": platform.instance_id, "shared_state": health["shared_state"],
                         "changes": health["changes"], "data": views})
