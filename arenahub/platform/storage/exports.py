"""The request log and the per-minute aggregates as downloads (CSV with a header, or a JSON array),
oldest first, streamed: rows are read and sent a chunk at a time.

    export_records(engine, LogFilter(...), fmt="csv" | "json") -> AsyncIterator[bytes]
    export_minutes(engine, since, until, fmt, *, client_id=None, key_id=None, model=None)
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

import anyio
import anyio.lowlevel
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from arenahub.platform.storage.analytics import (
    FORMATS,
    MINUTE_COLUMNS,
    RECORD_COLUMNS,
    LogFilter,
    _jsonable,
    _minute_filters,
    utc,
)
from arenahub.platform.storage.schema import request_minutes, request_records


def export_records(engine: AsyncEngine, filters: LogFilter | None = None, fmt: str = "csv", *,
                   chunk_rows: int = 1000) -> AsyncIterator[bytes]:
    """The request log matching ``filters`` (all of it without), oldest first, as CSV (with a header) or a
    JSON array."""
    t = request_records.c
    query = sa.select(request_records).where(*(filters or LogFilter()).where()).order_by(t.created_at, t.id)
    return _export(engine, query, RECORD_COLUMNS, fmt, chunk_rows)


def export_minutes(engine: AsyncEngine, since: dt.datetime, until: dt.datetime, fmt: str = "csv", *,
                   client_id: str | None = None, key_id: str | None = None, model: str | None = None,
                   chunk_rows: int = 1000) -> AsyncIterator[bytes]:
    """The per-minute aggregates of the period, oldest first, as CSV or a JSON array. ``client_id``
    is "" on rows of requests no client served; ``lat_<B>`` counts latencies up to B ms."""
    t = request_minutes.c
    query = (sa.select(request_minutes).where(*_minute_filters(since, until, client_id, key_id, model))
             .order_by(t.minute, t.client_id, t.key_id, t.model))
    return _export(engine, query, MINUTE_COLUMNS, fmt, chunk_rows)


async def _export(engine: AsyncEngine, query: sa.Select[Any], columns: Sequence[str], fmt: str,
                  chunk_rows: int) -> AsyncIterator[bytes]:
    if fmt not in FORMATS:
        raise ValueError(f"export format {fmt!r} is not one of {', '.join(FORMATS)}")
    first = True
    # A download the browser abandons is cancelled. A read cancelled half-way leaves the driver's
    # connection unusable (it is thrown away, noisily), so the reads and the close are shielded and
    # the cancellation lands between chunks (the checkpoint: the server's send to a gone browser
    # may return without waiting), and the connection goes back to the pool.
    with anyio.CancelScope(shield=True):
        conn = await engine.connect()
    try:
        with anyio.CancelScope(shield=True):
            result = await conn.stream(query.execution_options(yield_per=chunk_rows))
        partitions = result.partitions()
        while True:
            with anyio.CancelScope(shield=True):
                rows = await anext(partitions, None)
            if rows is None:
                break
            yield _encode(rows, columns, fmt, first)
            first = False
            await anyio.lowlevel.checkpoint()
    finally:
        with anyio.CancelScope(shield=True):
            await conn.close()
    yield _encode([], columns, fmt, first) + (b"\n]\n" if fmt == "json" else b"")


def _encode(rows: Sequence[Any], columns: Sequence[str], fmt: str, first: bool) -> bytes:
    if fmt == "json":
        parts = [json.dumps(_jsonable(_dated(row)), separators=(",", ":")) for row in rows]
        head = "[\n" if first else (",\n" if parts else "")
        return (head + ",\n".join(parts)).encode()
    out = io.StringIO()
    writer = csv.writer(out)
    if first:
        writer.writerow(columns)
    writer.writerows([_cell(v) for v in _dated(row).values()] for row in rows)
    return out.getvalue().encode()


def _cell(value: Any) -> Any:
    """A CSV cell: times in ISO 8601, JSON values (a record's detail) as JSON text, None empty."""
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return value


def _dated(row: Any) -> dict[str, Any]:
    values = dict(row._mapping)
    for name in ("created_at", "minute"):
        if name in values:
            values[name] = utc(values[name])
    return values
