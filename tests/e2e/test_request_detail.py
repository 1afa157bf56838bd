"""The request detail of real requests: routing attempts after a failover, and prompts stored only when
the operator turns that on (with it off, no prompt or answer text reaches the database file)."""

from __future__ import annotations

import signal
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from .harness import Client, Platform, ask, wait_until

ADMIN_TOKEN = "adm-e2e-request-detail"
SECRET_WORD = "zebraquartzmarmalade"  # in every prompt, and so in every echoed answer


@pytest.fixture
def platform_env() -> dict[str, str]:
    return {"ARENAHUB_RECORD_FLUSH_SECONDS": "0.2", "ARENAHUB_ADMIN_TOKEN": ADMIN_TOKEN}


def admin_get(platform: Platform, path: str, **params: Any) -> httpx.Response:
    return httpx.get(platform.url + "/api/admin" + path, params=params,
                     headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10)


def detail_of(platform: Platform, request_id: str) -> dict[str, Any]:
    """The request's detail, once its record is written."""
    return wait_until(lambda: (r := admin_get(platform, f"/requests/{request_id}")).status_code == 200 and r.json(),
                      10, f"the record of request {request_id}")


def send_everything(consumer: openai.OpenAI) -> list[str]:
    """An answered, a streamed, a refused and a broken request, each carrying SECRET_WORD; their ids."""
    ids = []
    raw = consumer.chat.completions.with_raw_response.create(model="e2e-alpha", messages=ask(f"hello {SECRET_WORD}"))
    assert SECRET_WORD in (raw.parse().choices[0].message.content or "")
    ids.append(raw.headers["x-request-id"])
    raw = consumer.chat.completions.with_raw_response.create(model="e2e-alpha", messages=ask(f"again {SECRET_WORD}"),
                                                             stream=True)
    assert SECRET_WORD in "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
    ids.append(raw.headers["x-request-id"])
    with pytest.raises(openai.BadRequestError) as refused:
        consumer.chat.completions.create(model="e2e-alpha", messages=ask(f"{SECRET_WORD} [[status=400]]"))
    ids.append(refused.value.response.headers["x-request-id"])
    raw = consumer.chat.completions.with_raw_response.create(
        model="e2e-alpha", messages=ask(f"{SECRET_WORD} more words here [[error_after=2]]"), stream=True)
    with pytest.raises(openai.APIError):
        list(raw.parse())
    ids.append(raw.headers["x-request-id"])
    return ids


def stored_bytes(platform: Platform) -> bytes:
    """Everything the platform wrote to disk: its SQLite files (with the WAL) and its logs."""
    folder = Path(platform.database_url.split("///", 1)[1]).parent
    files = [p for p in folder.iterdir() if p.is_file() and p.name.startswith("platform")]
    assert any(p.name == "platform.db" for p in files)
    return b"".join(p.read_bytes() for p in files)


def stop_cleanly(platform: Platform) -> None:
    assert platform.stop() in (0, -signal.SIGTERM)  # the last records are flushed on the way out


def test_with_prompt_storage_off_no_prompt_or_answer_reaches_the_database(
        platform: Platform, consumer: openai.OpenAI, start_client: Callable[..., Client]) -> None:
    start_client()
    ids = send_everything(consumer)
    for request_id in ids:
        body = detail_of(platform, request_id)
        assert body["content"] is None and body["content_stored"] is False
        assert SECRET_WORD not in str(body)
    refused = detail_of(platform, ids[2])  # the upstream refused it (HTTP 400)
    # The error the consumer got is the platform's; the client's own words are in its attempt, cleaned.
    assert refused["status"] == 400 and refused["detail"]["error"].startswith("The client serving this request")
    assert [(a["outcome"], a["error"]) for a in refused["detail"]["attempts"]] == [
        ("refused", "scripted failure with status 400")]
    broken = detail_of(platform, ids[3])
    assert broken["detail"]["error"].startswith("The client serving this request")
    assert [(a["outcome"], a["code"], a["error"]) for a in broken["detail"]["attempts"]] == [
        ("error", "scripted", "scripted mid-stream failure")]
    stop_cleanly(platform)
    assert SECRET_WORD.encode() not in stored_bytes(platform)


@pytest.mark.parametrize("platform_env", [{"ARENAHUB_RECORD_FLUSH_SECONDS": "0.2", "ARENAHUB_ADMIN_TOKEN": ADMIN_TOKEN,
                                           "ARENAHUB_STORE_PROMPTS": "true"}])
def test_with_prompt_storage_on_the_detail_shows_prompt_and_answer(
        platform: Platform, consumer: openai.OpenAI, start_client: Callable[..., Client]) -> None:
    start_client()
    ids = send_everything(consumer)
    answered = detail_of(platform, ids[0])
    assert answered["content_stored"] is True
    assert answered["content"] == {"prompt": f"user: hello {SECRET_WORD}", "answer": f"Echo: hello {SECRET_WORD}"}
    streamed = detail_of(platform, ids[1])
    assert streamed["content"]["answer"] == f"Echo: again {SECRET_WORD}"
    broken = detail_of(platform, ids[3])  # what the consumer got before the break
    assert broken["content"]["answer"] == f"Echo: {SECRET_WORD}"
    assert admin_get(platform, "/settings").json()["values"]["store_prompts"] is True
    stop_cleanly(platform)
    assert SECRET_WORD.encode() in stored_bytes(platform)  # the control: the scan above would see it


def test_a_failed_over_request_lists_both_attempts(platform: Platform, consumer: openai.OpenAI,
                                                   start_client: Callable[..., Client]) -> None:
    clients = [start_client(name="a"), start_client(name="b")]
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(lambda: consumer.chat.completions.with_raw_response.create(
            model="e2e-alpha", messages=ask("patience pays [[first_ms=2000]]")))
        first = wait_until(lambda: next((c for c in clients if c.status()["active_requests"]), None), 5,
                           "a client to take the request")
        first.kill()
        raw = future.result(timeout=15)
    survivor = next(c for c in clients if c is not first)
    assert raw.parse().choices[0].message.content == "Echo: patience pays"
    body = detail_of(platform, raw.headers["x-request-id"])
    assert body["status"] == 200 and body["attempts"] == 2 and body["client_id"] == survivor.client_id
    attempts = body["detail"]["attempts"]
    assert [(a["client_id"], a["client_name"], a["outcome"]) for a in attempts] == [
        (first.client_id, first.name, "disconnected"), (survivor.client_id, survivor.name, "ok")]
    assert attempts[0]["code"] == "client_disconnected" and attempts[0]["error"]
    assert attempts[1]["ms"] >= 1900  # the survivor took its two seconds
    log = admin_get(platform, "/requests", client_id=survivor.client_id).json()["data"]
    assert [row["id"] for row in log] == [body["id"]] and log[0]["attempts"] == 2
