"""Exports of the request log and of the per-minute aggregates, streamed as CSV and JSON."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import json

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from arenahub.platform.records import minute_rows
from arenahub.platform.storage import analytics, exports
from arenahub.platform.storage.analytics import LogFilter
from tests.platform.analytics.records_data import (
    NOW,
    collect,
    make_records,
    matches,
    write,
)
from tests.platform.support import call, platform_of, serving


async def test_exports_stream_valid_csv_and_json(engine: AsyncEngine) -> None:
    records = make_records(350, seed=7)
    await write(engine, records)
    filters = LogFilter(status="error")
    wanted = sorted((r for r in records if matches(r, filters)), key=lambda r: (r.created_at, r.id))

    count, text = await collect(exports.export_records(engine, filters, "csv", chunk_rows=40))
    assert count > 2, "the export comes in chunks"
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["id"] for r in rows] == [r.id for r in wanted]
    first = rows[0]
    assert set(first) == set(analytics.RECORD_COLUMNS)
    assert (int(first["status"]), first["model"], float(first["latency_ms"])) == (wanted[0].status, wanted[0].model,
                                                                                 wanted[0].latency_ms)
    assert dt.datetime.fromisoformat(first["created_at"]) == wanted[0].created_at

    count, text = await collect(exports.export_records(engine, filters, "json", chunk_rows=40))
    assert count > 2
    data = json.loads(text)
    assert [r["id"] for r in data] == [r.id for r in wanted] and data[0]["ttft_ms"] == wanted[0].ttft_ms

    for fmt in ("csv", "json"):  # nothing matches: a header alone, an empty array
        _, text = await collect(exports.export_records(engine, LogFilter(model="none"), fmt))
        assert (list(csv.reader(io.StringIO(text))) == [list(analytics.RECORD_COLUMNS)] if fmt == "csv"
                else json.loads(text) == [])
    with pytest.raises(ValueError):
        await collect(exports.export_records(engine, filters, "xml"))

    since, until = NOW - dt.timedelta(hours=1), NOW + dt.timedelta(hours=1)
    expected = minute_rows(vars(r) for r in records)
    _, text = await collect(exports.export_minutes(engine, since, until, "csv", chunk_rows=25))
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == len(expected) and set(rows[0]) == set(analytics.MINUTE_COLUMNS)
    assert sum(int(r["requests"]) for r in rows) == 350
    _, text = await collect(exports.export_minutes(engine, since, until, "json", client_id="cl_1"))
    data = json.loads(text)
    assert data and {r["client_id"] for r in data} == {"cl_1"}
    assert sum(r["requests"] for r in data) == sum(1 for r in records if r.client_id == "cl_1")


def test_an_abandoned_download_stops_at_once_and_gives_its_connection_back(database_url: str) -> None:
    """The browser goes away after the first chunk: the export stops there (it does not stream the rest
    into the void) and its database connection goes back to the pool, not thrown away."""
    with serving(database_url, "adm-export") as http:
        platform = platform_of(http)
        call(http, write, platform.engine, make_records(3500, seed=11))
        invalidated: list[object] = []
        sa.event.listen(platform.engine.sync_engine.pool, "invalidate", lambda *a: invalidated.append(a))

        async def download_and_leave() -> tuple[int, int]:
            gone = asyncio.Event()
            chunks = [0, 0]  # before and after the browser left
            requests = [{"type": "http.request", "body": b"", "more_body": False}]

            async def receive() -> dict[str, object]:
                if requests:
                    return requests.pop()
                await gone.wait()
                return {"type": "http.disconnect"}

            async def send(message: dict[str, object]) -> None:
                if message["type"] != "http.response.body":
                    return
                chunks[gone.is_set()] += 1
                gone.set()  # as uvicorn's send to a gone browser: it returns at once from now on

            scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
                     "method": "GET", "scheme": "http", "path": "/api/admin/exports/requests", "root_path": "",
                     "raw_path": b"/api/admin/exports/requests", "query_string": b"format=csv",
                     "headers": [(b"host", b"testserver"), (b"authorization", b"Bearer adm-export")],
                     "client": ("127.0.0.1", 50000), "server": ("testserver", 80)}
            await http.app(scope, receive, send)
            return chunks[0], chunks[1]

        before, after = http.portal.call(download_and_leave)  # type: ignore[union-attr]
        assert before == 1 and after <= 1, (before, after)  # 4 chunks of 1,000 rows were there to send
        assert platform.engine.pool.checkedout() == 0
        assert invalidated == []
