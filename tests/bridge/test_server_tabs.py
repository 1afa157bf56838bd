"""The bridge and its tabs: the checks a tab's page gets, `doctor`, `update-models`, files picked up
without a restart, and the legacy retry mode with ID capture."""

from __future__ import annotations

import asyncio
import json

import pytest

from arenahub.cli import main as cli_main
from tests.bridge.fake_tab import (  # noqa: F401 (fixture)
    IMAGE_ID,
    MESSAGE,
    MODEL_ID,
    SESSION,
    chat,
    fail,
    ok,
    running,
    until,
)

STOP = 'ad:{"finishReason":"stop"}'


def check(status, name):
    return next(c for c in status["checks"] if c["name"] == name)


async def test_a_connecting_tab_is_checked_and_the_result_reaches_the_heartbeat(running):
    async with running.tab() as tab:
        await running.ready(tab)
        status = await running.status()
        heartbeat = running.state.session.to_status(1)
    assert [c["name"] for c in status["checks"]] == ["tab", "userscript", "page", "signed_in", "recaptcha", "models",
                                                     "uploads"]
    assert all(c["ok"] is True for c in status["checks"]), status["checks"]
    assert check(status, "models")["detail"] == "initialModels found: 3 models"
    assert status["tabs"][0]["usable"] and status["tabs"][0]["signed_in"] and status["tabs"][0]["models_in_page"] == 3
    assert heartbeat.state == "ready" and [c.name for c in heartbeat.checks][-1] == "uploads"


@pytest.mark.parametrize("facts, state, failing", [
    ({"page": "challenge", "title": "Just a moment..."}, "cloudflare_challenge", "page"),
    ({"page": "block", "title": "Attention Required! | Cloudflare"}, "blocked", "page"),
    ({"sitekey_found": False}, "site_changed", "recaptcha"),
    ({"grecaptcha": False}, "site_changed", "recaptcha"),
    ({"auth_cookies": []}, "signed_out", "signed_in"),
])
async def test_what_the_page_shows_sets_the_state(running, facts, state, failing):
    async with running.tab(facts=facts) as tab:
        await until(lambda: running.state.session.checks and running.state.session.checks[-1].name in
                    ("page", "uploads"), "the checks")
        await asyncio.sleep(0.1)
        status = await running.status()
        r = await running.http.post("/v1/chat/completions", json=chat())
    assert status["state"] == state and status["action"]
    assert check(status, failing)["ok"] is False and check(status, failing)["advice"]
    assert r.status_code == 503 and tab.tasks == []


@pytest.mark.bridge_config(arena_mode="direct-battle")
async def test_signed_out_is_only_a_warning_in_a_mode_that_needs_no_account(running):
    async with running.tab([ok('a0:"x"', STOP)], facts={"auth_cookies": []}) as tab:
        await running.ready(tab)
        status = await running.status()
        r = await running.http.post("/v1/chat/completions", json=chat())
    assert check(status, "signed_in")["ok"] is None and status["state"] == "ready"
    assert r.status_code == 200 and tab.tasks[0]["mode"] == "direct-battle"


async def test_doctor_reports_item_by_item_and_makes_one_tiny_call(running, capsys):
    async with running.tab([ok('a0:"OK"', STOP)]) as tab:
        await running.ready(tab)
        r = await running.http.post("/internal/doctor", json={"probe": True})
        result = r.json()
        assert result["ok"] is True
        assert result["call"] == {"name": "call", "ok": True, "detail": "gpt-test answered: 'OK'"}
        assert tab.tasks[0]["content"] == "Reply with the single word OK."
        code = await asyncio.to_thread(cli_main, ["bridge", "doctor", "--bridge-url", str(running.http.base_url),
                                                  "--no-call"])
    out = capsys.readouterr().out
    assert code == 0 and "[ok  ] recaptcha" in out and "The bridge can work." in out and len(tab.tasks) == 1


async def test_doctor_fails_with_the_reason_and_what_to_do(running, capsys):
    async with running.tab([fail(status=403, body='{"error":"recaptcha validation failed"}')]) as tab:
        await running.ready(tab)
        code = await asyncio.to_thread(cli_main, ["bridge", "doctor", "--bridge-url", str(running.http.base_url)])
    out = capsys.readouterr().out
    assert code == 1 and "[FAIL] call" in out and "verification_required" in out and "Security Verification" in out
    assert "state: verification_required" in out


async def test_doctor_without_a_tab_exits_non_zero(running, capsys):
    code = await asyncio.to_thread(cli_main, ["bridge", "doctor", "--bridge-url", str(running.http.base_url)])
    out = capsys.readouterr().out
    assert code == 1 and "[FAIL] tab" in out and "https://arena.ai" in out


async def test_doctor_when_no_bridge_runs(capsys, tmp_path):
    code = await asyncio.to_thread(cli_main, ["bridge", "doctor", "--bridge-url", "http://127.0.0.1:9"])
    assert code == 2 and "cannot reach the bridge" in capsys.readouterr().err


async def test_update_models_writes_the_selectable_models_and_the_running_bridge_picks_them_up(
        running, tmp_path, capsys):
    models = tmp_path / "models.json"
    retired = "0199e8e9-0000-7000-8000-00000000dead"
    models.write_text(json.dumps({"gpt-test": MODEL_ID, "my-alias": MODEL_ID, "old-model": retired,
                                  "own-images": "null:image"}))
    await until(lambda: "old-model" in running.state.files.models, "the edit to be picked up")
    async with running.tab() as tab:
        await running.ready(tab)
        config = str(tmp_path / "config.jsonc")
        code = await asyncio.to_thread(cli_main, ["bridge", "update-models", "--config", config, "--bridge-url",
                                                  str(running.http.base_url), "--dry-run"])
        assert code == 0 and "nothing written" in capsys.readouterr().out
        assert "old-model" in json.loads(models.read_text())
        code = await asyncio.to_thread(cli_main, ["bridge", "update-models", "--config", config, "--bridge-url",
                                                  str(running.http.base_url)])
    out = capsys.readouterr().out
    assert code == 0 and "new: img-test" in out and "removed (no longer on arena.ai): old-model" in out
    assert "left out: 1 not selectable" in out
    assert json.loads(models.read_text()) == {"gpt-test": MODEL_ID, "img-test": IMAGE_ID + ":image",
                                              "my-alias": MODEL_ID, "own-images": "null:image"}
    every = json.loads((tmp_path / "available_models.json").read_text())
    assert {m["name"]: m["selectable"] for m in every} == {"gpt-test": True, "img-test": True, "hidden": False}
    await until(lambda: "old-model" not in running.state.files.models, "the new file to be picked up")
    r = await running.http.get("/v1/models")
    assert [m["id"] for m in r.json()["data"]] == ["gpt-test", "img-test", "my-alias", "own-images"]


async def test_a_broken_models_json_keeps_the_last_good_one(running, tmp_path, caplog):
    (tmp_path / "models.json").write_text('{"gpt-test": "not-a-uuid"}')
    await asyncio.sleep(1.5)
    r = await running.http.get("/v1/models")
    assert [m["id"] for m in r.json()["data"]] == ["gpt-test", "img-test"]
    assert any("kept the previous settings" in rec.getMessage() for rec in caplog.records)


async def test_update_models_without_models_in_the_page_says_so(running, tmp_path, capsys):
    async with running.tab(flight="<html>nothing here</html>") as tab:
        await until(lambda: running.state.tabs.tabs() and running.state.tabs.tabs()[0].models_in_page == 0, "checks")
        code = await asyncio.to_thread(cli_main, ["bridge", "update-models", "--config", str(tmp_path / "config.jsonc"),
                                                  "--bridge-url", str(running.http.base_url)])
        status = await running.status()
    assert code == 1 and "No model list found in the arena.ai page" in capsys.readouterr().err
    assert check(status, "models")["ok"] is False
    assert tab.tasks == []


# --- Legacy mode: the 2025 retry of captured ids ------------------------------------------------

@pytest.mark.bridge_config(upstream_api="legacy-retry", id_updater_last_mode="direct_chat")
async def test_legacy_mode_retries_the_captured_conversation(running):
    history = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    async with running.tab([ok('a0:"Hello"', STOP)]) as tab:
        await running.ready(tab)
        r = await running.http.post("/v1/chat/completions", json=chat(messages=history))
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "Hello"
    (task,) = tab.tasks
    assert task["call"] == "retry" and task["session_id"] == SESSION and task["message_id"] == MESSAGE
    assert task["model_id"] == MODEL_ID
    assert [(m["role"], m["content"], m["position"]) for m in task["messages"]] == [
        ("system", "Be brief.", "b"), ("user", "Hi", "a")]


@pytest.mark.bridge_config(upstream_api="legacy-retry")
async def test_legacy_mode_names_a_voted_message_and_foreign_ids(running):
    voted = '{"error":"Message already has feedback, cannot retry"}'
    foreign = f'{{"error":"User u does not have access to evaluation session {SESSION}"}}'
    async with running.tab([fail(status=400, body=voted), fail(status=401, body=foreign)]) as tab:
        await running.ready(tab)
        first = await running.http.post("/v1/chat/completions", json=chat())
        running.state.session.ids_changed()
        second = await running.http.post("/v1/chat/completions", json=chat())
        status = await running.status()
    assert first.json()["error"]["code"] == "message_has_feedback" and "capture-ids" in first.json()["error"]["message"]
    error = second.json()["error"]
    assert error["code"] == "lmarena_session_invalid" and "capture-ids" in error["message"]
    assert SESSION not in error["message"], "session ids are secrets"
    assert status["state"] == "session_invalid" and status["legacy"]["used"] is True


@pytest.mark.bridge_config(upstream_api="legacy-retry", session_id="", message_id="")
async def test_legacy_mode_without_captured_ids_and_then_with_them(running, tmp_path):
    async with running.tab([ok('b0:"now"', 'bd:{"finishReason":"stop"}')]) as tab:
        await running.ready(tab)
        r = await running.http.post("/v1/chat/completions", json=chat())
        assert r.status_code == 503 and r.json()["error"]["code"] == "session_not_captured"
        r = await running.http.post("/internal/start_id_capture", json={"mode": "battle", "target": "B"})
        assert r.status_code == 200 and r.json()["armed"]
        await until(lambda: tab.sent("arm_capture"), "the capture to be armed")
        new_s, new_m = "aaaaaaaa-2222-4333-8444-555555555555", "bbbbbbbb-7777-4888-9999-aaaaaaaaaaaa"
        await tab.send({"type": "ids_captured", "session_id": new_s, "message_id": new_m})
        r = await running.http.get("/internal/id_capture?wait=5")
        assert r.json()["captured"] and r.json()["session_id"] == new_s
        r = await running.http.post("/v1/chat/completions", json=chat())
    assert r.status_code == 200
    assert tab.tasks[0]["session_id"] == new_s and tab.tasks[0]["model_id"] is None  # battle: no model id
    assert {m["position"] for m in tab.tasks[0]["messages"]} == {"b"}


async def test_id_capture_questions_are_validated(running):
    r = await running.http.get("/internal/id_capture?wait=1")
    assert r.status_code == 404 and r.json()["error"]["code"] == "capture_not_armed"
    r = await running.http.post("/internal/start_id_capture", json={"mode": "sideways"})
    assert r.status_code == 400


@pytest.mark.parametrize("path", ["/internal/start_id_capture", "/internal/doctor"])
@pytest.mark.parametrize("body", [b"[]", b"nope", b'"x"', b"1"])
async def test_internal_calls_take_only_a_json_object(running, path, body):
    r = await running.http.post(path, content=body)
    assert r.status_code == 400 and "JSON object" in r.json()["error"]["message"]
