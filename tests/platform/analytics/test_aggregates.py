"""Per-minute, hourly and daily aggregates: equal to a recomputation after retried batches, added up by
the migration for older records, in UTC; retention deletes raw records only."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import sqlalchemy as sa
from alembic import command
from sqlalchemy.ext.asyncio import AsyncEngine

from arenahub.platform.records import (
    RecordWriter,
    RequestRecord,
    aggregate,
    delete_records_before,
    keep_records_for,
    minute_rows,
)
from arenahub.platform.storage import db, schema
from tests.platform.analytics.records_data import (
    NOW,
    assert_same_aggregates,
    make_records,
    stored_aggregates,
    stored_records,
    write,
)


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
                               [{k: v.astimezone(dt.UTC) if k == "created_at" else v for k, v in vars(r).items()
                                 if k not in ("detail", "images")}  # columns of 0007 and 0010
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
