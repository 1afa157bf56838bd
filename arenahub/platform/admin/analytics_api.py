"""The dashboard's data: charts, summaries, the request log and its exports, under ``/api/admin``.
Built on the queries of ``storage/analytics.py``; routes are declared in ``api.ROUTES``.

- ``GET /analytics/overview?period=hour|day|week[&client_id&key_id&model]``: ``{since, until,
  bucket_seconds, series: [{t, ...stats, requests_per_minute, tokens_per_minute}], totals: {...stats},
  live: {connected_clients, healthy_clients, active_requests, queue_depth}}``. Buckets: a minute for
  the hour, 15 minutes for the day, an hour for the week. The stats (``analytics.Stats.as_dict``):
  ``requests``, ``successes``, ``success_rate`` (null without requests), ``errors`` (``{"4xx",
  "429", "499", "5xx"}``), ``latency_avg_ms``, ``p50_ms``, ``p95_ms`` (of answered requests, within
  one histogram bucket), ``ttft_avg_ms``, ``prompt_tokens``, ``completion_tokens``, ``cost``
  (micro-USD).
- ``GET /analytics/summaries?by=client|key|model&since&until[&client_id&key_id&model]``: ``{data:
  [{id, name, ...stats}]}``, busiest first; ``name`` is the client's or key's (the model for models;
  null when it is gone, or for requests no client served, whose ``id`` is null).
- ``GET /requests?since&until&client_id&key_id&model&status&error_code&stream&id&limit&cursor``:
  ``{data: [record + key_name, client_name], next_cursor}``, newest first. ``status``: a code, or
  ``success``, ``error``, ``4xx``, ``5xx``.
- ``GET /requests/{id}``: the record, ``key_name``, ``client_name``, ``detail: {attempts: [{client_id,
  client_name, outcome, code, error, ms}], error}``, ``content: {prompt, answer}`` or null, and
  ``content_stored`` (whether prompts are being stored now).
- ``GET /exports/requests?format=csv|json&<the log's filters>`` and ``GET /exports/aggregates?
  format=csv|json&since&until[&client_id&key_id&model]``: streamed downloads, oldest first.

Times: an RFC 3339 date-time, with or without a zone (without: UTC), or a date (its UTC midnight);
``since`` is inclusive, ``until`` exclusive. Summaries and the aggregates export default to the
last 24 hours. A page's ``next_cursor`` is ``<microseconds since 1970>|<record id>``.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypedDict

import anyio
import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.types import Send

from arenahub.platform.admin.client_views import status
from arenahub.platform.admin.fields import period_problem, text, utc
from arenahub.platform.admin.inputs import query
from arenahub.platform.admin.state import platform_of
from arenahub.platform.storage import analytics, exports
from arenahub.platform.storage.analytics import LogFilter
from arenahub.protocol.errors import InvalidRequest, NotFound

if TYPE_CHECKING:
    from arenahub.platform.runtime import Platform

DEFAULT_SPAN = dt.timedelta(days=1)
MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "json": "application/json"}
LIVE = ("connected_clients", "healthy_clients", "active_requests", "queue_depth")

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Time = Annotated[str, msgspec.Meta(max_length=40, extra_json_schema={"anyOf": [{"format": "date-time"}, {
    "format": "date"}]}, description="an RFC 3339 date-time (a date-time without a zone is taken as UTC) or date, "
    "e.g. 2026-05-01T12:00:00Z or 2026-05-01")]
Status = Annotated[str, text("[1-5][0-9][0-9]|" + "|".join(analytics.STATUS_KINDS), "an HTTP status code (100 to "
                             "599), or " + ", ".join(analytics.STATUS_KINDS))]
Cursor = Annotated[str, text(r"[0-9]{1,17}\|[^\x00-\x1f\x7f]{1,160}", "the next_cursor of the previous page",
                             max_length=200)]
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
MICROSECOND = dt.timedelta(microseconds=1)
Format = Annotated[Literal["csv", "json"], msgspec.Meta(description="csv (with a header row) or json (an array)")]


class Dimensions(msgspec.Struct, forbid_unknown_fields=True):
    client_id: Annotated[Id, msgspec.Meta(description="only requests this client served")] | None = None
    key_id: Annotated[Id, msgspec.Meta(description="only this consumer key's requests")] | None = None
    model: Annotated[Id, msgspec.Meta(description="only requests for this model")] | None = None


class OverviewQuery(Dimensions):
    period: Annotated[Literal[tuple(analytics.PERIODS)], msgspec.Meta(  # type: ignore[valid-type]
        description="hour (1-minute buckets), day (15-minute) or week (1-hour)")] = "hour"


class Period(Dimensions):
    since: Annotated[Time, msgspec.Meta(description="from this time, inclusive (default: 24 hours before "
                                        "until)")] | None = None
    until: Annotated[Time, msgspec.Meta(description="up to this time, exclusive (default: now)")] | None = None


class SummariesQuery(Period):
    by: Annotated[Literal[tuple(analytics.SUMMARY_BY)], msgspec.Meta(  # type: ignore[valid-type]
        description="one summary per client, key or model")] = "client"


class AggregatesExport(Period):
    format: Format = "csv"


class LogFilters(Dimensions):
    since: Annotated[Time, msgspec.Meta(description="from this time, inclusive")] | None = None
    until: Annotated[Time, msgspec.Meta(description="up to this time, exclusive")] | None = None
    status: Status | None = None
    error_code: Annotated[Id, msgspec.Meta(description="only requests that failed with this code")] | None = None
    stream: Annotated[bool, msgspec.Meta(description="true: streamed requests only; false: the others")] | None = None
    id: Annotated[Id, msgspec.Meta(description="one request, by its id (x-request-id)")] | None = None


class LogQuery(LogFilters):
    limit: Annotated[int, msgspec.Meta(ge=1, le=500, description="records per page (default 50)")] = 50
    cursor: Cursor | None = None


class RequestsExport(LogFilters):
    format: Format = "csv"


# -- reading the query --------------------------------------------------------------------------

def parse_time(value: str | None, param: str) -> dt.datetime | None:
    """An RFC 3339 date-time (without a zone: UTC) or date (its UTC midnight), as aware UTC."""
    if value is None:
        return None
    try:
        t = msgspec.convert(value, dt.datetime)
    except msgspec.ValidationError:
        try:
            day = msgspec.convert(value, dt.date)
        except msgspec.ValidationError:
            raise InvalidRequest(f"{param} must be an RFC 3339 date-time or date (2026-05-01T12:00:00Z, "
                                 f"2026-05-01T12:00:00 in UTC, or 2026-05-01), not {value!r}.", param=param) from None
        t = dt.datetime.combine(day, dt.time())
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else utc(t)


def _before(t: dt.datetime, span: dt.timedelta) -> dt.datetime:
    try:
        return t - span
    except OverflowError:  # within a day of the first time there is
        return dt.datetime.min.replace(tzinfo=dt.UTC)


def _period(since: str | None, until: str | None, *, default: dt.timedelta | None = None
            ) -> tuple[dt.datetime | None, dt.datetime | None]:
    start, end = parse_time(since, "since"), parse_time(until, "until")
    if default is not None:
        end = end or dt.datetime.now(dt.UTC)
        start = start or _before(end, default)
    if (wrong := period_problem(start, end)) is not None:  # the rule of usage reports too
        raise InvalidRequest(f"{wrong[0].upper()}{wrong[1:]}.", param="since")
    return start, end


def _status(value: str | None) -> int | str | None:
    """A status code as a number; success, error, 4xx or 5xx as they are (the type's pattern allows no other)."""
    return int(value) if value is not None and value.isdigit() else value


def _log_filter(q: LogFilters) -> LogFilter:
    since, until = _period(q.since, q.until)
    return LogFilter(since=since, until=until, client_id=q.client_id, key_id=q.key_id, model=q.model,
                     status=_status(q.status), error_code=q.error_code, stream=q.stream, id=q.id)


def _storage_cursor(cursor: str) -> str:
    """This API's cursor (``<microseconds since 1970>|<id>``) as the one the request log query takes."""
    micros, _, record_id = cursor.partition("|")
    return f"{(EPOCH + int(micros) * MICROSECOND).isoformat()}|{record_id}"


def _api_cursor(cursor: str | None) -> str | None:
    if cursor is None:
        return None
    stamp, record_id = analytics.decode_cursor(cursor)
    return f"{(stamp - EPOCH) // MICROSECOND}|{record_id}"


class _DimensionArgs(TypedDict):
    client_id: str | None
    key_id: str | None
    model: str | None


def _dimensions(q: Dimensions) -> _DimensionArgs:
    return {"client_id": q.client_id, "key_id": q.key_id, "model": q.model}


# -- routes -------------------------------------------------------------------------------------

def live(platform: Platform) -> dict[str, int]:
    """The platform now: clients connected and healthy, consumer requests in flight, requests queued."""
    now = status(platform)
    return {name: now[name] for name in LIVE}


async def overview(request: Request) -> Response:
    q: OverviewQuery = query(request, OverviewQuery)
    platform = platform_of(request)
    found = await analytics.overview(platform.engine, analytics.period_window(q.period), **_dimensions(q))
    return JSONResponse({**found.as_dict(), "live": live(platform)})


async def summaries(request: Request) -> Response:
    q: SummariesQuery = query(request, SummariesQuery)
    since, until = _period(q.since, q.until, default=DEFAULT_SPAN)
    assert since is not None and until is not None
    engine = platform_of(request).engine
    found = await analytics.summaries(engine, q.by, since, until, **_dimensions(q))
    ids = [s.id for s in found]
    names = {i: i for i in ids if i} if q.by == "model" else await analytics.names(engine, q.by, ids)
    return JSONResponse({"since": since.isoformat(), "until": until.isoformat(), "by": q.by,
                         "data": [{"id": s.id, "name": names.get(s.id or ""), **s.stats.as_dict()} for s in found]})


async def request_log(request: Request) -> Response:
    q: LogQuery = query(request, LogQuery)
    filters = _log_filter(q)
    engine = platform_of(request).engine
    cursor = _storage_cursor(q.cursor) if q.cursor is not None else None
    page = (await analytics.request_log(engine, filters, limit=q.limit, cursor=cursor)).as_dict()
    page["next_cursor"] = _api_cursor(page["next_cursor"])
    keys = await analytics.names(engine, "key", (r["key_id"] for r in page["data"]))
    clients = await analytics.names(engine, "client", (r["client_id"] for r in page["data"]))
    for record in page["data"]:
        record["key_name"] = keys.get(record["key_id"])
        record["client_name"] = clients.get(record["client_id"] or "")
    return JSONResponse(page)


async def request_detail(request: Request) -> Response:
    platform = platform_of(request)
    request_id = request.path_params["request_id"]
    record = await analytics.request_detail(platform.engine, request_id)
    if record is None:
        raise NotFound(f"No request record with id {request_id!r} (raw records older than the retention "
                       "period are deleted).", code="request_not_found")
    detail = record.get("detail") or {"attempts": [], "error": None}
    if record.get("detail") is None and record["status"] == 200 and record["client_id"]:
        # Answered at the first attempt: no detail is stored for it; its one attempt is the request.
        detail = {"attempts": [{"client_id": record["client_id"], "outcome": "ok", "code": None, "error": None,
                                "ms": record["latency_ms"]}], "error": None}
    names = await analytics.names(platform.engine, "client", (a.get("client_id") for a in detail["attempts"]))
    attempts = [{**a, "client_name": names.get(a.get("client_id") or "")} for a in detail["attempts"]]
    content = await analytics.request_content(platform.engine, request_id)
    out = {k: v.isoformat() if isinstance(v, dt.datetime) else v for k, v in record.items()}
    out.update(detail={"attempts": attempts, "error": detail.get("error")}, content=content,
               content_stored=platform.settings.store_prompts)
    return JSONResponse(out)


def _stamp(t: dt.datetime) -> str:
    return t.strftime("%Y%m%dT%H%M%SZ")


class Download(StreamingResponse):
    """A streamed export that closes its rows' generator however the download ends: one the browser
    abandons is cancelled mid-stream, and its database connection must go back to the pool then."""

    async def stream_response(self, send: Send) -> None:
        try:
            await super().stream_response(send)
        finally:
            with anyio.CancelScope(shield=True):
                await self.body_iterator.aclose()  # type: ignore[attr-defined]


def _download(what: str, fmt: str, since: dt.datetime | None, until: dt.datetime | None, body: Any) -> Response:
    span = f"{_stamp(since) if since else 'start'}-{_stamp(until or dt.datetime.now(dt.UTC))}"
    return Download(body, media_type=MEDIA_TYPES[fmt], headers={
        "Content-Disposition": f'attachment; filename="arenahub-{what}-{span}.{fmt}"', "Cache-Control": "no-store"})


async def export_requests(request: Request) -> Response:
    q: RequestsExport = query(request, RequestsExport)
    filters = _log_filter(q)
    body = exports.export_records(platform_of(request).engine, filters, q.format)
    return _download("requests", q.format, filters.since, filters.until, body)


async def export_aggregates(request: Request) -> Response:
    q: AggregatesExport = query(request, AggregatesExport)
    since, until = _period(q.since, q.until, default=DEFAULT_SPAN)
    assert since is not None and until is not None
    body = exports.export_minutes(platform_of(request).engine, since, until, q.format, **_dimensions(q))
    return _download("aggregates", q.format, since, until, body)
