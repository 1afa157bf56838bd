"""The dashboard's data API in process, on both databases: overview, summaries, the request log and its
detail, streamed exports, validation, OpenAPI; and the detail of real requests over the in-process tunnel
(routing attempts, the error, prompts stored only when turned on)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from arenahub.platform.records import RequestRecord
from arenahub.platform.storage.analytics import RECORD_COLUMNS
from arenahub.protocol import frames
from tests.platform.support import (
    answer,
    chat_in_background,
    connected,
    eventually,
    next_request,
    platform_of,
    serving,
)

TOKEN = "adm-analytics-token"
STATUSES = [200, 200, 200, 429, 502, 400]
RECENT = 30  # records in the last hour; OLD more, three days ago
OLD = 6


@pytest.fixture
def admin(database_url: str) -> Iterator[TestClient]:
    with serving(database_url, TOKEN, record_flush_seconds=0.05) as http:
        yield http


@pytest.fixture
def checker(tmp_path: Any) -> Iterator[TestClient]:
    """For validation, which happens before any query: SQLite only."""
    with serving(f"sqlite+aiosqlite:///{tmp_path / 'checks.db'}", TOKEN, record_flush_seconds=0.05) as http:
        yield http


class Seeded:
    def __init__(self, key_a: str, key_b: str, client_id: str, records: list[RequestRecord]) -> None:
        self.key_a, self.key_b, self.client_id, self.records = key_a, key_b, client_id, records
        self.recent = [r for r in records if r.id.startswith("r")]

    def json(self, record: RequestRecord) -> dict[str, Any]:
        return {**vars(record), "created_at": record.created_at.isoformat()}


@pytest.fixture
def seeded(admin: TestClient) -> Seeded:
    """Two keys, one client, RECENT records over the last 30 minutes and OLD three days ago."""
    key_a = admin.post("/api/admin/keys", json={"name": "alpha"}).json()["id"]
    key_b = admin.post("/api/admin/keys", json={"name": "beta"}).json()["id"]
    client_id = admin.post("/api/admin/clients", json={"name": "box-one"}).json()["client_id"]
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    records = []
    for i in range(RECENT + OLD):
        status = STATUSES[i % len(STATUSES)]
        created = now - dt.timedelta(minutes=i + 1) if i < RECENT else now - dt.timedelta(days=3, minutes=i)
        failed_over = status == 502
        records.append(RequestRecord(
            id=f"{'r' if i < RECENT else 'o'}{i:03d}", created_at=created, key_id=key_a if i % 2 else key_b,
            client_id=None if status == 429 else client_id, model="m1" if i % 3 else "m2", stream=i % 2 == 0,
            status=status, error_code=None if status == 200 else f"e{status}", latency_ms=100.0 + i,
            ttft_ms=50.0, prompt_tokens=10, completion_tokens=20, attempts=2 if failed_over else 1, cost=1000,
            detail={"attempts": [{"client_id": "cl_gone", "outcome": "timeout", "code": "upstream_timeout",
                                  "error": "no answer began within 1 s", "ms": 1000.5},
                                 {"client_id": client_id, "outcome": "error", "code": "e502",
                                  "error": "bridge said no, with a comma", "ms": 3.25}],
                    "error": "bridge said no, with a comma"} if failed_over else None))
    platform = platform_of(admin)
    for record in records:
        platform.writer.add(RequestRecord(**vars(record)))
    admin.portal.call(platform.writer.flush)
    return Seeded(key_a, key_b, client_id, records)


def error_of(response: Any, status: int = 400) -> dict[str, Any]:
    assert response.status_code == status, response.text
    return response.json()["error"]


# -- overview and summaries ---------------------------------------------------------------------

def test_overview_of_each_period_with_filters_and_the_live_state(admin: TestClient, seeded: Seeded) -> None:
    for period, bucket, buckets in (("hour", 60, 60), ("day", 900, 96), ("week", 3600, 168)):
        r = admin.get("/api/admin/analytics/overview", params={"period": period})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["bucket_seconds"] == bucket and len(body["series"]) == buckets
        totals = body["totals"]
        assert totals["requests"] == RECENT + (OLD if period == "week" else 0)
        assert sum(p["requests"] for p in body["series"]) == totals["requests"]
        assert totals["errors"]["429"] == sum(1 for r in seeded.records if r.status == 429
                                              and (period == "week" or r in seeded.recent))
        assert totals["success_rate"] == pytest.approx(0.5) and totals["p50_ms"] is not None
        assert body["live"] == {"connected_clients": 0, "healthy_clients": 0, "active_requests": 0,
                                "queue_depth": 0}
    point = next(p for p in r.json()["series"] if p["requests"])
    assert {"t", "requests", "success_rate", "p50_ms", "p95_ms", "ttft_avg_ms", "requests_per_minute",
            "tokens_per_minute", "errors", "cost"} <= set(point)
    # filtered by client, key and model
    mine = admin.get("/api/admin/analytics/overview", params={"client_id": seeded.client_id}).json()
    assert mine["totals"]["requests"] == sum(1 for r in seeded.recent if r.client_id)
    both = admin.get("/api/admin/analytics/overview", params={"key_id": seeded.key_a, "model": "m2"}).json()
    assert both["totals"]["requests"] == sum(1 for r in seeded.recent if r.key_id == seeded.key_a and r.model == "m2")
    assert admin.get("/api/admin/analytics/overview", params={"model": "nothing"}).json()["totals"]["requests"] == 0


def test_summaries_by_client_key_and_model_carry_names(admin: TestClient, seeded: Seeded) -> None:
    by_client = admin.get("/api/admin/analytics/summaries", params={"by": "client"}).json()
    rows = {row["id"]: row for row in by_client["data"]}
    assert set(rows) == {seeded.client_id, None}
    assert rows[seeded.client_id]["name"] == "box-one" and rows[None]["name"] is None
    assert rows[None]["requests"] == sum(1 for r in seeded.recent if r.client_id is None)
    by_key = admin.get("/api/admin/analytics/summaries", params={"by": "key"}).json()["data"]
    assert {row["name"]: row["requests"] for row in by_key} == {"alpha": RECENT // 2, "beta": RECENT // 2}
    by_model = admin.get("/api/admin/analytics/summaries", params={"by": "model"}).json()["data"]
    assert [(row["id"], row["name"]) for row in by_model] == [("m1", "m1"), ("m2", "m2")]  # busiest first
    # a period of whole days: the old records too; dates, naive times (UTC) and zones all work
    today = dt.datetime.now(dt.UTC).date()
    week = {"since": str(today - dt.timedelta(days=6)), "until": str(today + dt.timedelta(days=1)), "by": "key"}
    assert sum(row["requests"] for row in admin.get("/api/admin/analytics/summaries", params=week)
               .json()["data"]) == RECENT + OLD
    naive = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)).replace(tzinfo=None).isoformat()
    for since in (naive, naive + "+00:00", (dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)).astimezone(
            dt.timezone(dt.timedelta(hours=5))).isoformat()):
        answer = admin.get("/api/admin/analytics/summaries", params={"by": "client", "since": since}).json()
        assert sum(row["requests"] for row in answer["data"]) == RECENT, since
    one = admin.get("/api/admin/analytics/summaries", params={"by": "model", "key_id": seeded.key_b}).json()["data"]
    assert sum(row["requests"] for row in one) == RECENT // 2


@pytest.mark.parametrize("path, params, param", [
    ("/analytics/overview", {"period": "month"}, "period"),
    ("/analytics/overview", {"colour": "blue"}, "colour"),
    ("/analytics/summaries", {"by": "colour"}, "by"),
    ("/analytics/summaries", {"since": "yesterday"}, "since"),
    ("/analytics/summaries", {"until": "2026-13-01"}, "until"),
    ("/analytics/summaries", {"since": "2026-05-02", "until": "2026-05-01"}, "since"),
    ("/analytics/summaries", {"since": "2026-05-01T00:00:00Z", "until": "2026-05-01"}, "since"),
    ("/requests", {"limit": "0"}, "limit"),
    ("/requests", {"limit": "501"}, "limit"),
    ("/requests", {"limit": "ten"}, "limit"),
    ("/requests", {"status": "teapot"}, "status"),
    ("/requests", {"status": "99"}, "status"),
    ("/requests", {"stream": "maybe"}, "stream"),
    ("/requests", {"cursor": "not-a-cursor"}, "cursor"),
    ("/requests", {"cursor": "yesterday|r001"}, "cursor"),
    ("/requests", {"since": "2026-05-02", "until": "2026-05-02"}, "since"),
    ("/exports/requests", {"format": "xml"}, "format"),
    ("/exports/requests", {"status": "9xx"}, "status"),
    ("/exports/aggregates", {"format": "xlsx"}, "format"),
    ("/exports/aggregates", {"since": "2026-05-03", "until": "2026-05-01"}, "since"),
])
def test_bad_queries_are_400_naming_the_parameter(checker: TestClient, path: str, params: dict[str, str],
                                                  param: str) -> None:
    err = error_of(checker.get("/api/admin" + path, params=params))
    assert err["param"] == param and err["message"] and err["type"] == "invalid_request_error"


def test_a_parameter_given_twice_is_400(checker: TestClient) -> None:
    err = error_of(checker.get("/api/admin/requests?limit=5&limit=6"))
    assert err["param"] == "limit"


# -- the request log -------------------------------------------------------------------------------

def test_request_log_pages_through_everything_newest_first(admin: TestClient, seeded: Seeded) -> None:
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        r = admin.get("/api/admin/requests", params={"limit": 7, **({"cursor": cursor} if cursor else {})})
        assert r.status_code == 200, r.text
        page = r.json()
        assert len(page["data"]) <= 7
        seen += page["data"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    expected = sorted(seeded.records, key=lambda rec: (rec.created_at, rec.id), reverse=True)
    assert [row["id"] for row in seen] == [rec.id for rec in expected]
    first = seen[0]
    assert set(RECORD_COLUMNS) | {"key_name", "client_name"} == set(first)
    assert first["key_name"] in ("alpha", "beta")
    names = {row["id"]: row["client_name"] for row in seen}
    assert {names[rec.id] for rec in seeded.records if rec.client_id} == {"box-one"}
    assert {names[rec.id] for rec in seeded.records if not rec.client_id} == {None}


FILTERS: list[tuple[dict[str, str], Any]] = [
    ({"status": "success"}, lambda r, s: r.status == 200),
    ({"status": "error"}, lambda r, s: r.status >= 400),
    ({"status": "4xx"}, lambda r, s: 400 <= r.status < 500),
    ({"status": "5xx"}, lambda r, s: r.status >= 500),
    ({"status": "429"}, lambda r, s: r.status == 429),
    ({"error_code": "e502"}, lambda r, s: r.error_code == "e502"),
    ({"stream": "true"}, lambda r, s: r.stream),
    ({"stream": "false", "model": "m2"}, lambda r, s: not r.stream and r.model == "m2"),
    ({"key_id": "A"}, lambda r, s: r.key_id == s.key_a),
    ({"client_id": "C", "status": "success"}, lambda r, s: r.client_id == s.client_id and r.status == 200),
    ({"id": "r004"}, lambda r, s: r.id == "r004"),
    ({"id": "nope"}, lambda r, s: False),
    ({"since": "D-1"}, lambda r, s: r in s.recent),
    ({"until": "D-1"}, lambda r, s: r not in s.recent),
]


def test_request_log_filters(admin: TestClient, seeded: Seeded) -> None:
    day_ago = (dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).replace(tzinfo=None).isoformat()
    values = {"A": seeded.key_a, "C": seeded.client_id, "D-1": day_ago}
    for params, keep in FILTERS:
        params = {k: values.get(v, v) for k, v in params.items()}
        got = admin.get("/api/admin/requests", params={**params, "limit": 500}).json()
        expected = {r.id for r in seeded.records if keep(r, seeded)}
        assert {row["id"] for row in got["data"]} == expected and got["next_cursor"] is None, params


def test_request_detail_names_the_clients_of_its_attempts(admin: TestClient, seeded: Seeded) -> None:
    err = error_of(admin.get("/api/admin/requests/no-such-request"), 404)
    assert err["code"] == "request_not_found"
    failed = next(r for r in seeded.records if r.status == 502)
    body = admin.get(f"/api/admin/requests/{failed.id}").json()
    assert (body["id"], body["status"], body["attempts"]) == (failed.id, 502, 2)
    assert body["key_name"] in ("alpha", "beta") and body["client_name"] == "box-one"
    assert body["detail"]["error"] == "bridge said no, with a comma"
    attempts = body["detail"]["attempts"]
    assert [(a["client_id"], a["client_name"], a["outcome"], a["code"], a["ms"]) for a in attempts] == [
        ("cl_gone", None, "timeout", "upstream_timeout", 1000.5), (seeded.client_id, "box-one", "error", "e502", 3.25)]
    assert body["content"] is None and body["content_stored"] is False
    # answered at the first attempt: no detail stored, its one attempt shown
    ok = next(r for r in seeded.records if r.status == 200)
    body = admin.get(f"/api/admin/requests/{ok.id}").json()
    assert body["detail"] == {"attempts": [{"client_id": seeded.client_id, "client_name": "box-one", "outcome": "ok",
                                            "code": None, "error": None, "ms": ok.latency_ms}], "error": None}
    refused = next(r for r in seeded.records if r.status == 429)  # no client, no detail: nothing to show
    assert admin.get(f"/api/admin/requests/{refused.id}").json()["detail"] == {"attempts": [], "error": None}


# -- exports --------------------------------------------------------------------------------------

def _streamed(admin: TestClient, path: str, params: dict[str, str]) -> tuple[Any, bytes]:
    with admin.stream("GET", "/api/admin" + path, params=params) as r:
        assert r.status_code == 200, r.read()
        chunks = list(r.iter_bytes())
        return r, b"".join(chunks)


def test_request_exports_stream_the_filtered_log_as_csv_and_json(admin: TestClient, seeded: Seeded) -> None:
    r, body = _streamed(admin, "/exports/requests", {"status": "error"})
    assert r.headers["content-type"].startswith("text/csv")
    disposition = r.headers["content-disposition"]
    assert disposition.startswith('attachment; filename="arenahub-requests-start-') and disposition.endswith('.csv"')
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    expected = sorted((rec for rec in seeded.records if rec.status >= 400), key=lambda rec: (rec.created_at, rec.id))
    assert [row["id"] for row in rows] == [rec.id for rec in expected]  # oldest first
    for row, rec in zip(rows, expected, strict=True):
        assert (int(row["status"]), row["key_id"], row["client_id"] or None, row["model"]) == (
            rec.status, rec.key_id, rec.client_id, rec.model)
        assert json.loads(row["detail"]) == rec.detail if rec.detail else row["detail"] == ""
        assert dt.datetime.fromisoformat(row["created_at"]) == rec.created_at
    r, body = _streamed(admin, "/exports/requests", {"format": "json", "since": "2020-01-01", "until": "2099-01-01",
                                                      "key_id": seeded.key_b})
    assert r.headers["content-type"] == "application/json"
    assert 'filename="arenahub-requests-20200101T000000Z-20990101T000000Z.json"' in r.headers["content-disposition"]
    data = json.loads(body)
    assert sorted(row["id"] for row in data) == sorted(rec.id for rec in seeded.records if rec.key_id == seeded.key_b)
    failed = next(row for row in data if row["status"] == 502)
    assert failed["detail"]["attempts"][0]["outcome"] == "timeout"
    _, empty = _streamed(admin, "/exports/requests", {"format": "json", "id": "nothing"})
    assert json.loads(empty) == []


def test_aggregate_exports_stream_the_minutes_of_a_period(admin: TestClient, seeded: Seeded) -> None:
    r, body = _streamed(admin, "/exports/aggregates", {})  # the last 24 hours
    assert r.headers["content-type"].startswith("text/csv")
    assert 'filename="arenahub-aggregates-' in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    assert sum(int(row["requests"]) for row in rows) == RECENT
    assert sum(int(row["successes"]) for row in rows) == sum(1 for rec in seeded.recent if rec.status == 200)
    assert {row["client_id"] for row in rows} == {seeded.client_id, ""}
    _, body = _streamed(admin, "/exports/aggregates", {"format": "json", "since": "2020-01-01",
                                                        "client_id": seeded.client_id, "model": "m1"})
    data = json.loads(body)
    assert sum(row["requests"] for row in data) == sum(1 for rec in seeded.records
                                                       if rec.client_id == seeded.client_id and rec.model == "m1")
    assert {row["model"] for row in data} == {"m1"}


def test_openapi_lists_the_routes_and_their_query_parameters(checker: TestClient) -> None:
    doc = checker.get("/api/admin/openapi.json").json()
    paths = doc["paths"]
    params = {path: {p["name"]: p for p in paths[path]["get"].get("parameters", [])}
              for path in ("/api/admin/analytics/overview", "/api/admin/analytics/summaries", "/api/admin/requests",
                           "/api/admin/requests/{request_id}", "/api/admin/exports/requests",
                           "/api/admin/exports/aggregates", "/api/admin/settings")}
    assert set(params["/api/admin/analytics/overview"]) == {"period", "client_id", "key_id", "model"}
    assert params["/api/admin/analytics/overview"]["period"]["schema"]["enum"] == ["day", "hour", "week"]
    assert set(params["/api/admin/requests"]) == {"since", "until", "client_id", "key_id", "model", "status",
                                                  "error_code", "stream", "id", "limit", "cursor"}
    assert params["/api/admin/requests"]["limit"]["schema"] == {"type": "integer", "minimum": 1, "maximum": 500}
    assert set(params["/api/admin/exports/requests"]) == set(params["/api/admin/requests"]) - {"limit", "cursor"} | {
        "format"}
    assert {"by", "since", "until"} <= set(params["/api/admin/analytics/summaries"])
    assert {"format", "since", "until"} <= set(params["/api/admin/exports/aggregates"])
    assert params["/api/admin/requests/{request_id}"]["request_id"]["in"] == "path"
    assert all(p["description"] for ps in params.values() for p in ps.values() if p["in"] == "query")
    assert set(paths["/api/admin/settings"]) == {"get", "patch"}
    assert "store_prompts" in doc["components"]["schemas"]["SettingsPatch"]["properties"]


# -- real requests over the in-process tunnel ----------------------------------------------------------

def stored_detail(http: TestClient, request_id: str) -> dict[str, Any]:
    return eventually(lambda: (r := http.get(f"/api/admin/requests/{request_id}")).status_code == 200 and r.json(),
                      what=f"the record of {request_id}")


def test_a_failed_over_request_shows_both_attempts_and_prompts_only_when_stored(admin: TestClient) -> None:
    key = admin.post("/api/admin/keys", json={"name": "k"}).json()["key"]
    first = admin.post("/api/admin/clients", json={"name": "first"}).json()
    second = admin.post("/api/admin/clients", json={"name": "second"}).json()
    # the priority strategy makes the order certain: first, then second
    assert admin.patch("/api/admin/settings", json={"routing_strategy": "priority"}).status_code == 200
    admin.patch(f"/api/admin/clients/{first['client_id']}", json={"priority": 10})
    with connected(admin, first["client_id"], first["api_key"]) as ws1, \
            connected(admin, second["client_id"], second["api_key"]) as ws2:
        thread, out = chat_in_background(admin, key, "a secret recipe for soup")
        request = next_request(ws1)
        ws1.send_bytes(frames.encode(frames.Error(id=request.id, code="bridge_unreachable", message="no bridge here",
                                                  status=502, retryable=True)))
        answer(ws2, next_request(ws2), "boil water")
        thread.join(10)
        response = out["response"]
        assert response.status_code == 200, response.text
        body = stored_detail(admin, response.headers["x-request-id"])
        assert body["status"] == 200 and body["attempts"] == 2 and body["client_name"] == "second"
        attempts = body["detail"]["attempts"]
        assert [(a["client_name"], a["outcome"], a["code"]) for a in attempts] == [
            ("first", "error", "bridge_unreachable"), ("second", "ok", None)]
        assert attempts[0]["error"] == "no bridge here" and all(a["ms"] >= 0 for a in attempts)
        assert body["content"] is None and body["content_stored"] is False
        assert "soup" not in json.dumps(body)

        # turned on: the next request's prompt and answer are stored, and shown
        assert admin.patch("/api/admin/settings", json={"store_prompts": True}).json()["values"]["store_prompts"]
        thread, out = chat_in_background(admin, key, "tell me about tea")
        answer(ws1, next_request(ws1), "it is hot")
        thread.join(10)
        body = stored_detail(admin, out["response"].headers["x-request-id"])
        assert body["content"] == {"prompt": "user: tell me about tea", "answer": "it is hot"}
        assert body["content_stored"] is True and body["detail"]["attempts"][0]["outcome"] == "ok"

        # a request no client can answer in time fails with its error in the detail
        assert admin.patch("/api/admin/settings", json={"first_byte_timeout_seconds": 0.2, "total_timeout_seconds": 0.2,
                                                        "store_prompts": None}).status_code == 200
        thread, out = chat_in_background(admin, key, "are you there")
        next_request(ws1)
        thread.join(10)
        failed = out["response"]
        assert failed.status_code == 504, failed.text
        body = stored_detail(admin, failed.headers["x-request-id"])
        assert body["content"] is None and body["content_stored"] is False
        assert body["detail"]["error"] == failed.json()["error"]["message"]
        assert [(a["client_name"], a["outcome"]) for a in body["detail"]["attempts"]] == [("first", "timeout")]
