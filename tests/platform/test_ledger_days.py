"""Per-day sums of the ledger (``ledger_days``): written with the entries, backfilled by migration 0008,
and statements and usage summaries read from them equal to what the raw entries say, on random data
and periods with ragged ends, on both backends."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.ext.asyncio import AsyncEngine

from arenahub.platform.billing.ledger import Entry, Kind
from arenahub.platform.billing.statements import StatementLine, client_statement, key_statement, totals
from arenahub.platform.records import RecordWriter
from arenahub.platform.storage import billing_store, db, ledger_days
from arenahub.platform.storage.analytics import utc
from arenahub.platform.storage.billing_store import entry_row
from arenahub.platform.storage.schema import ledger_days as days_table
from arenahub.platform.storage.schema import ledger_entries

MIDNIGHT = dt.datetime(2026, 5, 4, tzinfo=dt.UTC)
KEYS, CLIENTS, MODELS = ("k1", "k2", "k3"), ("c1", "c2", "", None), ("m1", "m2", "org/m3")


def make_entries(count: int, seed: int) -> list[Entry]:
    """Requests over four UTC days (some exactly at midnight), each reserved then settled or released,
    served by a client, by "" (as the request path writes a missing one) or by none; and top-ups."""
    rng = random.Random(seed)
    out = [Entry(f"top_{seed}_{k}", k, Kind.TOPUP, 10_000_000, 0, MIDNIGHT - dt.timedelta(days=3)) for k in KEYS]
    for n in range(count):
        at = MIDNIGHT + dt.timedelta(days=rng.randrange(-2, 2)) + (
            dt.timedelta() if rng.random() < 0.05 else dt.timedelta(seconds=rng.randrange(86400), microseconds=n))
        key, request = rng.choice(KEYS), f"req_{seed}_{n}"
        hold = rng.randrange(100, 5000)
        out.append(Entry(f"le_{seed}_{n}_r", key, Kind.RESERVE, 0, hold, at, request_id=request))
        if rng.random() < 0.85:
            charge = rng.randrange(0, hold + 500)
            out.append(Entry(f"le_{seed}_{n}_s", key, Kind.SETTLE, -charge, -hold, at + dt.timedelta(seconds=2),
                             request_id=request, client_id=rng.choice(CLIENTS), model=rng.choice(MODELS),
                             prompt_tokens=rng.randrange(50), completion_tokens=rng.randrange(80),
                             images=rng.choice((0, 0, 1)), uncharged=rng.choice((0, 0, rng.randrange(300)))))
        else:
            out.append(Entry(f"le_{seed}_{n}_x", key, Kind.RELEASE, 0, -hold, at + dt.timedelta(seconds=1),
                             request_id=request))
    return out


def periods(seed: int) -> list[tuple[dt.datetime | None, dt.datetime | None]]:
    """Open ends, whole days, ragged ends (also in another zone), both ends in one day, empty ones."""
    rng = random.Random(seed)
    plus = dt.timezone(dt.timedelta(hours=5, minutes=30))
    day = dt.timedelta(days=1)
    out: list[tuple[dt.datetime | None, dt.datetime | None]] = [
        (None, None), (MIDNIGHT - day, None), (None, MIDNIGHT), (MIDNIGHT - 2 * day, MIDNIGHT + day),
        ((MIDNIGHT - day).astimezone(plus), MIDNIGHT + dt.timedelta(hours=7)),
        (MIDNIGHT + dt.timedelta(hours=3), MIDNIGHT + dt.timedelta(hours=9)), (MIDNIGHT, MIDNIGHT)]
    for _ in range(6):
        since = MIDNIGHT + dt.timedelta(seconds=rng.randrange(-3 * 86400, 86400))
        out.append((since, since + dt.timedelta(seconds=rng.randrange(1, 4 * 86400))))
    out.append((out[-1][0].astimezone(plus), None))  # type: ignore[union-attr]
    return out


def within(entries: list[Entry], key_id: str | None, client_id: str | None) -> list[Entry]:
    return [e for e in entries
            if (key_id is None or e.key_id == key_id) and (client_id is None or e.client_id == client_id)]


async def old_statement(engine: AsyncEngine, *, by: str, key_id: str | None, client_id: str | None,
                        since: dt.datetime | None, until: dt.datetime | None) -> list[StatementLine]:
    """``billing_store.statement`` as it was before ledger_days: the raw entries grouped in SQL."""
    e = ledger_entries.c
    account = {"key": e.key_id, "client": e.client_id}[by]
    async with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            day = sa.cast(sa.func.timezone("UTC", e.created_at), sa.Date).label("day")
        else:
            day = sa.func.date(e.created_at).label("day")
        query = (sa.select(account.label("account"), day, e.model, sa.func.count().label("requests"),
                           sa.func.sum(e.prompt_tokens).label("prompt"),
                           sa.func.sum(e.completion_tokens).label("completion"),
                           sa.func.sum(e.images).label("images"), sa.func.sum(-e.amount).label("cost"),
                           sa.func.sum(e.uncharged).label("uncharged"))
                 .where(e.kind == Kind.SETTLE.value, account.is_not(None))
                 .group_by(account, day, e.model).order_by(account, day, e.model))
        for column, value in ((e.key_id, key_id), (e.client_id, client_id)):
            if value is not None:
                query = query.where(column == value)
        if since is not None:
            query = query.where(e.created_at >= since.astimezone(dt.UTC))
        if until is not None:
            query = query.where(e.created_at < until.astimezone(dt.UTC))
        rows = (await conn.execute(query)).all()
    return [StatementLine(r.account, r.day if isinstance(r.day, dt.date) else dt.date.fromisoformat(r.day),
                          r.model or "", int(r.requests), int(r.prompt), int(r.completion), int(r.images),
                          int(r.cost), int(r.uncharged)) for r in rows]


async def stored_days(engine: AsyncEngine) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(days_table).order_by(*days_table.primary_key.columns))).all()
    return [{**row._mapping, "day": utc(row.day)} for row in rows]


def expected_days(entries: list[Entry]) -> list[dict[str, Any]]:
    return sorted(ledger_days.day_rows(entries), key=lambda r: tuple(r[c.name] for c in days_table.primary_key))


async def test_statements_equal_the_raw_entries_for_any_period_and_filter(engine: AsyncEngine) -> None:
    entries = make_entries(500, seed=1)
    for start in range(0, len(entries), 170):  # in batches, as the record writer persists them
        await billing_store.insert_entries(engine, entries[start:start + 170])
    assert await stored_days(engine) == expected_days(entries)
    for since, until in periods(seed=2):
        for key_id, client_id in ((None, None), ("k1", None), (None, "c1"), (None, ""), ("k2", "c2")):
            mine = within(entries, key_id, client_id)
            span = {"since": since, "until": until}
            by_key = await billing_store.statement(engine, by="key", key_id=key_id, client_id=client_id, **span)
            by_client = await billing_store.statement(engine, by="client", key_id=key_id, client_id=client_id, **span)
            case = (since, until, key_id, client_id)
            assert by_key == key_statement(mine, **span), case
            assert by_client == client_statement(mine, **span), case
            assert by_key == await old_statement(engine, by="key", key_id=key_id, client_id=client_id, **span), case
            assert by_client == await old_statement(engine, by="client", key_id=key_id, client_id=client_id,
                                                    **span), case


def _sums(lines: list[StatementLine], field: str) -> dict[Any, tuple[int, ...]]:
    out: dict[Any, tuple[int, ...]] = {}
    for line in lines:
        ident = getattr(line, field)
        add = (line.requests, line.prompt_tokens, line.completion_tokens, line.images, line.cost, line.uncharged)
        out[ident] = tuple(a + b for a, b in zip(out.get(ident, (0,) * 6), add, strict=True))
    return out


def _as_sums(rows: list[dict[str, Any]], field: str) -> dict[Any, tuple[int, ...]]:
    return {row[field] if field != "day" else dt.date.fromisoformat(row["day"]): (
        row["requests"], row["prompt_tokens"], row["completion_tokens"], row["images"], row["cost_micros"],
        row["uncharged_micros"]) for row in rows}


async def test_the_usage_summary_adds_up_the_statement(engine: AsyncEngine) -> None:
    entries = make_entries(400, seed=3)
    await billing_store.insert_entries(engine, entries)
    for since, until in periods(seed=4)[:9]:
        for key_id, client_id in ((None, None), ("k3", None), (None, "c2"), ("k1", "c1")):
            mine = within(entries, key_id, client_id)
            lines = key_statement(mine, since=since, until=until)
            found = await ledger_days.summary(engine, key_id=key_id, client_id=client_id, since=since, until=until,
                                              lines=25)
            case = (since, until, key_id, client_id)
            assert _as_sums(found["by_key"], "key_id") == _sums(lines, "account"), case
            assert _as_sums(found["by_client"], "client_id") == _sums(
                client_statement(mine, since=since, until=until), "account"), case
            assert _as_sums(found["by_model"], "model") == _sums(lines, "model"), case
            assert _as_sums(found["by_day"], "day") == _sums(lines, "day"), case
            total = totals(lines)
            assert (found["total"]["requests"], found["total"]["cost_micros"], found["total"]["total_tokens"]) == (
                total.requests, total.cost, total.total_tokens), case
            newest = sorted(lines, key=lambda ln: (-ln.day.toordinal(), ln.account, ln.model))[:25]
            assert [(x["key_id"], x["day"], x["model"], x["requests"], x["cost_micros"]) for x in found["lines"]] == [
                (ln.account, ln.day.isoformat(), ln.model, ln.requests, ln.cost) for ln in newest], case
            assert found["lines_total"] == len(lines), case
    empty = await ledger_days.summary(engine, key_id="nobody")
    assert (empty["total"]["requests"], empty["by_key"], empty["lines"], empty["lines_total"]) == (0, [], [], 0)


async def test_a_retried_batch_adds_nothing_twice(engine: AsyncEngine) -> None:
    entries = make_entries(120, seed=5)
    await billing_store.insert_entries(engine, entries[:100])
    await billing_store.insert_entries(engine, entries[:100])  # the acknowledgement was lost: the same again
    await billing_store.insert_entries(engine, entries[60:])  # overlapping the first
    assert await stored_days(engine) == expected_days(entries)


async def test_the_record_writer_persists_the_ledger_with_its_day_sums(engine: AsyncEngine) -> None:
    entries = make_entries(80, seed=6)
    pending = list(entries)

    def drain() -> list[Entry]:
        out, pending[:] = list(pending), []
        return out

    writer = RecordWriter(engine, batch_size=50, ledger_entries=drain)
    await writer.flush()
    assert await stored_days(engine) == expected_days(entries)
    async with engine.connect() as conn:
        assert (await conn.execute(sa.select(sa.func.count()).select_from(ledger_entries))).scalar_one() == len(entries)


def test_day_rows_are_utc_days_whatever_the_offset_and_cover_every_shape() -> None:
    entries = [e for e in make_entries(60, seed=7) if e.kind is Kind.SETTLE]
    zone = dt.timezone(dt.timedelta(hours=-7))
    shifted = [Entry(**{**{f: getattr(e, f) for f in Entry.__slots__}, "created_at": e.created_at.astimezone(zone)})
               for e in entries]
    rows = ledger_days.day_rows(entries)
    assert ledger_days.day_rows(shifted) == rows
    assert {row["shape"] for row in rows} == set(ledger_days.SHAPES)
    for shape, kept in ledger_days.SHAPES.items():
        mine = [row for row in rows if row["shape"] == shape]
        assert all(row[a] == "" for row in mine for a in ledger_days.ACCOUNTS if a not in kept), shape
        served = [e for e in entries if "client_id" not in kept or e.client_id is not None]
        assert sum(row["requests"] for row in mine) == len(served), shape
        assert sum(row["cost"] for row in mine) == sum(e.charge for e in served), shape


@pytest.mark.parametrize("cut", [(None, None), (MIDNIGHT + dt.timedelta(hours=5), MIDNIGHT + dt.timedelta(days=1))])
def test_split_into_whole_days_and_ragged_ends(cut: tuple[dt.datetime | None, dt.datetime | None]) -> None:
    whole, ends = ledger_days.split(*cut)
    if cut == (None, None):
        assert (whole, ends) == ((None, None), [])
    else:
        assert whole is None and ends == [cut]  # less than a day: only the entries
    since, until = MIDNIGHT - dt.timedelta(hours=2), MIDNIGHT + dt.timedelta(days=2, minutes=1)
    assert ledger_days.split(since, until) == ((MIDNIGHT, MIDNIGHT + dt.timedelta(days=2)), [
        (since, MIDNIGHT), (MIDNIGHT + dt.timedelta(days=2), until)])


async def test_the_migration_adds_up_entries_written_before_it(database_url: str) -> None:
    engine = db.create_engine(database_url)
    cfg = db.alembic_config()

    def upgrade(sync_conn: sa.Connection, to: str) -> None:
        cfg.attributes["connection"] = sync_conn
        command.upgrade(cfg, to)

    try:
        async with engine.begin() as conn:
            await conn.run_sync(upgrade, "0007")
        entries = make_entries(300, seed=8)
        async with engine.begin() as conn:
            await conn.execute(ledger_entries.insert(), [entry_row(e) for e in entries])
        await db.migrate(engine)
        assert await stored_days(engine) == expected_days(entries)
        for by in ("key", "client"):
            assert await billing_store.statement(engine, by=by, since=MIDNIGHT - dt.timedelta(hours=30)) == (
                key_statement if by == "key" else client_statement)(entries, since=MIDNIGHT - dt.timedelta(hours=30))
    finally:
        await engine.dispose()
