"""The ledger's served requests summed per UTC day (table ``ledger_days``), and the statements and
usage summaries read from those sums.

Each settle entry (a served request) adds to one row of every shape in ``SHAPES``: its UTC day and
the accounts the shape keeps (key, client, model; the others are ""). The rows are written with
the entries, in the same transaction (``billing_store.insert_entries``), and only for entries that
insert really added, so a retried batch counts nothing twice. A settle with no client adds to the
shapes without a client only (a statement by client leaves it out, as it always did).

A period's whole UTC days are read from these rows; its ragged ends (the part of a day at each end)
from the raw ``ledger_entries``, so a month costs about what a day does. Whatever the period and
filters, the figures equal those summed from the raw entries (``billing.statements``).

    await statement(engine, by="key" | "client", key_id=, client_id=, since=, until=) -> [StatementLine]
    await summary(engine, key_id=, client_id=, since=, until=, lines=1000) -> dict  # the usage page's
    day_rows(entries) -> rows to upsert; await add(conn, entries)                 # the writer's part
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from arenahub.platform.billing.ledger import Entry, Kind
from arenahub.platform.billing.pricing import format_usd
from arenahub.platform.billing.statements import StatementLine
from arenahub.platform.storage.schema import ledger_days, ledger_entries

# shape: the accounts its rows keep, smallest shapes first (a query reads the first that has what it needs)
SHAPES: dict[str, tuple[str, ...]] = {
    "model": ("model",), "client": ("client_id",), "key": ("key_id",), "key+model": ("key_id", "model"),
    "client+model": ("client_id", "model")}
ACCOUNTS = ("key_id", "client_id", "model")
SUMS = ("requests", "prompt_tokens", "completion_tokens", "images", "cost", "uncharged")
DAY = dt.timedelta(days=1)
Sums = list[int]


# -- writing --------------------------------------------------------------------------------------

def day_rows(entries: Iterable[Entry]) -> list[dict[str, Any]]:
    """What ``entries`` add to ledger_days: one row per shape, day and accounts, in key order."""
    sums: dict[tuple[Any, ...], Sums] = {}
    for e in entries:
        if e.kind is not Kind.SETTLE:
            continue
        created = e.created_at
        created = created.replace(tzinfo=dt.UTC) if created.tzinfo is None else created.astimezone(dt.UTC)
        day = created.replace(hour=0, minute=0, second=0, microsecond=0)
        key, client, model = e.key_id, e.client_id, e.model or ""
        # One row of each of SHAPES, the accounts it drops left "".
        idents = [("model", day, "", "", model), ("key", day, key, "", ""), ("key+model", day, key, "", model)]
        if client is not None:
            idents += [("client", day, "", client, ""), ("client+model", day, "", client, model)]
        add = (1, e.prompt_tokens, e.completion_tokens, e.images, -e.amount, e.uncharged)
        for ident in idents:
            row = sums.get(ident)
            if row is None:
                sums[ident] = list(add)
            else:
                for at, value in enumerate(add):
                    row[at] += value
    names = ("shape", "day", *ACCOUNTS, *SUMS)
    return [dict(zip(names, (*ident, *row), strict=True)) for ident, row in sorted(sums.items())]


def day_tables(entries: Iterable[Entry]) -> list[tuple[sa.Table, list[dict[str, Any]]]]:
    """(ledger_days, its rows) for a bulk load (the benchmarks)."""
    return [(ledger_days, day_rows(entries))]


def _upsert(conn: AsyncConnection) -> Any:
    insert = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(ledger_days)
    return insert.on_conflict_do_update(index_elements=[c.name for c in ledger_days.primary_key.columns],
                                        set_={name: ledger_days.c[name] + insert.excluded[name] for name in SUMS})


async def add(conn: AsyncConnection, entries: Iterable[Entry]) -> None:
    """Add the settle entries among ``entries`` (just inserted, in this transaction) to ledger_days."""
    rows = day_rows(entries)
    if rows:
        await conn.execute(_upsert(conn), rows)


# -- reading --------------------------------------------------------------------------------------

def _utc(t: dt.datetime) -> dt.datetime:
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t.astimezone(dt.UTC)


def _midnight(t: dt.datetime, up: bool = False) -> dt.datetime:
    day = _utc(t).replace(hour=0, minute=0, second=0, microsecond=0)
    return day + DAY if up and day != _utc(t) else day


Span = tuple[dt.datetime | None, dt.datetime | None]


def split(since: dt.datetime | None, until: dt.datetime | None) -> tuple[Span | None, list[Span]]:
    """The whole UTC days of ``[since, until)`` (None: none), and its ragged ends (raw entries)."""
    first = _midnight(since, up=True) if since is not None else None
    last = _midnight(until) if until is not None else None
    if first is not None and last is not None and first >= last:
        return None, [(since, until)]
    ends: list[Span] = []
    if since is not None and first is not None and since < first:
        ends.append((since, first))
    if until is not None and last is not None and last < until:
        ends.append((last, until))
    return (first, last), ends


def _shape(needed: set[str]) -> str | None:
    return next((shape for shape, kept in SHAPES.items() if needed <= set(kept)), None)


Filters = dict[str, str | None]  # key_id, client_id: None for any


def _days_query(shape: str, by: Sequence[str], filters: Filters, whole: Span) -> Any:
    """ledger_days rows of ``shape`` on the whole days ``whole``, summed per ``by``."""
    d = ledger_days.c
    where = [d.shape == shape, *(d[a] == v for a, v in filters.items() if v is not None)]
    where += [d.day >= whole[0]] if whole[0] is not None else []
    where += [d.day < whole[1]] if whole[1] is not None else []
    columns = [d[a] for a in by]
    return sa.select(*columns, *(_sum(d[n]) for n in SUMS)).where(*where).group_by(*columns)


def _entries_query(conn: AsyncConnection, by: Sequence[str], filters: Filters, span: Span) -> Any:
    """The settle entries of ``span`` summed per ``by`` (settles with no client: client None)."""
    e = ledger_entries.c
    if conn.dialect.name == "postgresql":
        day = sa.func.date_trunc("day", sa.func.timezone("UTC", e.created_at))
    else:
        day = sa.func.substr(e.created_at, 1, 10)  # SQLite keeps UTC text: 'YYYY-MM-DD HH:MM:SS...'
    columns = [day if a == "day" else sa.func.coalesce(e.model, "") if a == "model" else e[a] for a in by]
    where = [e.kind == Kind.SETTLE.value, *(e[a] == v for a, v in filters.items() if v is not None)]
    where += [e.created_at >= _utc(span[0])] if span[0] is not None else []
    where += [e.created_at < _utc(span[1])] if span[1] is not None else []
    sums = [sa.func.count(), *(_sum(c) for c in (e.prompt_tokens, e.completion_tokens, e.images, -e.amount,
                                                   e.uncharged))]
    return sa.select(*columns, *sums).where(*where).group_by(*columns)


def _as_day(value: Any) -> dt.date:
    if isinstance(value, dt.datetime):
        return _utc(value).date() if value.tzinfo is not None else value.date()
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value)[:10])


async def _rows(conn: AsyncConnection, query: Any, by: Sequence[str]) -> list[tuple[tuple[Any, ...], Sums]]:
    """(values of ``by``, SUMS) of each row (days as dates)."""
    day_at = by.index("day") if "day" in by else None
    out = []
    for row in await conn.execute(query):
        ident = tuple(row[:len(by)])
        if day_at is not None:
            ident = (*ident[:day_at], _as_day(ident[day_at]), *ident[day_at + 1:])
        out.append((ident, [int(v or 0) for v in row[len(by):]]))
    return out


def _add(into: dict[tuple[Any, ...], Sums], ident: tuple[Any, ...], sums: Sums) -> None:
    found = into.get(ident)
    if found is None:
        into[ident] = list(sums)
    else:
        for at, value in enumerate(sums):
            found[at] += value


async def grouped(conn: AsyncConnection, by: Sequence[str], *, key_id: str | None = None,
                  client_id: str | None = None, since: dt.datetime | None = None,
                  until: dt.datetime | None = None) -> dict[tuple[Any, ...], Sums]:
    """The settles of ``[since, until)`` (only ``key_id``'s, ``client_id``'s) summed per ``by``
    (any of "key_id", "client_id", "model", "day"; "day" as a date), as {values of by: SUMS}.
    Settles with no client are left out when ``by`` has "client_id"."""
    filters = {"key_id": key_id, "client_id": client_id}
    shape = _shape({a for a in by if a != "day"} | {a for a, v in filters.items() if v is not None})
    whole, ends = split(since, until) if shape is not None else (None, [(since, until)])
    queries = [_entries_query(conn, by, filters, span) for span in ends]
    if whole is not None and shape is not None:
        queries.append(_days_query(shape, by, filters, whole))
    out: dict[tuple[Any, ...], Sums] = {}
    client_at = by.index("client_id") if "client_id" in by else None
    for query in queries:
        for ident, sums in await _rows(conn, query, by):
            if client_at is None or ident[client_at] is not None:
                _add(out, ident, sums)
    return out


def _sum(column: Any) -> Any:
    return sa.cast(sa.func.sum(column), sa.BigInteger)  # PostgreSQL sums BIGINT into NUMERIC


async def statement(engine: AsyncEngine, *, by: str, key_id: str | None = None, client_id: str | None = None,
                    since: dt.datetime | None = None, until: dt.datetime | None = None) -> list[StatementLine]:
    """Served requests grouped by account (``by``: "key" or "client"), UTC day and model, in that
    order. ``key_id`` and ``client_id`` narrow the requests counted; ``since`` is inclusive and
    ``until`` exclusive."""
    account = {"key": "key_id", "client": "client_id"}[by]
    async with engine.connect() as conn:
        found = await grouped(conn, (account, "day", "model"), key_id=key_id, client_id=client_id, since=since,
                              until=until)
    return [StatementLine(*ident, *sums) for ident, sums in sorted(found.items())]


def figures(sums: Sums) -> dict[str, Any]:
    """SUMS as the usage answers show them."""
    requests, prompt, completion, images, cost, uncharged = sums
    return {"requests": requests, "prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion, "images": images, "cost_usd": format_usd(cost), "cost_micros": cost,
            "uncharged_micros": uncharged}


# What the usage page shows, each summed per these; "lines": the statement by key.
SUMMARY = {"key": ("key_id",), "client": ("client_id",), "day_model": ("day", "model"),
           "lines": ("key_id", "day", "model")}


def _plans(names: list[str], given: set[str]) -> list[tuple[tuple[str, ...], list[str]]]:
    """Which of SUMMARY's sums one read of the entries can serve: those whose accounts are among the
    read's, or fixed by a filter (the statement's lines give the sums per key and per day and model;
    per client is apart unless one client is asked for)."""
    plans: list[tuple[tuple[str, ...], list[str]]] = []
    for name in sorted(names, key=lambda n: -len(SUMMARY[n])):
        plan = next((p for p in plans if set(SUMMARY[name]) - given <= set(p[0])), None)
        if plan is None:
            plans.append((SUMMARY[name], [name]))
        else:
            plan[1].append(name)
    return plans


async def summary(engine: AsyncEngine, *, key_id: str | None = None, client_id: str | None = None,
                  since: dt.datetime | None = None, until: dt.datetime | None = None,
                  lines: int = 1000) -> dict[str, Any]:
    """What the usage page shows of a period: the total, the sums per key, per client, per model and
    per UTC day, and the newest ``lines`` lines of the statement by key (of ``lines_total``).

    Each sum whose accounts and filters a shape keeps reads it for the whole days; the raw entries
    are read once for all of them (per ragged end), and once for the sums no shape serves (a key's
    clients, a client's keys) over the whole period."""
    filters = {"key_id": key_id, "client_id": client_id}
    given = {a for a, v in filters.items() if v is not None}
    shapes = {name: _shape({a for a in by if a != "day"} | given) for name, by in SUMMARY.items()}
    whole, ends = split(since, until)
    found: dict[str, dict[tuple[Any, ...], Sums]] = {name: {} for name in SUMMARY}
    count = 0
    async with engine.connect() as conn:
        for names, spans in (([n for n, s in shapes.items() if s is None], [(since, until)]),
                             ([n for n, s in shapes.items() if s is not None], ends)):
            for by, served in _plans(names, given):
                for span in spans:
                    for ident, sums in await _rows(conn, _entries_query(conn, by, filters, span), by):
                        values = {**filters, **dict(zip(by, ident, strict=True))}
                        for n in served:
                            if "client_id" not in SUMMARY[n] or values["client_id"] is not None:
                                _add(found[n], tuple(values[a] for a in SUMMARY[n]), sums)
        count = len(found["lines"])
        for name, shape in shapes.items():
            if shape is None or whole is None:
                continue
            if name != "lines":
                for ident, sums in await _rows(conn, _days_query(shape, SUMMARY[name], filters, whole), SUMMARY[name]):
                    _add(found[name], ident, sums)
                continue
            # A month has a line per key, day and model: count them, and read only the newest.
            where = _days_query(shape, SUMMARY[name], filters, whole).whereclause
            count += (await conn.execute(sa.select(sa.func.count()).select_from(ledger_days).where(where))).scalar_one()
            d = ledger_days.c
            newest = (sa.select(d.key_id, d.day, d.model, *(d[n] for n in SUMS)).where(where)
                      .order_by(d.day.desc(), d.key_id, d.model).limit(lines))
            for ident, sums in await _rows(conn, newest, SUMMARY[name]):
                _add(found[name], ident, sums)
    models: dict[tuple[Any, ...], Sums] = {}
    days: dict[tuple[Any, ...], Sums] = {}
    total = [0] * len(SUMS)
    for (day, model), sums in found["day_model"].items():
        _add(models, (model,), sums)
        _add(days, (day,), sums)
        total = [a + b for a, b in zip(total, sums, strict=True)]
    newest_lines = sorted(found["lines"].items(), key=lambda item: (-item[0][1].toordinal(), item[0][0], item[0][2]))
    return {
        "filters": {"key": key_id, "client": client_id, "since": since.isoformat() if since else None,
                    "until": until.isoformat() if until else None},
        "total": figures(total),
        "by_key": [{"key_id": k, **figures(s)} for (k,), s in sorted(found["key"].items())],
        "by_client": [{"client_id": c, **figures(s)} for (c,), s in sorted(found["client"].items())],
        "by_model": [{"model": m, **figures(s)} for (m,), s in sorted(models.items())],
        "by_day": [{"day": d.isoformat(), **figures(s)} for (d,), s in sorted(days.items())],
        "lines": [{"key_id": k, "day": d.isoformat(), "model": m, **figures(s)}
                  for (k, d, m), s in newest_lines[:lines]],
        "lines_total": count,
    }
