"""The dashboard's pages over HTTP: every admin API call each page makes when it opens and on its
common filters, timed against a platform started in this process (uvicorn on a loopback port,
the real application and lifespan) on a seeded database. Used by bench/analytics.py.

The calls and their parameters are those of ``arenahub/platform/dashboard/static/pages/*.js``;
the browser's time zone is taken to be UTC-01:00: its midnights are an hour after UTC ones, so a
usage period (from a local midnight) starts with 23 hours that are not a whole UTC day and are
read from the raw ledger entries, the costliest case whatever the time of day. The exports are
timed to their first row and, once each, to their last byte.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import socket
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn

from arenahub.platform.app import create_app
from arenahub.platform.settings import PlatformSettings

TOKEN = "adm-bench-pages"
BROWSER_ZONE = dt.timezone(dt.timedelta(hours=-1))
Params = dict[str, str]


@dataclass
class Call:
    page: str
    name: str
    path: str
    params: Params = field(default_factory=dict)
    export: bool = False  # timed to the first row (the first chunk with more than a header)
    page_call: bool = True  # False: an API call no page makes (shown, not held to the limit)


@dataclass
class Timed:
    call: Call
    seconds: list[float]
    size: int  # bytes of the last answer (exports: of the first chunk)

    @property
    def p50(self) -> float:
        return statistics.median(self.seconds)

    @property
    def worst(self) -> float:
        return max(self.seconds)


@dataclass
class Streamed:
    name: str
    first_row: float
    seconds: float
    size: int
    rows: int


def _local_midnight(day: dt.date) -> str:
    return dt.datetime.combine(day, dt.time(), BROWSER_ZONE).astimezone(dt.UTC).isoformat()


def calls(now: dt.datetime, sample: dict[str, Any]) -> list[Call]:
    """Every call the pages make, with the filters people use most."""
    today = now.astimezone(BROWSER_ZONE).date()
    tomorrow = _local_midnight(today + dt.timedelta(days=1))
    month = {"since": _local_midnight(today.replace(day=1)), "until": tomorrow}
    thirty = {"since": _local_midnight(today - dt.timedelta(days=29)), "until": tomorrow}
    day = {"since": (now - dt.timedelta(days=1)).isoformat(), "until": now.isoformat()}
    client, key, model = sample["client_id"], "key_0000", "model-00"  # the busiest key and model
    a_day_ago = {"since": (now - dt.timedelta(days=1, hours=1)).isoformat(),
                 "until": (now - dt.timedelta(days=1)).isoformat()}
    return [
        Call("Overview", "overview: hour", "/analytics/overview", {"period": "hour"}),
        Call("Overview", "overview: day", "/analytics/overview", {"period": "day"}),
        Call("Overview", "overview: week", "/analytics/overview", {"period": "week"}),
        Call("Overview", "status", "/status"),
        Call("Clients", "clients", "/clients"),
        Call("Clients", "instances", "/instances"),  # the Instances page's one call too (no database)
        Call("Keys", "keys", "/keys"),
        Call("Keys", "summaries by key: last 24 h", "/analytics/summaries", {"by": "key", **day}),
        Call("Usage & billing", "usage summary: this month", "/usage/summary", month),
        Call("Usage & billing", "usage summary: last 30 days", "/usage/summary", thirty),
        Call("Usage & billing", "usage summary: 30 days, one key", "/usage/summary", {**thirty, "key": key}),
        Call("Usage & billing", "usage summary: 30 days, one client", "/usage/summary", {**thirty, "client": client}),
        Call("Usage & billing", "usage summary: 30 days, key + client", "/usage/summary",
             {**thirty, "key": key, "client": client}),
        # The whole statement (every line per key or client, day and model): the CLI's and the API's,
        # no page's any more. Its size grows with the lines: the busiest key's month is 23 MB of JSON.
        Call("(API)", "usage statement: 30 days, one key", "/usage", {**thirty, "key": key}, page_call=False),
        Call("Usage & billing", "export aggregates CSV: this month", "/exports/aggregates",
             {"format": "csv", **month}, export=True),
        Call("Usage & billing", "export aggregates JSON: 30 days, key", "/exports/aggregates",
             {"format": "json", **thirty, "key_id": key}, export=True),
        Call("Requests", "log: default", "/requests", {"limit": "50"}),
        Call("Requests", "log: client", "/requests", {"limit": "50", "client_id": client}),
        Call("Requests", "log: key", "/requests", {"limit": "50", "key_id": key}),
        Call("Requests", "log: model", "/requests", {"limit": "50", "model": model}),
        Call("Requests", "log: status error", "/requests", {"limit": "50", "status": "error"}),
        Call("Requests", "log: status 4xx", "/requests", {"limit": "50", "status": "4xx"}),
        Call("Requests", "log: status 502", "/requests", {"limit": "50", "status": "502"}),
        Call("Requests", "log: error code (rare)", "/requests", {"limit": "50", "error_code": "upstream_timeout"}),
        Call("Requests", "log: not streamed", "/requests", {"limit": "50", "stream": "false"}),
        Call("Requests", "log: an hour a day ago", "/requests", {"limit": "50", **a_day_ago}),
        Call("Requests", "log: key + model + errors", "/requests",
             {"limit": "50", "key_id": key, "model": model, "status": "error"}),
        Call("Requests", "log: one id", "/requests", {"limit": "50", "id": sample["id"]}),
        Call("Requests", "log: second page", "/requests", {"limit": "50", "cursor": "<from the first page>"}),
        Call("Requests", "detail", f"/requests/{sample['id']}"),
        Call("Requests", "prices", "/prices"),
        Call("Requests", "export log CSV: all", "/exports/requests", {"format": "csv"}, export=True),
        Call("Requests", "export log JSON: all", "/exports/requests", {"format": "json"}, export=True),
        Call("Requests", "export log CSV: client, errors", "/exports/requests",
             {"format": "csv", "client_id": client, "status": "error"}, export=True),
        Call("Settings", "settings", "/settings"),
    ]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def sign_in(http: httpx.AsyncClient) -> None:
    """As a person does: the login form, then the admin token; the session cookie stays in ``http``."""
    form = await http.get("/dashboard/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert token, "no csrf_token on the login page"
    done = await http.post("/dashboard/login", data={"secret": TOKEN, "csrf_token": token.group(1)},
                           headers={"Origin": str(http.base_url).rstrip("/")})
    assert done.status_code == 303 and done.headers["location"] == "/dashboard", (done.status_code, done.text[:300])


async def _first_row(http: httpx.AsyncClient, path: str, params: Params) -> int:
    async with http.stream("GET", "/api/admin" + path, params=params) as resp:
        assert resp.status_code == 200, (path, resp.status_code)
        async for chunk in resp.aiter_bytes():
            if chunk.count(b"\n") > 1:
                return len(chunk)
    return 0


async def _answer(http: httpx.AsyncClient, path: str, params: Params) -> httpx.Response:
    resp = await http.get("/api/admin" + path, params=params)
    assert resp.status_code == 200, (path, params, resp.status_code, resp.text[:300])
    resp.json()  # the browser parses it too
    return resp


async def time_calls(http: httpx.AsyncClient, todo: list[Call], repeat: int,
                     progress: Callable[[str], None]) -> list[Timed]:
    out = []
    cursor = (await _answer(http, "/requests", {"limit": "50"})).json()["next_cursor"]
    for call in todo:
        params = {k: cursor if v == "<from the first page>" else v for k, v in call.params.items()}
        seconds, size = [], 0
        for _ in range(repeat):
            started = time.perf_counter()
            if call.export:
                size = await _first_row(http, call.path, params)
            else:
                size = len((await _answer(http, call.path, params)).content)
            seconds.append(time.perf_counter() - started)
        out.append(Timed(call, seconds, size))
        progress(f"  {call.name}: {statistics.median(seconds) * 1000:.0f} ms")
    return out


async def stream_whole(http: httpx.AsyncClient, name: str, path: str, params: Params) -> Streamed:
    started = time.perf_counter()
    first, size, rows = 0.0, 0, 0
    async with http.stream("GET", "/api/admin" + path, params=params) as resp:
        assert resp.status_code == 200, (path, resp.status_code)
        async for chunk in resp.aiter_bytes():
            if not first and chunk.count(b"\n") > 1:
                first = time.perf_counter() - started
            size += len(chunk)
            rows += chunk.count(b"\n")
    return Streamed(name, first, time.perf_counter() - started, size, rows)


@dataclass
class PageRun:
    start_seconds: float  # the platform's start-up (lifespan) on this database
    timed: list[Timed]
    streamed: list[Streamed]


async def run(url: str, now: dt.datetime, sample: dict[str, Any], *, repeat: int, whole_exports: bool,
              progress: Callable[[str], None]) -> PageRun:
    """Start the platform on ``url``, sign in, and time every call (and stream whole exports)."""
    # Records are kept (retention 0): the seeded month must not start being deleted under the bench.
    settings = PlatformSettings(database_url=url, admin_token=TOKEN, record_retention_days=0)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, lifespan="on",
                                           log_level="warning", access_log=False))
    started = time.perf_counter()
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            serving.result()
            raise RuntimeError("the platform stopped while starting")
        await asyncio.sleep(0.02)
    start_seconds = time.perf_counter() - started
    progress(f"  platform started in {start_seconds:.1f} s")
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=300) as http:
            await sign_in(http)
            timed = await time_calls(http, calls(now, sample), repeat, progress)
            streamed = []
            if whole_exports:
                month = next(c.params for c in calls(now, sample) if c.name == "export aggregates CSV: this month")
                for name, path, params in (("export log CSV: all", "/exports/requests", {"format": "csv"}),
                                           ("export aggregates CSV: this month", "/exports/aggregates", month)):
                    streamed.append(await stream_whole(http, name, path, params))
                    progress(f"  {name}: whole in {streamed[-1].seconds:.1f} s")
    finally:
        server.should_exit = True
        await serving
    return PageRun(start_seconds, timed, streamed)


def report(title: str, found: PageRun, limit: float) -> bool:
    print(f"\n{title}: the dashboard's calls over HTTP, {len(found.timed[0].seconds)} runs each "
          f"(exports: to the first row); platform start-up {found.start_seconds:.1f} s")
    print(f"{'page':<16} {'call':<42} {'p50 ms':>8} {'max ms':>8} {'KiB':>8}  result")
    ok = True
    for t in found.timed:
        passed = t.worst < limit
        ok &= passed or not t.call.page_call
        verdict = "pass" if passed else f"FAIL (>= {limit:g} s)" if t.call.page_call else "(no page's call)"
        print(f"{t.call.page:<16} {t.call.name:<42} {t.p50 * 1000:>8.1f} {t.worst * 1000:>8.1f} "
              f"{t.size / 1024:>8.1f}  {verdict}")
    for s in found.streamed:
        print(f"whole export: {s.name}: first row {s.first_row * 1000:.0f} ms, {s.rows:,} lines, "
              f"{s.size / 2**20:,.1f} MiB in {s.seconds:.1f} s ({s.rows / s.seconds:,.0f} lines/s, "
              f"{s.size / 2**20 / s.seconds:,.1f} MiB/s)")
    return ok
