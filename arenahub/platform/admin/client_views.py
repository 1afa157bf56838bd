"""What the admin sees of clients: the client views of ``GET /api/admin/clients[/{id}]``, the
platform's ``GET /api/admin/status``, and ``DELETE /api/admin/clients/{id}``.

A client view is the stored row (never its key hash) plus:

- ``version`` (what the client reported last: heartbeat, else hello), ``current_version`` (what
  the client package ships, see ``client_versions``) and ``outdated`` (false when unknown);
- ``last_refusal``: ``{code, message, at}`` or null, the last time the platform refused or closed
  this client's connection (``refusals``), the later of this process's and the stored one;
- ``connected``, ``healthy``, ``live`` (the session snapshot, null when not connected here) and
  ``health`` (circuit breaker, maintenance, speed);
- ``stats_1h``: ``{requests, success_rate, p50_ms}`` from the aggregates of the last hour;
- ``conflict``: the message, while a second instance with this client id stands by (refused
  ``client_id_in_use`` within ``CONFLICT_SECONDS``), else null.

The list costs two queries whatever the number of clients (the rows, and the last hour's
``analytics.answered_by_client``); the rest is read from memory.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import TYPE_CHECKING, Any

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

import arenahub
from arenahub.platform.admin.state import platform_of
from arenahub.platform.client_versions import current_client_version, is_outdated
from arenahub.platform.health import Breaker, ClientHealth
from arenahub.platform.refusals import STORED_KEY, Refusal, latest
from arenahub.platform.storage import accounts, analytics
from arenahub.protocol.errors import NotFound

if TYPE_CHECKING:
    from arenahub.platform.runtime import Platform
    from arenahub.platform.tunnel_session import ClientSession

STATS_WINDOW = dt.timedelta(hours=1)
# A copy standing by (refused ``client_id_in_use``) asks again within reconnect_max_delay_seconds (30 s by
# default): a conflict is shown while its last refusal is this recent.
CONFLICT_SECONDS = 90.0
CLOSE_WAIT_SECONDS = 5.0  # how long DELETE waits for the client to be told and disconnected


def stored_view(row: dict[str, Any], refusal: Refusal | None = None) -> dict[str, Any]:
    """A row of ``accounts.list_clients`` with ``version``, ``current_version``, ``outdated`` and
    ``last_refusal`` (the later of ``refusal`` and the one stored). Database only: the CLI shows this."""
    view = dict(row)
    last_stats = view.get("last_stats")
    stored = Refusal.from_stored(last_stats)
    if isinstance(last_stats, dict) and STORED_KEY in last_stats:
        view["last_stats"] = {k: v for k, v in last_stats.items() if k != STORED_KEY} or None
    current = current_client_version()
    version = view.get("client_version") or None
    found = latest(refusal, stored)
    view.update(version=version, current_version=current, outdated=is_outdated(version, current),
                last_refusal=found.as_dict() if found is not None else None)
    return view


def _healthy(session: ClientSession, health: ClientHealth | None, now: float) -> bool:
    """Connected, its bridge and upstream session usable, not in maintenance, breaker not open."""
    if session.closed or not session.available:
        return False
    return health is None or (health.maintenance is None and health.breaker(now) is not Breaker.OPEN)


def _conflict(last_refusal: dict[str, Any] | None, session: ClientSession | None) -> str | None:
    """Two instances with one client id: the one standing by was refused a moment ago, while the connection
    there is now was up (once the other has left and the one standing by serves, there is no conflict)."""
    if not last_refusal or last_refusal["code"] != "client_id_in_use" or session is None or session.closed:
        return None
    at = dt.datetime.fromisoformat(last_refusal["at"])
    age = (dt.datetime.now(dt.UTC) - at).total_seconds()
    return str(last_refusal["message"]) if age <= CONFLICT_SECONDS and at.timestamp() >= session.connected_at \
        else None


def _stats_1h(answered: analytics.Answered | None) -> dict[str, Any]:
    if answered is None:
        return {"requests": 0, "success_rate": None, "p50_ms": None}
    return {"requests": answered.requests, "success_rate": answered.success_rate, "p50_ms": answered.p50_ms}


class _Viewer:
    """Builds the views of one answer: the same clock and one idle health snapshot for all."""

    def __init__(self, platform: Platform, last_hour: dict[str | None, analytics.Answered]) -> None:
        self.platform = platform
        self.last_hour = last_hour
        self.now = platform.dispatcher.clock()
        self._idle_health: dict[str, object] | None = None

    def _health(self, health: ClientHealth | None) -> dict[str, object]:
        if health is not None:
            return health.snapshot(self.now)
        if self._idle_health is None:  # never routed to here: what a fresh record says, made once
            self._idle_health = ClientHealth("", self.platform.dispatcher.policy).snapshot(self.now)
        return dict(self._idle_health)

    def view(self, row: dict[str, Any]) -> dict[str, Any]:
        platform, client_id = self.platform, row["id"]
        view = stored_view(row, platform.refusals.get(client_id))
        session = platform.registry.get(client_id)
        # Connected here, or to another instance of the cluster (its card, as that instance published it).
        where = platform.instance_id if session is not None and not session.closed else None
        if where is None and (remote := platform.remote.get(client_id)) is not None and not remote.closed:
            session, where = remote, remote.platform_instance
        health = platform.dispatcher.health.get(client_id)
        if session is not None and session.client_version:  # the live report is the freshest
            view["version"] = session.client_version
            view["outdated"] = is_outdated(session.client_version, view["current_version"])
        view.update(connected=session is not None and not session.closed,
                    healthy=session is not None and _healthy(session, health, self.now),
                    live=session.snapshot() if session is not None else None, health=self._health(health),
                    stats_1h=_stats_1h(self.last_hour.get(client_id)),
                    # Answers whose usage this client claimed far from the platform's count (since start).
                    usage_claim_gaps=platform.usage_claims.view(client_id),
                    conflict=_conflict(view["last_refusal"], session),
                    platform_instance=where)
        return view


async def _last_hour(platform: Platform) -> dict[str | None, analytics.Answered]:
    until = dt.datetime.now(dt.UTC)
    return await analytics.answered_by_client(platform.engine, until - STATS_WINDOW, until)


async def _last_hour_of(platform: Platform, client_id: str) -> dict[str | None, analytics.Answered]:
    until = dt.datetime.now(dt.UTC)
    found = await analytics.summaries(platform.engine, "client", until - STATS_WINDOW, until, client_id=client_id)
    return {s.id: analytics.Answered(s.stats.requests, s.stats["successes"], s.stats.histogram) for s in found}


async def client_views(platform: Platform) -> list[dict[str, Any]]:
    rows, last_hour = await asyncio.gather(accounts.list_clients(platform.engine), _last_hour(platform))
    viewer = _Viewer(platform, last_hour)
    return [viewer.view(row) for row in rows]


async def client_view(platform: Platform, client_id: str) -> dict[str, Any] | None:
    row, last_hour = await asyncio.gather(accounts.client_view(platform.engine, client_id),
                                          _last_hour_of(platform, client_id))
    return None if row is None else _Viewer(platform, last_hour).view(row)


def status(platform: Platform) -> dict[str, Any]:
    """The platform at a glance: versions, uptime, clients connected and healthy, load, routing."""
    now = platform.dispatcher.clock()
    sessions = [s for s in platform.registry.sessions() if not s.closed]
    healthy = sum(1 for s in sessions if _healthy(s, platform.dispatcher.health.get(s.client_id), now))
    return {"version": arenahub.__version__, "current_client_version": current_client_version(),
            "started_at": dt.datetime.fromtimestamp(platform.started_at, dt.UTC).isoformat(),
            "uptime_seconds": round(time.time() - platform.started_at, 3),
            "connected_clients": len(sessions), "healthy_clients": healthy,
            "active_requests": platform.inflight, "queue_depth": platform.dispatcher.queued,
            "routing_strategy": platform.dispatcher.strategy_name}


# -- routes (declared in api.ROUTES) ----------------------------------------------------------------

def json_response(content: Any) -> Response:
    """JSON encoded by msgspec: a third of the standard library's time on a 1,000-client list."""
    return Response(msgspec.json.encode(content), media_type="application/json")


async def platform_status(request: Request) -> Response:
    return JSONResponse(status(platform_of(request)))


async def delete_client(request: Request) -> Response:
    platform = platform_of(request)
    client_id = request.path_params["client_id"]
    try:
        closing = await platform.delete_client(client_id)
    except KeyError:
        raise NotFound(f"No client with id {client_id!r}.", code="client_not_found") from None
    if closing is not None:  # answer once the client has been told why and disconnected
        await asyncio.wait({closing}, timeout=CLOSE_WAIT_SECONDS)
    return Response(status_code=204)
