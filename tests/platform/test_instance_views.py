"""GET /api/admin/instances: each instance's state from its card (pure), and one instance without a
cluster, over the in-process app. The cluster's answer, with two real instances on Redis, is checked in
tests/browser/test_dashboard_instances.py."""

import datetime as dt
import time

import pytest

import arenahub
from arenahub.platform.admin.instance_views import instance_view
from arenahub.platform.cluster.instances import InstanceCard
from tests.platform.support import connected, platform_of, register, serving

TOKEN = "adm-instances"
NOW = 1_800_000_000.0


def card(**fields: object) -> InstanceCard:
    base: dict[str, object] = {"id": "east", "address": "0.0.0.0:8080", "url": "http://east:8080", "version": "1.2",
                               "started_at": NOW - 3600, "seen_at": NOW - 0.4, "clients": 3, "in_flight": 7}
    return InstanceCard(**{**base, **fields})  # type: ignore[arg-type]


@pytest.mark.parametrize("fields, state", [
    ({}, "serving"),
    ({"seen_at": NOW - 2.4}, "serving"),  # one card missed: the next is due
    ({"seen_at": NOW - 2.6}, "unreachable"),
    ({"draining": True}, "draining"),
    ({"draining": True, "seen_at": NOW - 4}, "draining"),  # the last thing it said
])
def test_an_instance_state_comes_from_its_card(fields: dict[str, object], state: str) -> None:
    assert instance_view(card(**fields), me="west", now=NOW, stale_after=2.5)["state"] == state


def test_an_instance_view_says_where_it_is_and_how_long_it_has_run() -> None:
    view = instance_view(card(), me="east", now=NOW, stale_after=2.5)
    assert view == {"id": "east", "this": True, "state": "serving", "address": "0.0.0.0:8080",
                    "url": "http://east:8080", "version": "1.2", "clients": 3, "in_flight": 7, "draining": False,
                    "started_at": dt.datetime.fromtimestamp(NOW - 3600, dt.UTC).isoformat(),
                    "uptime_seconds": 3600.0, "seen_at": dt.datetime.fromtimestamp(NOW - 0.4, dt.UTC).isoformat(),
                    "seen_seconds_ago": 0.4}
    assert instance_view(card(), me="west", now=NOW, stale_after=2.5)["this"] is False


def test_one_instance_without_a_cluster_lists_itself(backend: str, database_url: str) -> None:
    with serving(database_url, TOKEN, port=8123) as admin:
        me = platform_of(admin).instance_id
        answer = admin.get("/api/admin/instances").json()
        changes = "notified" if backend == "postgres" else "polled"  # PostgreSQL tells what the admin changed
        assert (answer["instance"], answer["shared_state"], answer["changes"]) == (me, "in_process", changes)
        [view] = answer["data"]
        assert (view["id"], view["this"], view["state"], view["version"]) == (me, True, "serving", arenahub.__version__)
        assert view["address"].endswith(":8123") and view["url"].endswith(":8123")
        assert (view["clients"], view["in_flight"]) == (0, 0)
        assert 0 <= view["uptime_seconds"] < 60 and view["seen_seconds_ago"] < 1

        client_id, api_key = register(admin, "here")
        with connected(admin, client_id, api_key):
            deadline = time.monotonic() + 5
            while admin.get("/api/admin/instances").json()["data"][0]["clients"] != 1:
                assert time.monotonic() < deadline, "the connected client was not counted"
                time.sleep(0.02)
            shown = admin.get(f"/api/admin/clients/{client_id}").json()
            assert shown["platform_instance"] == me
        assert admin.get("/api/admin/instances", headers={"Authorization": "Bearer wrong"}).status_code == 401
