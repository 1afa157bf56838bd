"""The analytics queries: the overview of a period, summaries per client, key and model, and the request
log with its filters, keyset pages and detail."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncEngine

from arenahub.platform.records import RequestRecord
from arenahub.platform.storage import accounts, analytics, db
from arenahub.platform.storage.analytics import LogFilter
from tests.platform.analytics.records_data import (
    NOW,
    approx,
    bucket,
    exact,
    make_records,
    matches,
    stats_of,
    write,
)


async def test_overview_of_the_last_hour_day_and_week(engine: AsyncEngine) -> None:
    records = make_records(600, seed=3)
    old = make_records(50, seed=4, start=NOW - dt.timedelta(days=3), span_seconds=600)
    await write(engine, records + old, batch_size=128)

    hour = await analytics.overview(engine, analytics.period_window("hour", NOW))
    assert hour.window.until == dt.datetime(2026, 5, 4, 12, 31, tzinfo=dt.UTC)
    assert hour.window.since == hour.window.until - dt.timedelta(hours=1)
    assert len(hour.series) == 60 and [t for t, _ in hour.series] == sorted(t for t, _ in hour.series)
    recent = [r for r in records if r.created_at >= hour.window.since]
    assert hour.totals.requests == len(recent) and stats_of(recent) == approx(hour.totals)
    for start, stats in hour.series:
        assert stats.requests == sum(1 for r in recent if start <= r.created_at < start + dt.timedelta(minutes=1))

    statuses = [r.status for r in recent]
    assert hour.totals.errors == {"4xx": statuses.count(400) + statuses.count(402), "429": statuses.count(429),
                                  "499": statuses.count(499), "5xx": statuses.count(502) + statuses.count(503)}
    assert hour.totals.success_rate == pytest.approx(statuses.count(200) / len(statuses))
    ttfts = [r.ttft_ms for r in recent if r.ttft_ms is not None]
    assert hour.totals.ttft_avg_ms == pytest.approx(sum(ttfts) / len(ttfts))
    answered = [r.latency_ms for r in recent if r.status == 200]
    for q, key in ((0.5, "p50_ms"), (0.95, "p95_ms")):
        assert abs(bucket(hour.totals.as_dict()[key]) - bucket(exact(answered, q))) <= 1
    body = json.loads(json.dumps(hour.as_dict()))
    assert body["totals"]["requests"] == len(recent) and len(body["series"]) == 60
    assert sum(p["requests_per_minute"] for p in body["series"]) == len(recent)

    day = await analytics.overview(engine, analytics.period_window("day", NOW))
    assert len(day.series) == 96 and day.window.bucket_seconds == 900 and day.totals.requests == 600
    week = await analytics.overview(engine, analytics.period_window("week", NOW))
    assert len(week.series) == 168 and week.totals.requests == 650
    assert sum(s.requests for _, s in week.series) == 650
    only = await analytics.overview(engine, analytics.period_window("week", NOW), client_id="cl_1", model="m2")
    assert approx(only.totals) == stats_of([r for r in records + old if (r.client_id, r.model) == ("cl_1", "m2")])
    # One client, key or model: the week from request_hours, the day from request_minutes.
    for period in ("week", "day"):
        window = analytics.period_window(period, NOW)
        for name, value in (("client_id", "cl_2"), ("key_id", "key_a"), ("model", "m1")):
            one = await analytics.overview(engine, window, **{name: value})
            mine = [r for r in records + old if getattr(r, name) == value and r.created_at >= window.since]
            assert approx(one.totals) == stats_of(mine), (period, name)
            for start, stats in one.series:
                end = start + dt.timedelta(seconds=window.bucket_seconds)
                assert stats.requests == sum(1 for r in mine if start <= r.created_at < end)


async def test_summaries_per_client_key_and_model(engine: AsyncEngine) -> None:
    records = make_records(500, seed=5)
    await write(engine, records)
    since, until = NOW - dt.timedelta(hours=2), NOW + dt.timedelta(minutes=1)
    for by, attr in (("client", "client_id"), ("key", "key_id"), ("model", "model")):
        got = await analytics.summaries(engine, by, since, until)
        ids = {getattr(r, attr) for r in records}
        assert {s.id for s in got} == ids
        assert [s.stats.requests for s in got] == sorted((s.stats.requests for s in got), reverse=True)
        for summary in got:
            mine = [r for r in records if getattr(r, attr) == summary.id]
            assert stats_of(mine) == approx(summary.stats), (by, summary.id)
        json.dumps([s.as_dict() for s in got])
    # Over days: whole days come from request_days, the ragged ends from request_minutes.
    spread = make_records(900, seed=11, start=NOW - dt.timedelta(days=4), span_seconds=4 * 86400)
    await write(engine, spread)
    for since, until in ((NOW - dt.timedelta(days=3, minutes=7), NOW - dt.timedelta(minutes=30)),
                         (dt.datetime(2026, 5, 1, tzinfo=dt.UTC), dt.datetime(2026, 5, 3, tzinfo=dt.UTC)),
                         (NOW - dt.timedelta(days=4), NOW + dt.timedelta(days=1))):
        since, until = since.replace(second=0), until.replace(second=0)
        inside = [r for r in records + spread if since <= r.created_at < until]
        for by, attr in (("client", "client_id"), ("key", "key_id"), ("model", "model")):
            got = {s.id: s.stats for s in await analytics.summaries(engine, by, since, until)}
            assert set(got) == {getattr(r, attr) for r in inside}
            for ident, stats in got.items():
                assert stats_of([r for r in inside if getattr(r, attr) == ident]) == approx(stats), (by, ident)

    narrowed = await analytics.summaries(engine, "key", since, until, client_id="cl_2")
    assert sum(s.stats.requests for s in narrowed) == sum(1 for r in inside if r.client_id == "cl_2")
    assert await analytics.summaries(engine, "client", NOW + dt.timedelta(hours=1), NOW + dt.timedelta(hours=2)) == []


FILTERS = [
    LogFilter(),
    LogFilter(since=NOW - dt.timedelta(minutes=20), until=NOW - dt.timedelta(minutes=5)),
    LogFilter(client_id="cl_1"), LogFilter(key_id="key_b"), LogFilter(model="m2"),
    LogFilter(status=429), LogFilter(status="error"), LogFilter(status="success"), LogFilter(status="5xx"),
    LogFilter(status="4xx"), LogFilter(error_code="e502"), LogFilter(stream=True), LogFilter(stream=False),
    LogFilter(client_id="cl_2", model="m1", stream=True, since=NOW - dt.timedelta(minutes=40)),
]


def filter_id(f: LogFilter) -> str:
    return ",".join(f"{k}={v}" for k, v in vars(f).items() if v is not None) or "all"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def logged(module_database_url: str) -> AsyncIterator[tuple[AsyncEngine, list[RequestRecord]]]:
    """One database of records for all the filters: they only read it."""
    engine = db.create_engine(module_database_url)
    await db.migrate(engine)
    records = make_records(400, seed=6)
    await write(engine, records)
    yield engine, records
    await engine.dispose()


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("filters", FILTERS, ids=filter_id)
async def test_log_filters_and_keyset_pages(logged: tuple[AsyncEngine, list[RequestRecord]],
                                            filters: LogFilter) -> None:
    engine, records = logged
    expected = sorted((r for r in records if matches(r, filters)), key=lambda r: (r.created_at, r.id), reverse=True)
    assert expected, "the filter should match something"
    seen: list[dict[str, Any]] = []
    cursor = None
    for _ in range(100):
        page = await analytics.request_log(engine, filters, limit=17, cursor=cursor)
        assert len(page.rows) <= 17
        seen += page.rows
        cursor = page.next_cursor
        if cursor is None:
            break
    assert [r["id"] for r in seen] == [r.id for r in expected]
    assert all(r["created_at"].tzinfo is not None for r in seen)
    json.dumps(page.as_dict())


async def test_log_cursor_and_detail(engine: AsyncEngine) -> None:
    client_id, _ = await accounts.create_client(engine, name="box one")
    key_id, _ = await accounts.create_key(engine, name="team key")
    record = RequestRecord(id="req_detail", created_at=NOW, key_id=key_id, client_id=client_id, model="m1",
                           stream=True, status=502, error_code="upstream_error", latency_ms=812.5, ttft_ms=None,
                           prompt_tokens=12, completion_tokens=0, attempts=3, cost=0)
    await write(engine, [record])
    detail = await analytics.request_detail(engine, "req_detail")
    assert detail is not None
    assert {k: detail[k] for k in ("key_name", "client_name", "attempts", "error_code", "created_at")} == {
        "key_name": "team key", "client_name": "box one", "attempts": 3, "error_code": "upstream_error",
        "created_at": NOW}
    assert await analytics.request_detail(engine, "req_nothing") is None
    with pytest.raises(ValueError):
        await analytics.request_log(engine, cursor="garbage")
    with pytest.raises(ValueError):
        await analytics.request_log(engine, limit=0)
    with pytest.raises(ValueError):
        LogFilter(status="teapot")
    with pytest.raises(ValueError):
        await analytics.summaries(engine, "colour", NOW, NOW)
    with pytest.raises(ValueError):
        analytics.period_window("fortnight")
    page = await analytics.request_log(engine, limit=1)
    assert page.next_cursor is None and [r["id"] for r in page.rows] == ["req_detail"]
