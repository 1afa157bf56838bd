"""Per-minute aggregates, the analytics queries, exports, retention and /metrics, on both databases."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import datetime as dt
import io
import json
import math
import random
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.testclient import TestClient

from arenahub.platform.app import create_app
from arenahub.platform.metrics import PlatformMetrics
from arenahub.platform.records import (AGGREGATES, RecordWriter, RequestRecord, aggregate, delete_records_before,
                                       keep_records_for, latency_column, minute_rows)
from arenahub.platform.settings import PlatformSettings
from arenahub.platform.storage import accounts, analytics, db, schema
from arenahub.platform.storage.analytics import LogFilter, Stats, percentile
from arenahub.protocol import frames

NOW = dt.datetime(2026, 5, 4, 12, 30, 20, tzinfo=dt.UTC)
STATUSES = [200, 200, 200, 200, 429, 499, 400, 402, 502, 503]


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = db.create_engine(database_url)
    await db.migrate(engine)
    yield engine
    await engine.dispose()


def make_records(count: int, *, seed: int = 1, start: dt.datetime = NOW - dt.timedelta(minutes=50),
                 span_seconds: int = 3000) -> list[RequestRecord]:
    """Varied records; many share a second (as real ones do: their time has whole seconds)."""
    rng = random.Random(seed)
    out = []
    for n in range(count):
        status = rng.choice(STATUSES)
        created = start + dt.timedelta(seconds=rng.randrange(0, span_seconds, 7))
        out.append(RequestRecord(
            id=f"req_{seed}_{n:05d}", created_at=created, key_id=rng.choice(["key_a", "key_b", "key_c"]),
            client_id=None if status == 429 else rng.choice(["cl_1", "cl_2"]), model=rng.choice(["m1", "m2"]),
            stream=rng.random() < 0.5, status=status, error_code=None if status == 200 else f"e{status}",
            latency_ms=round(rng.lognormvariate(6, 1.2), 3), ttft_ms=rng.choice([None, round(rng.uniform(5, 900), 3)]),
            prompt_tokens=rng.randrange(100), completion_tokens=rng.randrange(300), attempts=1,
            cost=rng.choice([None, rng.randrange(5000)])))
    return out


async def write(engine: Any, records: list[RequestRecord], batch_size: int = 1000) -> None:
    writer = RecordWriter(engine, batch_size=batch_size)
    for record in records:
        writer.add(RequestRecord(**vars(record)))
    await writer.flush()


async def stored_aggregates(engine: AsyncEngine) -> tuple[list[dict[str, Any]], ...]:
    """The rows of each aggregate table, in key order (as aggregate() gives them)."""
    out = []
    async with engine.connect() as conn:
        for t in AGGREGATES:  # records.AGGREGATES
            rows = (await conn.execute(sa.select(t).order_by(*t.primary_key.columns))).all()
            out.append([{k: analytics.utc(v) if isinstance(v, dt.datetime) else v for k, v in row._mapping.items()}
                        for row in rows])
    return tuple(out)


async def stored_records(engine: AsyncEngine) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(schema.request_records))).all()
    return [{**row._mapping, "created_at": analytics.utc(row.created_at)} for row in rows]


def assert_same_rows(got: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert set(g) == set(e)
        for name, value in e.items():
            assert g[name] == (pytest.approx(value) if isinstance(value, float) else value), (e, name)


def assert_same_aggregates(got: tuple[list[dict[str, Any]], ...], expected: tuple[list[dict[str, Any]], ...]) -> None:
    assert len(got) == len(expected) == 4
    for g, e in zip(got, expected):
        assert_same_rows(g, e)


# --- aggregates ----------------------------------------------------------------------------------

class LostAcks:
    """Stands in for the engine: the transactions in ``lose`` commit, then the caller hears an error."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.dialect = engine.dialect
        self.lose: set[int] = set()
        self.calls = 0

    def begin(self) -> Any:
        self.calls += 1
        lost = self.calls in self.lose

        @contextlib.asynccontextmanager
        async def transaction() -> AsyncIterator[Any]:
            async with self.engine.begin() as conn:
                yield conn
            if lost:
                raise ConnectionResetError("the commit's acknowledgement was lost (test)")

        return transaction()


async def test_aggregates_equal_a_recomputation_after_flushes_and_a_retried_batch(engine: AsyncEngine) -> None:
    records = make_records(700)
    flaky = LostAcks(engine)
    writer = RecordWriter(flaky, batch_size=100)  # type: ignore[arg-type]
    flaky.lose = {3, 5}  # the third and fourth batches commit but look failed
    for part in (records[:250], records[250:600], records[600:]):
        for record in part:
            writer.add(RequestRecord(**vars(record)))
        for _ in range(3):
            with contextlib.suppress(ConnectionResetError):
                await writer.flush()
        assert writer.backlog == 0
    assert flaky.calls == 10, "eight batches and two retries"

    raw = await stored_records(engine)
    assert sorted(r["id"] for r in raw) == sorted(r.id for r in records)
    stored = await stored_aggregates(engine)
    assert_same_aggregates(stored, aggregate(raw))
    assert_same_aggregates(stored, aggregate(vars(r) for r in records))
    minutes, totals, hours, days = stored
    assert sum(row["requests"] for row in minutes) == sum(row["requests"] for row in totals) == 700
    assert all(row["minute"].second == 0 and row["minute"].microsecond == 0 for row in minutes + totals)
    assert all(row["hour"].minute == 0 for row in hours) and all(row["day"].hour == 0 for row in days)
    assert {row["client_id"] for row in minutes} == {"", "cl_1", "cl_2"}
    for rows in (hours, days):
        assert {(row["dimension"], row["value"]) for row in rows} == {
            ("client", ""), ("client", "cl_1"), ("client", "cl_2"), ("key", "key_a"), ("key", "key_b"),
            ("key", "key_c"), ("model", "m1"), ("model", "m2")}
        for dimension in schema.SUMMARY_DIMENSIONS:
            assert sum(row["requests"] for row in rows if row["dimension"] == dimension) == 700

    await write(engine, records[:300])  # the whole lot again, as a writer restarted on old data would
    assert_same_aggregates(await stored_aggregates(engine), stored)


async def test_the_migration_adds_up_records_written_before_it(database_url: str) -> None:
    engine = db.create_engine(database_url)
    cfg = db.alembic_config()

    def upgrade(sync_conn: sa.Connection, to: str) -> None:
        cfg.attributes["connection"] = sync_conn
        command.upgrade(cfg, to)

    try:
        async with engine.begin() as conn:
            await conn.run_sync(upgrade, "0005")
        records = make_records(400, seed=2)
        columns = {c.name for c in schema.request_records.columns}
        async with engine.begin() as conn:
            await conn.execute(sa.table("request_records", *(sa.column(c) for c in columns)).insert(),
                               [{k: v.astimezone(dt.UTC) if k == "created_at" else v for k, v in vars(r).items()}
                                for r in records])
        await db.migrate(engine)
        assert_same_aggregates(await stored_aggregates(engine), aggregate(vars(r) for r in records))
    finally:
        await engine.dispose()


def test_minutes_are_utc_whatever_the_offset() -> None:
    records = [vars(r) for r in make_records(20, seed=10)]
    shifted = [{**r, "created_at": r["created_at"].astimezone(dt.timezone(dt.timedelta(hours=5, minutes=30)))}
               for r in records]
    naive = [{**r, "created_at": r["created_at"].replace(tzinfo=None)} for r in records]
    assert minute_rows(shifted) == minute_rows(records) == minute_rows(naive)
    assert all(row["minute"].tzinfo is dt.UTC for row in minute_rows(shifted))


# --- percentiles -----------------------------------------------------------------------------------

def bucket(ms: float) -> int:
    return schema.LATENCY_COLUMNS.index(latency_column(ms))


def exact(values: list[float], q: float) -> float:
    """Nearest rank."""
    return sorted(values)[max(1, math.ceil(q * len(values))) - 1]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=0, max_value=200_000, allow_nan=False), min_size=1, max_size=300),
       st.sampled_from([0.5, 0.95, 0.99]))
def test_percentiles_from_the_histogram_are_within_one_bucket(values: list[float], q: float) -> None:
    histogram = [0] * len(schema.LATENCY_COLUMNS)
    for value in values:
        histogram[bucket(value)] += 1
    estimate = percentile(histogram, q)
    assert estimate is not None
    assert abs(bucket(estimate) - bucket(exact(values, q))) <= 1


def test_percentile_edges() -> None:
    assert percentile([0] * len(schema.LATENCY_COLUMNS), 0.5) is None
    only_slow = [0] * len(schema.LATENCY_COLUMNS)
    only_slow[-1] = 3
    assert percentile(only_slow, 0.5) == schema.LATENCY_BUCKETS_MS[-1]
    assert latency_column(10) == "lat_10" and latency_column(10.001) == "lat_25" and latency_column(0) == "lat_10"


# --- overview and summaries --------------------------------------------------------------------------

def stats_of(records: list[RequestRecord]) -> dict[str, Any]:
    stats = Stats()
    for row in minute_rows(vars(r) for r in records):
        stats.add(row[name] for name in schema.COUNTERS)
    return stats.sums()


def approx(stats: Stats) -> dict[str, Any]:
    """The stats, with the float sums compared approximately (they add up in another order)."""
    return {k: pytest.approx(v) if isinstance(v, float) else v for k, v in stats.sums().items()}


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


# --- the request log ---------------------------------------------------------------------------------

FILTERS = [
    LogFilter(),
    LogFilter(since=NOW - dt.timedelta(minutes=20), until=NOW - dt.timedelta(minutes=5)),
    LogFilter(client_id="cl_1"), LogFilter(key_id="key_b"), LogFilter(model="m2"),
    LogFilter(status=429), LogFilter(status="error"), LogFilter(status="success"), LogFilter(status="5xx"),
    LogFilter(status="4xx"), LogFilter(error_code="e502"), LogFilter(stream=True), LogFilter(stream=False),
    LogFilter(client_id="cl_2", model="m1", stream=True, since=NOW - dt.timedelta(minutes=40)),
]


def matches(record: RequestRecord, f: LogFilter) -> bool:
    kinds = {"success": (200, 200), "error": (400, 999), "4xx": (400, 499), "5xx": (500, 999)}
    low, high = kinds[f.status] if isinstance(f.status, str) else (f.status, f.status) if f.status else (0, 999)
    return ((f.since is None or record.created_at >= f.since) and (f.until is None or record.created_at < f.until)
            and all(v is None or getattr(record, name) == v
                    for name, v in (("client_id", f.client_id), ("key_id", f.key_id), ("model", f.model),
                                    ("error_code", f.error_code), ("stream", f.stream)))
            and low <= record.status <= high)


def filter_id(f: LogFilter) -> str:
    return ",".join(f"{k}={v}" for k, v in vars(f).items() if v is not None) or "all"


@pytest.mark.parametrize("filters", FILTERS, ids=filter_id)
async def test_log_filters_and_keyset_pages(engine: AsyncEngine, filters: LogFilter) -> None:
    records = make_records(400, seed=6)
    await write(engine, records)
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


# --- exports ------------------------------------------------------------------------------------------

async def collect(chunks: AsyncIterator[bytes]) -> tuple[int, str]:
    parts = [chunk async for chunk in chunks]
    return len(parts), b"".join(parts).decode()


async def test_exports_stream_valid_csv_and_json(engine: AsyncEngine) -> None:
    records = make_records(350, seed=7)
    await write(engine, records)
    filters = LogFilter(status="error")
    wanted = sorted((r for r in records if matches(r, filters)), key=lambda r: (r.created_at, r.id))

    count, text = await collect(analytics.export_records(engine, filters, "csv", chunk_rows=40))
    assert count > 2, "the export comes in chunks"
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["id"] for r in rows] == [r.id for r in wanted]
    first = rows[0]
    assert set(first) == set(analytics.RECORD_COLUMNS)
    assert (int(first["status"]), first["model"], float(first["latency_ms"])) == (wanted[0].status, wanted[0].model,
                                                                                 wanted[0].latency_ms)
    assert dt.datetime.fromisoformat(first["created_at"]) == wanted[0].created_at

    count, text = await collect(analytics.export_records(engine, filters, "json", chunk_rows=40))
    assert count > 2
    data = json.loads(text)
    assert [r["id"] for r in data] == [r.id for r in wanted] and data[0]["ttft_ms"] == wanted[0].ttft_ms

    for fmt in ("csv", "json"):  # nothing matches: a header alone, an empty array
        _, text = await collect(analytics.export_records(engine, LogFilter(model="none"), fmt))
        assert (list(csv.reader(io.StringIO(text))) == [list(analytics.RECORD_COLUMNS)] if fmt == "csv"
                else json.loads(text) == [])
    with pytest.raises(ValueError):
        await collect(analytics.export_records(engine, filters, "xml"))

    since, until = NOW - dt.timedelta(hours=1), NOW + dt.timedelta(hours=1)
    expected = minute_rows(vars(r) for r in records)
    _, text = await collect(analytics.export_minutes(engine, since, until, "csv", chunk_rows=25))
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == len(expected) and set(rows[0]) == set(analytics.MINUTE_COLUMNS)
    assert sum(int(r["requests"]) for r in rows) == 350
    _, text = await collect(analytics.export_minutes(engine, since, until, "json", client_id="cl_1"))
    data = json.loads(text)
    assert data and {r["client_id"] for r in data} == {"cl_1"}
    assert sum(r["requests"] for r in data) == sum(1 for r in records if r.client_id == "cl_1")


# --- retention ----------------------------------------------------------------------------------------

async def test_retention_deletes_old_raw_records_only(engine: AsyncEngine) -> None:
    old = make_records(130, seed=8, start=NOW - dt.timedelta(days=40), span_seconds=86400)
    new = make_records(70, seed=9, start=NOW - dt.timedelta(days=10), span_seconds=86400)
    await write(engine, old + new)
    minutes = await stored_aggregates(engine)

    deleted = await delete_records_before(engine, NOW - dt.timedelta(days=30), batch_size=25, pause=0)
    assert deleted == 130
    assert sorted(r["id"] for r in await stored_records(engine)) == sorted(r.id for r in new)
    assert await stored_aggregates(engine) == minutes, "the aggregates stay"
    assert await delete_records_before(engine, NOW - dt.timedelta(days=30)) == 0
    await asyncio.wait_for(keep_records_for(engine, 0), 1)  # 0 keeps everything: returns at once


# --- /metrics -----------------------------------------------------------------------------------------

def scrape(http: TestClient) -> dict[str, Any]:
    r = http.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return {f.name: f for f in text_string_to_metric_families(r.text)}


def samples(families: dict[str, Any], name: str, suffix: str = "") -> dict[tuple[tuple[str, str], ...], float]:
    return {tuple(sorted(s.labels.items())): s.value for s in families[name].samples if s.name == name + suffix}


def test_metrics_count_requests_with_bounded_labels(tmp_path: Any) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'p.db'}"

    async def prepare() -> tuple[tuple[str, str], str]:
        engine = db.create_engine(url)
        await db.migrate(engine)
        client = await accounts.create_client(engine, name="c1", max_concurrent=3)
        _, key = await accounts.create_key(engine, name="k")
        await engine.dispose()
        return client, key

    (client_id, api_key), key = asyncio.run(prepare())
    with TestClient(create_app(PlatformSettings(database_url=url, admin_token="adm-secret"))) as http:
        families = scrape(http)
        for name in ("arenahub_inflight_requests", "arenahub_active_streams", "arenahub_connected_clients",
                     "arenahub_queue_depth", "arenahub_record_backlog"):
            assert samples(families, name) == {(): 0.0}, name

        with http.websocket_connect("/api/ws") as ws:
            ws.send_bytes(frames.encode(frames.Hello(version=frames.PROTOCOL_VERSION, client_id=client_id,
                                                     api_key=api_key, models=["m1"])))
            frames.decode(ws.receive_bytes())  # welcome
            assert samples(scrape(http), "arenahub_connected_clients") == {(): 1.0}
            answer: dict[str, Any] = {}
            post = threading.Thread(target=lambda: answer.update(r=http.post(
                "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                json={"model": "m1", "messages": [{"role": "user", "content": "hello"}]})))
            post.start()
            while not isinstance(frame := frames.decode(ws.receive_bytes()), frames.Request):
                pass
            families = scrape(http)
            assert samples(families, "arenahub_inflight_requests") == {(): 1.0}
            assert samples(families, "arenahub_active_streams") == {(): 1.0}
            ws.send_bytes(frames.encode(frames.Chunk(id=frame.id, events=[[{"index": 0, "delta": {"content": "hi"}}]])))
            ws.send_bytes(frames.encode(frames.End(id=frame.id, usage={"prompt_tokens": 7, "completion_tokens": 3})))
            post.join(10)
            assert answer["r"].status_code == 200, answer["r"].text

        families = scrape(http)
        assert samples(families, "arenahub_requests", "_total") == {
            (("client", client_id), ("model", "m1"), ("status", "200")): 1.0}
        assert samples(families, "arenahub_tokens", "_total") == {
            (("model", "m1"), ("type", "prompt")): 7.0, (("model", "m1"), ("type", "completion")): 3.0}
        assert samples(families, "arenahub_request_latency_seconds", "_count") == {(("model", "m1"),): 1.0}
        assert samples(families, "arenahub_time_to_first_token_seconds", "_count") == {(("model", "m1"),): 1.0}
        assert samples(families, "arenahub_inflight_requests") == {(): 0.0}
        text = http.get("/metrics").text
        assert all(secret not in text for secret in ("adm-secret", key, api_key)), "no secrets"

        # Bounded labels: a flood of clients and models adds at most the capped number of series.
        metrics: PlatformMetrics = http.app.state.platform.metrics
        for n in range(300):
            metrics.request_finished(RequestRecord(
                id=f"r{n}", created_at=NOW, key_id="k", client_id=f"cl_{n}", model=f"model-{n}", stream=False,
                status=200, error_code=None, latency_ms=5.0, ttft_ms=1.0, prompt_tokens=1, completion_tokens=1,
                attempts=1))
        families = scrape(http)
        requests = samples(families, "arenahub_requests", "_total")
        clients = {dict(labels)["client"] for labels in requests}
        models = {dict(labels)["model"] for labels in requests}
        assert len(clients) == 51 and "other" in clients and len(models) == 51 and "other" in models
        assert sum(requests.values()) == 301
        assert dict(((dict(k)["client"], v) for k, v in requests.items()))["other"] == 300 - 49


def test_each_platform_has_its_own_registry(tmp_path: Any) -> None:
    apps = [create_app(PlatformSettings(database_url=f"sqlite+aiosqlite:///{tmp_path / f'{n}.db'}")) for n in (1, 2)]
    with TestClient(apps[0]) as one, TestClient(apps[1]) as two:
        one.app.state.platform.metrics.request_finished(RequestRecord(
            id="r", created_at=NOW, key_id="k", client_id=None, model="m", stream=True, status=503,
            error_code="no_client", latency_ms=3.0, ttft_ms=None, prompt_tokens=0, completion_tokens=0, attempts=0))
        assert samples(scrape(one), "arenahub_requests", "_total") == {
            (("client", "none"), ("model", "m"), ("status", "503")): 1.0}
        assert samples(scrape(two), "arenahub_requests", "_total") == {}
