"""What the dashboard shows and exports: charts and summaries read from the aggregates
(``request_totals``, ``request_minutes``, ``request_hours``, ``request_days``: see schema.py), the
request log, its details and its export from the raw ``request_records``.

Every function takes the engine first. Times are aware datetimes (any offset; compared in UTC) and
a period is ``[since, until)``; aggregates count whole minutes (a minute belongs to the period when
it starts in it). Results are plain dicts, or dataclasses with ``as_dict()`` ready for JSON.

    PERIODS                                   # "hour": 1-min buckets, "day": 15-min, "week": 1-hour
    period_window(name, now=None) -> Window   # (since, until, bucket_seconds), aligned to the buckets
    await overview(engine, window, *, client_id=None, key_id=None, model=None) -> Overview
    await summaries(engine, by, since, until, *, client_id=None, key_id=None, model=None) -> list[Summary]
                                              # by: "client", "key" or "model"; busiest first
    await answered_by_client(engine, since, until) -> {client_id: Answered}   # the client list's figures
    Stats                                     # .requests .success_rate .errors .histogram ...; as_dict()
    await request_log(engine, LogFilter(...), *, limit=50, cursor=None) -> LogPage
                                              # newest first; LogPage.next_cursor fetches the next page;
                                              # a cursor it did not make raises ValueError
    await request_detail(engine, request_id) -> dict | None   # the record, with key and client names
    await request_content(engine, request_id) -> dict | None  # its stored prompt and answer, if any
    await names(engine, "client" | "key", ids) -> {id: name}  # for the ids that exist
    (the exports of the request log and the minutes are in ``exports``)
    percentile(histogram, q) -> float | None  # from the lat_* bucket counts

Latency figures (average, p50, p95) are of answered requests (status 200); time to first token is
the average over requests that had a first byte. Errors come by kind: "4xx", "429", "499", "5xx".
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from arenahub.platform.storage.schema import (
    COUNTERS,
    LATENCY_BUCKETS_MS,
    LATENCY_COLUMNS,
    clients,
    consumer_keys,
    request_contents,
    request_days,
    request_hours,
    request_minutes,
    request_records,
    request_totals,
)

ERROR_KINDS = ("4xx", "429", "499", "5xx")
STATUS_KINDS = ("success", "error", "4xx", "5xx")  # what LogFilter.status takes besides an exact code
FORMATS = ("csv", "json")
SUMMARY_BY = {"client": request_minutes.c.client_id, "key": request_minutes.c.key_id,
              "model": request_minutes.c.model}
RECORD_COLUMNS = tuple(c.name for c in request_records.columns)
MINUTE_COLUMNS = tuple(c.name for c in request_minutes.columns)


def utc(t: dt.datetime) -> dt.datetime:
    """An aware UTC datetime (naive ones, as SQLite hands back, are taken to be UTC already)."""
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t.astimezone(dt.UTC)


def percentile(histogram: Sequence[int], q: float) -> float | None:
    """The q-quantile (0 < q <= 1) of the latencies counted in ``histogram`` (lat_* order), in ms,
    interpolated inside its bucket: within one bucket of the exact value. None when it is empty."""
    total = sum(histogram)
    if not total:
        return None
    rank = max(1, math.ceil(q * total))
    below = 0
    for i, count in enumerate(histogram):
        if count and below + count >= rank:
            if i == len(LATENCY_BUCKETS_MS):  # above the last bound: all we know is its lower edge
                return float(LATENCY_BUCKETS_MS[-1])
            low = LATENCY_BUCKETS_MS[i - 1] if i else 0
            return low + (LATENCY_BUCKETS_MS[i] - low) * (rank - below) / count
        below += count
    raise AssertionError("unreachable: rank <= total")


# -- aggregates -----------------------------------------------------------------------------------

_INDEX = {name: i for i, name in enumerate(COUNTERS)}
_HISTOGRAM = slice(_INDEX[LATENCY_COLUMNS[0]], None)


@dataclass
class Stats:
    """Sums of the aggregate COUNTERS over some rows, and the figures the pages show."""
    values: list[Any] = field(default_factory=lambda: [0] * len(COUNTERS))  # in COUNTERS order

    def add(self, row: Iterable[Any]) -> None:
        """Add a row holding the COUNTERS in order (a result row, or another Stats' ``values``)."""
        self.values = [a + (b or 0) for a, b in zip(self.values, row, strict=True)]

    def __getitem__(self, name: str) -> Any:
        return self.values[_INDEX[name]]

    def sums(self) -> dict[str, Any]:
        return dict(zip(COUNTERS, self.values, strict=True))

    @property
    def requests(self) -> int:
        return int(self["requests"])

    @property
    def histogram(self) -> list[int]:
        return self.values[_HISTOGRAM]

    @property
    def errors(self) -> dict[str, int]:
        return {kind: self[f"errors_{kind}"] for kind in ERROR_KINDS}

    @property
    def success_rate(self) -> float | None:
        return self["successes"] / self.requests if self.requests else None

    @property
    def latency_avg_ms(self) -> float | None:
        answered = sum(self.histogram)
        return self["latency_sum_ms"] / answered if answered else None

    @property
    def ttft_avg_ms(self) -> float | None:
        return self["ttft_sum_ms"] / self["ttft_count"] if self["ttft_count"] else None

    def as_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "successes": self["successes"], "success_rate": self.success_rate,
                "errors": self.errors, "latency_avg_ms": self.latency_avg_ms,
                "p50_ms": percentile(self.histogram, 0.50), "p95_ms": percentile(self.histogram, 0.95),
                "ttft_avg_ms": self.ttft_avg_ms, "prompt_tokens": self["prompt_tokens"],
                "completion_tokens": self["completion_tokens"], "cost": self["cost"]}


def _sums(table: sa.Table) -> list[sa.ColumnElement[Any]]:
    # PostgreSQL sums BIGINT columns into NUMERIC (Decimal): cast back.
    return [(sa.func.sum(c) if isinstance(c.type, sa.Float) else sa.cast(sa.func.sum(c), sa.BigInteger)).label(c.name)
            for c in (table.c[name] for name in COUNTERS)]


@dataclass(frozen=True)
class Window:
    since: dt.datetime
    until: dt.datetime
    bucket_seconds: int


# name: (length, bucket), in seconds
PERIODS: dict[str, tuple[int, int]] = {"hour": (3600, 60), "day": (86400, 900), "week": (7 * 86400, 3600)}


def period_window(name: str, now: dt.datetime | None = None) -> Window:
    """The last hour, day or week up to now, in whole buckets (the last one holds the current minute)."""
    if name not in PERIODS:
        raise ValueError(f"period {name!r} is not one of {', '.join(PERIODS)}")
    length, bucket = PERIODS[name]
    stamp = utc(now or dt.datetime.now(dt.UTC)).timestamp()
    until = (math.floor(stamp / bucket) + 1) * bucket
    return Window(dt.datetime.fromtimestamp(until - length, dt.UTC), dt.datetime.fromtimestamp(until, dt.UTC), bucket)


@dataclass
class Overview:
    window: Window
    series: list[tuple[dt.datetime, Stats]]  # every bucket of the window, oldest first, empty ones too
    totals: Stats

    def as_dict(self) -> dict[str, Any]:
        per_minute = 60 / self.window.bucket_seconds
        points = []
        for start, stats in self.series:
            point = {"t": start.isoformat(), **stats.as_dict()}
            point["requests_per_minute"] = stats.requests * per_minute
            point["tokens_per_minute"] = (stats["prompt_tokens"] + stats["completion_tokens"]) * per_minute
            points.append(point)
        return {"since": self.window.since.isoformat(), "until": self.window.until.isoformat(),
                "bucket_seconds": self.window.bucket_seconds, "series": points, "totals": self.totals.as_dict()}


def _minute_filters(since: dt.datetime, until: dt.datetime, client_id: str | None, key_id: str | None,
                    model: str | None) -> list[sa.ColumnElement[bool]]:
    t = request_minutes.c
    where = [t.minute >= utc(since), t.minute < utc(until)]
    if client_id is not None:
        where.append(t.client_id == client_id)
    if key_id is not None:
        where.append(t.key_id == key_id)
    if model is not None:
        where.append(t.model == model)
    return where


async def overview(engine: AsyncEngine, window: Window, *, client_id: str | None = None,
                   key_id: str | None = None, model: str | None = None) -> Overview:
    """Requests, success rate, latency percentiles, TTFT, tokens and errors per bucket of ``window``,
    for everything or for one client, key and/or model."""
    since, until = utc(window.since), utc(window.until)
    start, step = since.timestamp(), window.bucket_seconds
    given = [(dimension, value) for dimension, value in (("client", client_id), ("key", key_id), ("model", model))
             if value is not None]
    if not given:
        time, where = request_totals.c.minute, [request_totals.c.minute >= since, request_totals.c.minute < until]
    elif len(given) == 1 and step % 3600 == 0 and start % 3600 == 0:  # whole hours: a week's chart
        h = request_hours.c
        time, where = h.hour, [h.dimension == given[0][0], h.value == given[0][1], h.hour >= since, h.hour < until]
    else:
        time, where = request_minutes.c.minute, _minute_filters(since, until, client_id, key_id, model)
    query = sa.select(time, *_sums(time.table)).where(*where).group_by(time)
    buckets = [Stats() for _ in range(math.ceil((until.timestamp() - start) / step))]
    async with engine.connect() as conn:
        for row in await conn.execute(query):
            buckets[int((utc(row[0]).timestamp() - start) // step)].add(row[1:])
    totals = Stats()
    for stats in buckets:
        totals.add(stats.values)
    series = [(dt.datetime.fromtimestamp(start + i * step, dt.UTC), stats) for i, stats in enumerate(buckets)]
    return Overview(window, series, totals)


@dataclass
class Summary:
    id: str | None  # the client, key or model; None: requests no client served
    stats: Stats

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, **self.stats.as_dict()}


def _day(t: dt.datetime, up: bool = False) -> dt.datetime:
    day = utc(t).replace(hour=0, minute=0, second=0, microsecond=0)
    return day + dt.timedelta(days=1) if up and day != utc(t) else day


async def summaries(engine: AsyncEngine, by: str, since: dt.datetime, until: dt.datetime, *,
                    client_id: str | None = None, key_id: str | None = None,
                    model: str | None = None) -> list[Summary]:
    """One summary per client, key or model (``by``) that had requests in the period, busiest first.

    Unfiltered, the whole UTC days of the period are read from request_days and only its ragged
    ends from request_minutes, so a month costs about what a day does."""
    if by not in SUMMARY_BY:
        raise ValueError(f"summaries are by one of {', '.join(SUMMARY_BY)}, not {by!r}")
    column = SUMMARY_BY[by]
    first_day, last_day = _day(since, up=True), _day(until)
    queries = []
    if client_id is None and key_id is None and model is None and first_day < last_day:
        d = request_days.c
        queries.append(sa.select(d.value, *_sums(request_days))
                       .where(d.dimension == by, d.day >= first_day, d.day < last_day).group_by(d.value))
        ends = [(since, first_day), (last_day, until)]
    else:
        ends = [(since, until)]
    queries += [sa.select(column, *_sums(request_minutes)).where(*_minute_filters(low, high, client_id, key_id, model))
                .group_by(column) for low, high in ends if low < high]
    found: dict[str, Stats] = {}
    async with engine.connect() as conn:
        for query in queries:
            for row in await conn.execute(query):
                found.setdefault(row[0], Stats()).add(row[1:])
    out = [Summary(ident or None, stats) for ident, stats in found.items()]
    out.sort(key=lambda s: (-s.stats.requests, s.id or ""))
    return out


@dataclass(frozen=True)
class Answered:
    requests: int
    successes: int
    histogram: list[int]  # latencies of answered requests, lat_* order

    @property
    def success_rate(self) -> float | None:
        return self.successes / self.requests if self.requests else None

    @property
    def p50_ms(self) -> float | None:
        return percentile(self.histogram, 0.5)


_ANSWERED = ("requests", "successes", *LATENCY_COLUMNS)


async def answered_by_client(engine: AsyncEngine, since: dt.datetime, until: dt.datetime) -> dict[str | None, Answered]:
    """Requests, successes and latency histogram of each client with requests in ``[since, until)``
    (None: requests no client served), in one query of request_minutes. The client list's figures:
    summing these 23 counters, not all 33 of ``summaries``, takes half the time on SQLite."""
    t = request_minutes.c
    query = (sa.select(t.client_id, *(sa.cast(sa.func.sum(t[name]), sa.BigInteger) for name in _ANSWERED))
             .where(*_minute_filters(since, until, None, None, None)).group_by(t.client_id))
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return {row[0] or None: Answered(int(row[1]), int(row[2]), [int(v) for v in row[3:]]) for row in rows}


# -- the request log ------------------------------------------------------------------------------

@dataclass(frozen=True)
class LogFilter:
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    client_id: str | None = None
    key_id: str | None = None
    model: str | None = None
    status: int | str | None = None  # an exact status code, or one of STATUS_KINDS
    error_code: str | None = None
    stream: bool | None = None
    id: str | None = None  # one record, by its id

    def __post_init__(self) -> None:
        if isinstance(self.status, str) and self.status not in STATUS_KINDS:
            raise ValueError(f"status {self.status!r} is neither a status code nor one of {', '.join(STATUS_KINDS)}")

    def where(self) -> list[sa.ColumnElement[bool]]:
        t = request_records.c
        where: list[sa.ColumnElement[bool]] = []
        if self.since is not None:
            where.append(t.created_at >= utc(self.since))
        if self.until is not None:
            where.append(t.created_at < utc(self.until))
        for column, value in ((t.client_id, self.client_id), (t.key_id, self.key_id), (t.model, self.model),
                              (t.error_code, self.error_code), (t.stream, self.stream), (t.id, self.id)):
            if value is not None:
                where.append(column == value)
        if isinstance(self.status, int):
            where.append(t.status == self.status)
        elif self.status is not None:
            low, high = {"success": (200, 200), "error": (400, 999), "4xx": (400, 499), "5xx": (500, 999)}[self.status]
            where.append(t.status.between(low, high))
        return where


@dataclass
class LogPage:
    rows: list[dict[str, Any]]
    next_cursor: str | None  # pass as ``cursor`` for the next (older) page; None: this was the last

    def as_dict(self) -> dict[str, Any]:
        return {"data": [_jsonable(r) for r in self.rows], "next_cursor": self.next_cursor}


def _record(row: Any) -> dict[str, Any]:
    record = dict(row._mapping)
    record["created_at"] = utc(record["created_at"])
    return record


def _jsonable(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, dt.datetime) else v for k, v in record.items()}


def encode_cursor(record: dict[str, Any]) -> str:
    return f"{utc(record['created_at']).isoformat()}|{record['id']}"


def decode_cursor(cursor: str) -> tuple[dt.datetime, str]:
    """Raises ValueError for a cursor this module did not make."""
    stamp, sep, record_id = cursor.partition("|")
    if not sep or not record_id:
        raise ValueError(f"not a request log cursor: {cursor!r}")
    return utc(dt.datetime.fromisoformat(stamp)), record_id


async def request_log(engine: AsyncEngine, filters: LogFilter = LogFilter(), *, limit: int = 50,
                      cursor: str | None = None) -> LogPage:
    """Records matching ``filters``, newest first (by created_at, then id), ``limit`` per page."""
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    t = request_records.c
    query = sa.select(request_records).where(*filters.where())
    if cursor is not None:
        created, record_id = decode_cursor(cursor)
        # The first condition alone is an index range; the second breaks ties within one timestamp.
        query = query.where(t.created_at <= created, sa.or_(t.created_at < created, t.id < record_id))
    query = query.order_by(t.created_at.desc(), t.id.desc()).limit(limit + 1)
    async with engine.connect() as conn:
        rows = [_record(row) for row in await conn.execute(query)]
    more = len(rows) > limit
    rows = rows[:limit]
    return LogPage(rows, encode_cursor(rows[-1]) if more else None)


async def request_detail(engine: AsyncEngine, request_id: str) -> dict[str, Any] | None:
    """One record with its key's and client's names (None when either is gone), or None."""
    r = request_records
    query = (sa.select(r, consumer_keys.c.name.label("key_name"), clients.c.name.label("client_name"))
             .outerjoin(consumer_keys, consumer_keys.c.id == r.c.key_id)
             .outerjoin(clients, clients.c.id == r.c.client_id).where(r.c.id == request_id))
    async with engine.connect() as conn:
        row = (await conn.execute(query)).first()
    return None if row is None else _record(row)


async def request_content(engine: AsyncEngine, request_id: str) -> dict[str, str] | None:
    """The prompt and answer stored for a request (only when the operator stores them), or None."""
    c = request_contents.c
    async with engine.connect() as conn:
        row = (await conn.execute(sa.select(c.prompt, c.answer).where(c.request_id == request_id))).first()
    return None if row is None else {"prompt": row.prompt, "answer": row.answer}


async def names(engine: AsyncEngine, kind: str, ids: Iterable[str | None]) -> dict[str, str]:
    """The names of the clients or keys (``kind``: "client" or "key") among ``ids`` that exist."""
    table = {"client": clients, "key": consumer_keys}[kind]
    wanted = sorted({i for i in ids if i})
    found: dict[str, str] = {}
    async with engine.connect() as conn:
        for start in range(0, len(wanted), 500):  # bounded IN lists
            query = sa.select(table.c.id, table.c.name).where(table.c.id.in_(wanted[start:start + 500]))
            found.update((row.id, row.name) for row in await conn.execute(query))
    return found
