"""Exports of the request log and of the per-minute aggregates, streamed as CSV and JSON."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from arenahub.platform.records import minute_rows
from arenahub.platform.storage import analytics
from arenahub.platform.storage.analytics import LogFilter
from tests.platform.analytics.records_data import (
    NOW,
    collect,
    make_records,
    matches,
    write,
)


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
