"""The ledger's entries and the admin's prices in the database.

The platform keeps the live balances in a credit store (accounting/credit_store.py: in memory, or in
Redis for a cluster) and persists its entries in batches; the store starts from the book summed here
(``load_book``). The CLI writes top-ups and prices here
directly; a running platform merges them within seconds (``money_since``, ``prices_since``).
Statements read the per-day sums of ``ledger_days`` (written with the entries) for whole days and the
entries only for the ragged ends of a period, so a month costs about what a day does.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from arenahub.platform.accounting.credentials import new_id
from arenahub.platform.accounting.credit_store import Book
from arenahub.platform.billing.ledger import ClientEarnings, Entry, Kind, Reservation
from arenahub.platform.billing.pricing import Price, format_usd
from arenahub.platform.billing.statements import StatementLine, totals
from arenahub.platform.storage import ledger_days
from arenahub.platform.storage.accounts import _aware, utcnow
from arenahub.platform.storage.schema import consumer_keys, ledger_entries, model_prices

_MONEY = (Kind.TOPUP.value, Kind.ADJUSTMENT.value)
_CLOSING = (Kind.SETTLE.value, Kind.RELEASE.value)


def _insert(engine: AsyncEngine | AsyncConnection, table: sa.Table) -> Any:
    return (postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert)(table)


def entry_row(e: Entry) -> dict[str, Any]:
    return {"entry_id": e.entry_id, "key_id": e.key_id, "kind": e.kind.value, "amount": e.amount, "hold": e.hold,
            "created_at": e.created_at, "request_id": e.request_id, "client_id": e.client_id, "model": e.model,
            "prompt_tokens": e.prompt_tokens, "completion_tokens": e.completion_tokens, "images": e.images,
            "uncharged": e.uncharged, "note": e.note}


def entry_from_row(row: Any) -> Entry:
    return Entry(row.entry_id, row.key_id, Kind(row.kind), int(row.amount), int(row.hold),
                 _aware(row.created_at), request_id=row.request_id,  # type: ignore[arg-type]
                 client_id=row.client_id, model=row.model, prompt_tokens=row.prompt_tokens,
                 completion_tokens=row.completion_tokens, images=row.images, uncharged=int(row.uncharged),
                 note=row.note)


async def insert_entries(engine: AsyncEngine, entries: Sequence[Entry]) -> None:
    """Persist entries, and add the settles among them to ledger_days in the same transaction.

    Idempotent: a batch retried after a lost acknowledgement inserts nothing twice, and only the
    entries this insert really added (RETURNING) are added to the day sums."""
    if not entries:
        return
    stmt = _insert(engine, ledger_entries).on_conflict_do_nothing().returning(ledger_entries.c.entry_id)
    async with engine.begin() as conn:
        added = set((await conn.execute(stmt, [entry_row(e) for e in entries])).scalars().all())
        await ledger_days.add(conn, (e for e in entries if e.entry_id in added))


async def release_orphans(engine: AsyncEngine, *, note: str = "released at platform start: the platform "
                          "stopped before the request ended") -> int:
    """Release every reservation with no settle or release (requests cut off by a stop). Returns how many."""
    now = utcnow()
    async with engine.begin() as conn:
        rows = (await conn.execute(_open_reservations())).all()
        if rows:
            await conn.execute(_insert(conn, ledger_entries).on_conflict_do_nothing(), [
                entry_row(Entry(new_id("le"), r.key_id, Kind.RELEASE, 0, -int(r.hold), now,
                                request_id=r.request_id, note=note)) for r in rows])
    return len(rows)


def _open_reservations() -> sa.Select[Any]:
    """The reservations with no settle or release (requests in progress, or cut off by a stop)."""
    closing = sa.alias(ledger_entries, "closing")
    return (sa.select(ledger_entries.c.key_id, ledger_entries.c.request_id, ledger_entries.c.hold,
                      ledger_entries.c.entry_id)
            .where(ledger_entries.c.kind == Kind.RESERVE.value,
                   ~sa.exists().where(closing.c.request_id == ledger_entries.c.request_id,
                                      closing.c.kind.in_(_CLOSING))))


async def load_book(engine: AsyncEngine) -> Book:
    """What the ledger of record adds up to: per-key balance and held credit, client earnings, the ids of
    top-ups and adjustments, the reservations still open and the unlimited keys."""
    e = ledger_entries.c
    async with engine.connect() as conn:
        balances = {r.key_id: (int(r.balance), int(r.held)) for r in (await conn.execute(
            sa.select(e.key_id, sa.func.sum(e.amount).label("balance"), sa.func.sum(e.hold).label("held"))
            .group_by(e.key_id))).all()}
        earnings = [ClientEarnings(r.client_id, int(r.requests), int(r.prompt), int(r.completion), int(r.images),
                                   int(r.value)) for r in (await conn.execute(
            sa.select(e.client_id, sa.func.count().label("requests"), sa.func.sum(e.prompt_tokens).label("prompt"),
                      sa.func.sum(e.completion_tokens).label("completion"), sa.func.sum(e.images).label("images"),
                      sa.func.sum(-e.amount).label("value"))
            .where(e.kind == Kind.SETTLE.value, e.client_id.is_not(None)).group_by(e.client_id))).all()]
        money_ids = list((await conn.execute(sa.select(e.entry_id).where(e.kind.in_(_MONEY)))).scalars())
        reservations = [Reservation(r.key_id, r.request_id, int(r.hold), r.entry_id)
                        for r in (await conn.execute(_open_reservations())).all()]
        unlimited = frozenset((await conn.execute(
            sa.select(consumer_keys.c.id).where(consumer_keys.c.unlimited.is_(True)))).scalars())
    return Book(balances, earnings, money_ids, reservations, unlimited)


async def key_balance(engine: AsyncEngine, key_id: str) -> tuple[int, int]:
    """(balance, held) of one key, summed from its persisted entries."""
    e = ledger_entries.c
    async with engine.connect() as conn:
        row = (await conn.execute(sa.select(sa.func.coalesce(sa.func.sum(e.amount), 0),
                                            sa.func.coalesce(sa.func.sum(e.hold), 0))
                                  .where(e.key_id == key_id))).one()
    return int(row[0]), int(row[1])


async def add_money(engine: AsyncEngine, key_id: str, amount: int, *, kind: Kind = Kind.TOPUP,
                    note: str | None = None) -> Entry:
    """A top-up (or an adjustment) written straight to the book, as the CLI does."""
    entry = Entry(new_id("le"), key_id, kind, amount, 0, utcnow(), note=note)
    await insert_entries(engine, [entry])
    return entry


async def money_since(engine: AsyncEngine, since: dt.datetime) -> list[Entry]:
    """Top-ups and adjustments created at or after ``since``, oldest first."""
    e = ledger_entries.c
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(ledger_entries).where(e.kind.in_(_MONEY), e.created_at >= since)
                                   .order_by(e.created_at))).all()
    return [entry_from_row(r) for r in rows]


async def money_for_key(engine: AsyncEngine, key_id: str) -> list[Entry]:
    """A key's top-ups and adjustments, oldest first."""
    e = ledger_entries.c
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(ledger_entries).where(e.key_id == key_id, e.kind.in_(_MONEY))
                                   .order_by(e.created_at))).all()
    return [entry_from_row(r) for r in rows]


async def entries_for_request(engine: AsyncEngine, request_id: str) -> list[Entry]:
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(ledger_entries).where(ledger_entries.c.request_id == request_id)
                                   .order_by(ledger_entries.c.created_at))).all()
    return [entry_from_row(r) for r in rows]


async def statement(engine: AsyncEngine, *, by: str, key_id: str | None = None, client_id: str | None = None,
                    since: dt.datetime | None = None, until: dt.datetime | None = None) -> list[StatementLine]:
    """Served requests grouped by account (``by``: "key" or "client"), UTC day and model.

    Filters combine: ``key_id`` and ``client_id`` narrow the requests counted; ``since`` is
    inclusive and ``until`` exclusive. Whole days come from ledger_days, the ragged ends of the
    period from the entries (see ledger_days.py).
    """
    return await ledger_days.statement(engine, by=by, key_id=key_id, client_id=client_id, since=since, until=until)


# --- prices ---------------------------------------------------------------------------------------

async def set_price(engine: AsyncEngine, model: str, price: Price) -> None:
    values = {"prompt_per_1m": price.prompt_per_1m, "completion_per_1m": price.completion_per_1m,
              "per_image": price.per_image, "updated_at": utcnow()}
    stmt = _insert(engine, model_prices).values(model=model, **values)
    async with engine.begin() as conn:
        await conn.execute(stmt.on_conflict_do_update(index_elements=["model"], set_=values))


async def prices_since(engine: AsyncEngine, since: dt.datetime | None) -> tuple[dict[str, Price], dt.datetime | None]:
    """Admin prices changed at or after ``since`` (all when None), and the newest change time seen."""
    query = sa.select(model_prices)
    if since is not None:
        query = query.where(model_prices.c.updated_at >= since)
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    prices = {r.model: Price(int(r.prompt_per_1m), int(r.completion_per_1m), int(r.per_image)) for r in rows}
    newest = max((_aware(r.updated_at) for r in rows), default=None)  # type: ignore[type-var]
    return prices, newest


def line_dict(line: StatementLine, account_field: str) -> dict[str, Any]:
    return {account_field: line.account, "day": line.day.isoformat(), "model": line.model,
            "requests": line.requests, "prompt_tokens": line.prompt_tokens,
            "completion_tokens": line.completion_tokens, "total_tokens": line.total_tokens, "images": line.images,
            "cost_usd": format_usd(line.cost), "cost_micros": line.cost,
            "uncharged_micros": line.uncharged}


async def usage_report(engine: AsyncEngine, *, key_id: str | None = None, client_id: str | None = None,
                       since: dt.datetime | None = None, until: dt.datetime | None = None) -> dict[str, Any]:
    """Statements by key and by client (UTC day and model) for the same filters, and their total.

    The one shape of ``arenahub admin usage --json`` and the admin API's usage route.
    """
    by_key = await statement(engine, by="key", key_id=key_id, client_id=client_id, since=since, until=until)
    by_client = await statement(engine, by="client", key_id=key_id, client_id=client_id, since=since, until=until)
    total = totals(by_key)
    return {
        "filters": {"key": key_id, "client": client_id, "since": since.isoformat() if since else None,
                    "until": until.isoformat() if until else None},
        "by_key": [line_dict(line, "key_id") for line in by_key],
        "by_client": [line_dict(line, "client_id") for line in by_client],
        "total": {"requests": total.requests, "prompt_tokens": total.prompt_tokens,
                  "completion_tokens": total.completion_tokens, "total_tokens": total.total_tokens,
                  "images": total.images, "cost_usd": format_usd(total.cost), "cost_micros": total.cost,
                  "uncharged_micros": total.uncharged},
    }
