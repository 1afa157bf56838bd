"""GET /api/admin/usage/summary: what the usage page shows, equal to the full statement summed up."""

import datetime as dt
from collections import Counter

from tests.platform.admin_api.support import serve, served_earlier
from tests.platform.support import eventually


def _summed(lines, field):
    out = Counter()
    for line in lines:
        out[line[field]] += line["cost_micros"]
    return dict(out)


def test_the_summary_adds_up_the_statement_and_keeps_the_newest_lines(admin):
    k1 = admin.post("/api/admin/keys", json={"name": "one", "credit": "10"}).json()["id"]
    k2 = admin.post("/api/admin/keys", json={"name": "two", "credit": "10"}).json()["id"]
    c1 = admin.post("/api/admin/clients", json={"name": "c1"}).json()["client_id"]
    c2 = admin.post("/api/admin/clients", json={"name": "c2"}).json()["client_id"]
    midnight = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    serve(admin, k1, "req_1", client_id=c1, model="m-a", prompt=10, completion=5, charge=100)
    serve(admin, k1, "req_2", client_id=c2, model="m-b", prompt=1, completion=1, charge=7)
    serve(admin, k2, "req_3", client_id=c2, model="m-a", prompt=3, completion=4, charge=50)
    for days in (1, 2, 3):  # whole days before today, and a ragged end three days ago
        served_earlier(admin, k1, f"req_old_{days}", midnight - dt.timedelta(days=days, hours=-6), client_id=c1,
                       model="m-a", prompt=100, completion=100, charge=1000 * days)
    eventually(lambda: admin.get("/api/admin/usage").json()["total"]["requests"] == 6, what="usage persisted")

    period = {"since": (midnight - dt.timedelta(days=3, hours=-2)).isoformat(),
              "until": dt.datetime.now(dt.UTC).isoformat()}
    for filters in ({}, {"key": k1}, {"client": c2}, {"key": k1, "client": c1}):
        full = admin.get("/api/admin/usage", params={**period, **filters}).json()
        summary = admin.get("/api/admin/usage/summary", params={**period, **filters}).json()
        assert summary["filters"] == full["filters"] and summary["total"] == full["total"], filters
        assert {x["key_id"]: x["cost_micros"] for x in summary["by_key"]} == _summed(full["by_key"], "key_id")
        assert {x["client_id"]: x["cost_micros"] for x in summary["by_client"]} == _summed(full["by_client"],
                                                                                           "client_id")
        assert {x["model"]: x["cost_micros"] for x in summary["by_model"]} == _summed(full["by_key"], "model")
        assert {x["day"]: x["cost_micros"] for x in summary["by_day"]} == _summed(full["by_key"], "day")
        newest = sorted(full["by_key"], key=lambda x: (x["day"], x["key_id"], x["model"]))
        newest.sort(key=lambda x: x["day"], reverse=True)
        assert summary["lines"] == newest and summary["lines_total"] == len(full["by_key"]), filters

    everything = admin.get("/api/admin/usage/summary", params={"lines": 2}).json()
    assert everything["total"]["requests"] == 6 and everything["total"]["cost_micros"] == 6157
    assert [x["day"] for x in everything["lines"]] == [midnight.date().isoformat()] * 2
    assert everything["lines_total"] == 6
    assert admin.get("/api/admin/usage/summary", params={"lines": 0}).json()["lines"] == []


def test_the_summary_refuses_what_it_cannot_read(admin):
    for params, param in (({"lines": "-1"}, "lines"), ({"lines": "5001"}, "lines"), ({"lines": "many"}, "lines"),
                          ({"since": "2026-05-02T00:00:00Z", "until": "2026-05-01T00:00:00Z"}, "since"),
                          ({"since": "2026-05-01T00:00:00"}, "since"), ({"keys": "k1"}, None)):
        r = admin.get("/api/admin/usage/summary", params=params)
        assert r.status_code == 400, (params, r.text)
        error = r.json()["error"]
        assert error["type"] == "invalid_request_error" and (param is None or error["param"] == param), (params, error)
