"""Live settings (/api/admin/settings): read, change, reset, validation, persistence across a restart,
a second platform on the same database following a change, and the platform really using the values."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from arenahub.platform.live_settings import LIVE, ROW, SettingsPatch
from arenahub.platform.records import RequestRecord
from arenahub.platform.routing import STRATEGIES
from arenahub.platform.settings import PlatformSettings
from arenahub.platform.storage.schema import request_contents, request_records
from arenahub.platform.storage.settings_store import put_setting
from tests.platform.support import (
    answer,
    chat_in_background,
    connected,
    eventually,
    next_request,
    platform_of,
    serving,
)

TOKEN = "adm-live-settings"
NAMES = {"routing_strategy", "queue_size", "queue_timeout_seconds", "first_byte_timeout_seconds",
         "idle_timeout_seconds", "total_timeout_seconds", "max_attempts", "record_retention_days", "store_prompts",
         "sticky_routing", "model_catalogue"}


@pytest.fixture
def admin(database_url: str) -> Iterator[TestClient]:
    with serving(database_url, TOKEN) as http:
        yield http


@pytest.fixture
def checker(tmp_path: Any) -> Iterator[TestClient]:
    with serving(f"sqlite+aiosqlite:///{tmp_path / 'checks.db'}", TOKEN) as http:
        yield http


def test_the_patch_type_covers_exactly_the_live_settings() -> None:
    assert set(SettingsPatch.__struct_fields__) == set(LIVE) == NAMES


def test_read_change_and_reset(admin: TestClient) -> None:
    shown = admin.get("/api/admin/settings").json()
    defaults = PlatformSettings()
    assert shown["values"] == shown["defaults"] == {name: getattr(defaults, name) for name in NAMES}
    assert shown["overridden"] == [] and shown["choices"] == {"routing_strategy": ["", *STRATEGIES]}
    assert set(shown["descriptions"]) == NAMES and all(shown["descriptions"].values())
    assert shown["values"]["store_prompts"] is False

    r = admin.patch("/api/admin/settings", json={"queue_size": 7, "routing_strategy": "round_robin",
                                                 "store_prompts": True, "queue_timeout_seconds": 2})
    assert r.status_code == 200, r.text
    changed = r.json()
    assert changed["overridden"] == ["queue_size", "queue_timeout_seconds", "routing_strategy", "store_prompts"]
    assert (changed["values"]["queue_size"], changed["values"]["routing_strategy"]) == (7, "round_robin")
    assert changed["defaults"] == shown["defaults"]
    platform = platform_of(admin)
    for settings in (platform.settings, platform.dispatcher.settings):  # applied at once, everywhere
        assert (settings.queue_size, settings.queue_timeout_seconds, settings.store_prompts) == (7, 2.0, True)
    assert platform.dispatcher.strategy_name == "round_robin"
    assert admin.get("/api/admin/settings").json() == changed
    assert admin.patch("/api/admin/settings", json={}).json() == changed  # nothing sent: nothing changes

    back = admin.patch("/api/admin/settings", json={"queue_size": None, "routing_strategy": None}).json()
    assert back["overridden"] == ["queue_timeout_seconds", "store_prompts"]
    assert back["values"]["queue_size"] == defaults.queue_size and back["values"]["routing_strategy"] == ""
    assert platform.dispatcher.settings.queue_size == defaults.queue_size
    assert platform.dispatcher.strategy_name == "least_load"


@pytest.mark.parametrize("body, param", [
    ({"queue_size": -1}, "queue_size"),
    ({"queue_size": "ten"}, "queue_size"),
    ({"queue_size": 1.5}, "queue_size"),
    ({"queue_size": True}, "queue_size"),
    ({"routing_strategy": "fast"}, "routing_strategy"),
    ({"max_attempts": 0}, "max_attempts"),
    ({"max_attempts": 11}, "max_attempts"),
    ({"first_byte_timeout_seconds": 0}, "first_byte_timeout_seconds"),
    ({"first_byte_timeout_seconds": 5e-324}, "first_byte_timeout_seconds"),  # a timeout that times out everything
    ({"first_byte_timeout_seconds": 0.009}, "first_byte_timeout_seconds"),
    ({"first_byte_timeout_seconds": 3601}, "first_byte_timeout_seconds"),
    ({"idle_timeout_seconds": -1}, "idle_timeout_seconds"),
    ({"idle_timeout_seconds": 1e-9}, "idle_timeout_seconds"),
    ({"total_timeout_seconds": 1e9}, "total_timeout_seconds"),
    ({"total_timeout_seconds": 5e-324}, "total_timeout_seconds"),
    ({"total_timeout_seconds": 3601}, "total_timeout_seconds"),
    ({"queue_timeout_seconds": "30"}, "queue_timeout_seconds"),
    ({"queue_timeout_seconds": 3601}, "queue_timeout_seconds"),
    ({"queue_size": 100_001}, "queue_size"),
    ({"record_retention_days": -3}, "record_retention_days"),
    ({"record_retention_days": 3651}, "record_retention_days"),
    ({"record_retention_days": 2.5}, "record_retention_days"),
    ({"store_prompts": "yes"}, "store_prompts"),
    ({"sticky_routing": 1}, "sticky_routing"),
    ({"admin_token": "x"}, "admin_token"),
    ({"queue_size": 5, "colour": "blue"}, "colour"),
])
def test_bad_changes_name_the_field_and_change_nothing(checker: TestClient, body: dict[str, Any], param: str) -> None:
    r = checker.patch("/api/admin/settings", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param and r.json()["error"]["message"]
    assert checker.get("/api/admin/settings").json()["overridden"] == []


def test_a_body_that_is_not_an_object_is_400(checker: TestClient) -> None:
    r = checker.patch("/api/admin/settings", content=b"{nope")
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
    assert checker.patch("/api/admin/settings", json=[1]).status_code == 400
    assert checker.patch("/api/admin/settings", content=b"").status_code == 400  # the body is required


BOUNDS = {"queue_size": (0, 100_000), "queue_timeout_seconds": (0, 3600), "first_byte_timeout_seconds": (0.01, 3600),
          "idle_timeout_seconds": (0.01, 3600), "total_timeout_seconds": (0.01, 3600), "max_attempts": (1, 10),
          "record_retention_days": (0, 3650)}


def test_a_live_setting_has_the_bounds_of_its_flag_and_variable() -> None:
    from arenahub.platform import settings

    for name, bounds in BOUNDS.items():
        assert settings.BOUNDS[name] == bounds, name


def test_every_numeric_setting_has_its_bounds_in_the_openapi_document(checker: TestClient) -> None:
    schema = checker.get("/api/admin/openapi.json").json()["components"]["schemas"]["SettingsPatch"]
    assert set(schema["properties"]) == NAMES and schema["additionalProperties"] is False
    for name, (low, high) in BOUNDS.items():
        value, null = schema["properties"][name]["anyOf"]  # null drops the override
        assert (value["minimum"], value["maximum"], null) == (low, high, {"type": "null"}), name


@pytest.mark.parametrize("name", sorted(BOUNDS))
def test_the_bounds_themselves_are_accepted(checker: TestClient, name: str) -> None:
    for value in BOUNDS[name]:
        r = checker.patch("/api/admin/settings", json={name: value})
        assert r.status_code == 200 and r.json()["values"][name] == value, r.text
    checker.patch("/api/admin/settings", json={name: None})


def test_overrides_outlive_a_restart_and_win_over_flags(database_url: str) -> None:
    # The "flags": what the platform is started with; the stored override wins, null goes back to them.
    with serving(database_url, TOKEN, queue_size=5, max_attempts=2) as http:
        http.patch("/api/admin/settings", json={"queue_size": 9, "sticky_routing": True})
    with serving(database_url, TOKEN, queue_size=5, max_attempts=2) as http:
        shown = http.get("/api/admin/settings").json()
        assert (shown["values"]["queue_size"], shown["defaults"]["queue_size"]) == (9, 5)
        assert shown["values"]["max_attempts"] == 2 and shown["overridden"] == ["queue_size", "sticky_routing"]
        platform = platform_of(http)
        assert platform.dispatcher.settings.queue_size == 9 and platform.settings.sticky_routing is True
        assert http.patch("/api/admin/settings", json={"queue_size": None}).json()["values"]["queue_size"] == 5


def test_stored_values_that_are_no_longer_valid_are_ignored(database_url: str) -> None:
    with serving(database_url, TOKEN) as http:
        engine = platform_of(http).engine
        http.portal.call(put_setting, engine, ROW, {"queue_size": -5, "max_attempts": 4, "gone": 1,
                                                    "first_byte_timeout_seconds": 5e-324})
    with serving(database_url, TOKEN) as http:
        shown = http.get("/api/admin/settings").json()
        assert shown["overridden"] == ["max_attempts"] and shown["values"]["queue_size"] == 100
        assert platform_of(http).dispatcher.settings.first_byte_timeout_seconds == 120


def test_a_second_platform_on_the_database_follows_within_two_seconds(database_url: str) -> None:
    with serving(database_url, TOKEN) as one, serving(database_url, TOKEN) as two:
        started = time.monotonic()
        assert one.patch("/api/admin/settings", json={"routing_strategy": "priority",
                                                      "queue_size": 3}).status_code == 200
        eventually(lambda: platform_of(two).dispatcher.settings.queue_size == 3, timeout=2.0,
                   what="the other platform to follow")
        assert time.monotonic() - started < 2.0
        assert platform_of(two).dispatcher.strategy_name == "priority"
        assert two.get("/api/admin/settings").json()["overridden"] == ["queue_size", "routing_strategy"]
        # and back, the other way round
        two.patch("/api/admin/settings", json={"queue_size": None})
        eventually(lambda: platform_of(one).settings.queue_size == 100, timeout=2.0, what="the first to follow")


# -- the platform really uses them -------------------------------------------------------------------

def test_the_dispatcher_uses_a_changed_queue_size_at_once(checker: TestClient) -> None:
    key = checker.post("/api/admin/keys", json={"name": "k"}).json()["key"]
    made = checker.post("/api/admin/clients", json={"name": "one"}).json()
    dispatcher = platform_of(checker).dispatcher
    with connected(checker, made["client_id"], made["api_key"], max_concurrent=1) as ws:
        busy, busy_out = chat_in_background(checker, key)
        held = next_request(ws)  # the only slot is taken
        checker.patch("/api/admin/settings", json={"queue_size": 1, "queue_timeout_seconds": 30})
        waiting, waiting_out = chat_in_background(checker, key)
        eventually(lambda: dispatcher.queued == 1, what="a request waiting in the queue")
        full = checker.post("/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                            json={"model": "m1", "messages": [{"role": "user", "content": "hi"}]})
        assert full.status_code == 429 and full.json()["error"]["code"] == "queue_full", full.text
        checker.patch("/api/admin/settings", json={"queue_size": 0})  # no queue: refused at once
        refused = checker.post("/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                               json={"model": "m1", "messages": [{"role": "user", "content": "hi"}]})
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "no_client_available"
        answer(ws, held)
        answer(ws, next_request(ws))  # the one that waited gets the slot
        busy.join(10)
        waiting.join(10)
        assert busy_out["response"].status_code == waiting_out["response"].status_code == 200


def test_the_dispatcher_routes_with_a_changed_strategy(checker: TestClient) -> None:
    key = checker.post("/api/admin/keys", json={"name": "k"}).json()["key"]
    first = checker.post("/api/admin/clients", json={"name": "first"}).json()
    second = checker.post("/api/admin/clients", json={"name": "second"}).json()
    checker.patch(f"/api/admin/clients/{first['client_id']}", json={"priority": 10})
    registry = platform_of(checker).registry
    with connected(checker, first["client_id"], first["api_key"]) as ws1, \
            connected(checker, second["client_id"], second["api_key"]) as ws2:
        sockets = {first["client_id"]: ws1, second["client_id"]: ws2}

        def served_by() -> str:
            thread, out = chat_in_background(checker, key)
            client_id = eventually(lambda: next((c for c in sockets if registry.get(c).active), None),
                                   what="a client to get the request")
            answer(sockets[client_id], next_request(sockets[client_id]))
            thread.join(10)
            assert out["response"].status_code == 200
            return client_id

        checker.patch("/api/admin/settings", json={"routing_strategy": "priority"})
        assert {served_by() for _ in range(3)} == {first["client_id"]}
        checker.patch("/api/admin/settings", json={"routing_strategy": "round_robin"})
        assert {served_by() for _ in range(2)} == {first["client_id"], second["client_id"]}


async def _seed_old(engine: Any, created: dt.datetime) -> None:
    async with engine.begin() as conn:
        await conn.execute(request_records.insert().values(
            id="old", created_at=created, key_id="k", client_id=None, model="m", stream=False, status=200,
            error_code=None, latency_ms=1.0, ttft_ms=None, prompt_tokens=1, completion_tokens=1, attempts=1))
        await conn.execute(request_contents.insert().values(request_id="old", created_at=created, prompt="p",
                                                            answer="a"))


async def _count(engine: Any) -> tuple[int, int]:
    async with engine.connect() as conn:
        records = (await conn.execute(sa.select(sa.func.count()).select_from(request_records))).scalar_one()
        contents = (await conn.execute(sa.select(sa.func.count()).select_from(request_contents))).scalar_one()
    return records, contents


def test_a_shorter_retention_deletes_old_records_and_contents_at_once(tmp_path: Any) -> None:
    with serving(f"sqlite+aiosqlite:///{tmp_path / 'r.db'}", TOKEN, record_retention_days=0) as http:
        engine = platform_of(http).engine
        http.portal.call(_seed_old, engine, dt.datetime.now(dt.UTC) - dt.timedelta(days=10))
        writer_record = RequestRecord(id="new", created_at=dt.datetime.now(dt.UTC), key_id="k", client_id=None,
                                      model="m", stream=False, status=200, error_code=None, latency_ms=1.0,
                                      ttft_ms=None, prompt_tokens=1, completion_tokens=1, attempts=1)
        platform_of(http).writer.add(writer_record)
        http.portal.call(platform_of(http).writer.flush)
        assert http.portal.call(_count, engine) == (2, 1)
        http.patch("/api/admin/settings", json={"record_retention_days": 5})
        eventually(lambda: http.portal.call(_count, engine) == (1, 0), what="the old record and content deleted")


def test_the_dashboard_form_offers_the_bounds_the_api_checks() -> None:
    """The settings page's number inputs (settings.js) take exactly the range the API accepts."""
    import re
    from pathlib import Path

    import msgspec

    from arenahub.platform.live_settings import SettingsPatch

    page = (Path(__file__).parents[2] / "arenahub/platform/dashboard/static/pages/settings.js").read_text()
    shown = {name: (float(low), float(high)) for name, low, high in
             re.findall(r'\["(\w+)", "[^"]*", \{ type: "number", min: ([\d.]+), max: ([\d.]+)', page)}
    checked = {}
    for field in msgspec.inspect.type_info(SettingsPatch).fields:
        for option in field.type.types:  # type: ignore[attr-defined]
            if isinstance(option, msgspec.inspect.Metadata) and hasattr(option.type, "ge"):
                checked[field.name] = (float(option.type.ge), float(option.type.le))
    assert shown and shown == checked


def test_a_wrong_choice_is_told_the_choices(checker: TestClient) -> None:
    r = checker.patch("/api/admin/settings", json={"routing_strategy": "fastestt"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "routing_strategy"
    assert "one of: '', 'fastest'," in r.json()["error"]["message"], r.text


@pytest.mark.parametrize("name", ["first_byte_timeout_seconds", "idle_timeout_seconds", "total_timeout_seconds",
                                  "header_timeout_seconds", "body_timeout_seconds", "queue_timeout_seconds"])
def test_a_flag_or_environment_value_out_of_bounds_stops_the_start(name: str) -> None:
    from arenahub.platform.settings import PlatformSettings

    with pytest.raises(ValueError, match=name):
        PlatformSettings(**{name: -1.0})


def test_an_environment_value_out_of_bounds_names_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    from arenahub.platform.settings import PlatformSettings

    monkeypatch.setenv("ARENAHUB_TOTAL_TIMEOUT_SECONDS", "86400")  # the live settings' bound is 3600
    said = r"^ARENAHUB_TOTAL_TIMEOUT_SECONDS: total_timeout_seconds must be from 0.01 to 3600"
    with pytest.raises(ValueError, match=said):
        PlatformSettings.from_env()


@pytest.mark.parametrize(("variable", "value", "said"), [
    ("ARENAHUB_MAX_BODY_BYTES", "-5", "max_body_bytes must be from 1024 to"),
    ("ARENAHUB_MAX_ATTEMPTS", "0", "max_attempts must be from 1 to 10"),
    ("ARENAHUB_MISSED_HEARTBEATS", "1000", "missed_heartbeats must be from 1 to 100"),
    ("ARENAHUB_RECORD_FLUSH_SECONDS", "0", "record_flush_seconds must be above 0"),
    ("ARENAHUB_RECORD_BATCH_SIZE", "0", "record_batch_size must be from 1"),
    ("ARENAHUB_SHUTDOWN_GRACE_SECONDS", "nan", "shutdown_grace_seconds must be from 0 to 3600, got nan"),
    ("ARENAHUB_BREAKER_COOLDOWN_SECONDS", "inf", "breaker_cooldown_seconds must be from 0 to 86400, got inf"),
    ("ARENAHUB_MAX_CONNECTIONS", "-1", "max_connections must be from 0"),
    # The same bounds as a live change of the setting (the dashboard's Settings page).
    ("ARENAHUB_QUEUE_SIZE", "100001", "queue_size must be from 0 to 100000"),
    ("ARENAHUB_RECORD_RETENTION_DAYS", "3651", "record_retention_days must be from 0 to 3650"),
    ("ARENAHUB_IDLE_TIMEOUT_SECONDS", "0", "idle_timeout_seconds must be from 0.01 to 3600"),
    ("ARENAHUB_LOG_LEVEL", "loud", "log_level 'loud' is not one of debug, info, warning, error, critical"),
    ("ARENAHUB_QUEUE_SIZE", "ten", "ARENAHUB_QUEUE_SIZE='ten' is not a valid int"),
])
def test_every_number_and_word_is_checked_and_the_variable_named(monkeypatch: pytest.MonkeyPatch, variable: str,
                                                                 value: str, said: str) -> None:
    from arenahub.platform.settings import PlatformSettings

    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError) as info:
        PlatformSettings.from_env()
    assert str(info.value).startswith(variable) and said in str(info.value), str(info.value)


def test_a_bad_variable_stops_the_platform_with_one_line(tmp_path) -> None:
    import os
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "arenahub", "platform", "--database-url",
                           f"sqlite+aiosqlite:///{tmp_path / 'p.db'}"], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "ARENAHUB_MAX_ATTEMPTS": "99"})
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "arenahub platform: ARENAHUB_MAX_ATTEMPTS: max_attempts must be from 1 to 10, got 99"], done.stderr
    assert not (tmp_path / "p.db").exists()
