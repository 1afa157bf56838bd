"""The operator's model catalogue (issue 11, item 2) on a real platform process, against a hostile client
(hostile.py) that claims to serve ``gpt-4o`` to get that traffic.

Off (the default), every model a registered client offers is served. On, the claim waits for the
operator: consumers do not see the model and get a 404, until the operator approves the client (over
the admin API, or with ``arenahub admin models`` from another process); a refusal takes it back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import pytest

from .harness import Platform, Stack, ask
from .hostile import HostileClient

CLAIMED = "gpt-4o"
OWN = "hostile/own-model:1.0"


def admin_api(platform: Platform, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(method, platform.url + "/api/admin" + path, headers=platform.admin_headers, timeout=10,
                         **kwargs)


def catalogue(platform: Platform) -> dict[str, Any]:
    r = admin_api(platform, "GET", "/catalogue")
    assert r.status_code == 200, r.text
    return r.json()


async def consumer_key(stack: Stack, platform: Platform) -> str:
    return (await asyncio.to_thread(stack.create_key, platform))["key"]


async def listed(api: openai.AsyncOpenAI) -> set[str]:
    return {m.id async for m in api.models.list()}


async def served_by_hostile(api: openai.AsyncOpenAI, hostile: HostileClient, model: str) -> None:
    call = asyncio.ensure_future(api.chat.completions.with_raw_response.create(model=model, messages=ask("hi")))
    request = await hostile.next_request()
    await hostile.answer(request, f"{model} says hi")
    raw = await call
    assert raw.headers["x-arenahub-client"] == hostile.client_id
    assert raw.parse().choices[0].message.content == f"{model} says hi"


@pytest.fixture
def platform_env() -> dict[str, str]:
    return {"ARENAHUB_RECORD_FLUSH_SECONDS": "0.2"}


@pytest.fixture
async def hostile(stack: Stack, platform: Platform) -> AsyncIterator[HostileClient]:
    client = await HostileClient.register(stack, platform, name="claims-gpt-4o")
    await client.connect([CLAIMED, OWN])
    try:
        yield client
    finally:
        await client.close()


async def test_off_by_default_every_offered_model_is_served(stack: Stack, platform: Platform,
                                                            hostile: HostileClient) -> None:
    key = await consumer_key(stack, platform)
    async with openai.AsyncOpenAI(base_url=platform.v1, api_key=key, max_retries=0, timeout=30) as api:
        assert await listed(api) == {CLAIMED, OWN}
        await served_by_hostile(api, hostile, CLAIMED)
    view = await asyncio.to_thread(catalogue, platform)
    assert view["enabled"] is False
    assert {p["model"] for p in view["pending"]} == {CLAIMED, OWN}  # what would wait, were it on


@pytest.mark.parametrize("platform_env", [{"ARENAHUB_MODEL_CATALOGUE": "true"}])
async def test_on_a_claimed_model_waits_for_the_operators_approval(stack: Stack, platform: Platform,
                                                                    hostile: HostileClient) -> None:
    key = await consumer_key(stack, platform)
    async with openai.AsyncOpenAI(base_url=platform.v1, api_key=key, max_retries=0, timeout=30) as api:
        # The claim reaches no consumer: not in /v1/models, and a request for it is a 404.
        assert await listed(api) == set()
        with pytest.raises(openai.NotFoundError) as missing:
            await api.chat.completions.create(model=CLAIMED, messages=ask("hi"))
        assert missing.value.code == "model_not_found"
        assert "not listed it in the platform's model catalogue" in missing.value.message
        assert hostile.requests.empty()

        # The operator sees the offers waiting, on the catalogue and on the client.
        view = await asyncio.to_thread(catalogue, platform)
        assert view["enabled"] is True and view["models"] == []
        assert view["pending"] == [{"client_id": hostile.client_id, "client_name": "claims-gpt-4o", "model": m}
                                   for m in (CLAIMED, OWN)]
        shown = await asyncio.to_thread(admin_api, platform, "GET", f"/clients/{hostile.client_id}")
        assert shown.json()["live"]["pending_models"] == [CLAIMED, OWN] and shown.json()["live"]["models"] == []

        # Approved over the admin API: served at once.
        decision = {"model": OWN, "client_id": hostile.client_id, "approved": True}
        r = await asyncio.to_thread(admin_api, platform, "PUT", "/catalogue/decisions", json=decision)
        assert r.status_code == 200 and r.json()["serving"] is True, r.text
        assert await listed(api) == {OWN}
        await served_by_hostile(api, hostile, OWN)

        # Approved with `arenahub admin models` from another process: applied within about a second.
        await asyncio.to_thread(stack.admin, "models", "approve", CLAIMED, hostile.client_id,
                                database_url=platform.database_url)
        for _ in range(50):
            if CLAIMED in await listed(api):
                break
            await asyncio.sleep(0.1)
        assert await listed(api) == {CLAIMED, OWN}, "the CLI's approval was not applied within 5 s"
        await served_by_hostile(api, hostile, CLAIMED)

        # Refused: no longer served, and the offer does not wait again.
        decision = {"model": CLAIMED, "client_id": hostile.client_id, "approved": False}
        r = await asyncio.to_thread(admin_api, platform, "PUT", "/catalogue/decisions", json=decision)
        assert r.status_code == 200 and r.json()["serving"] is False, r.text
        assert await listed(api) == {OWN}
        with pytest.raises(openai.APIStatusError) as refused:
            await api.chat.completions.create(model=CLAIMED, messages=ask("hi"))
        assert refused.value.status_code == 503  # a listed model, but no connected client may serve it
        assert "no connected client is approved for the model" in refused.value.message
        view = await asyncio.to_thread(catalogue, platform)
        assert view["pending"] == [] and view["models"][0]["refused"] == [hostile.client_id]

        # Turned off (a live setting): everything offered is served again.
        r = await asyncio.to_thread(admin_api, platform, "PATCH", "/settings", json={"model_catalogue": False})
        assert r.status_code == 200 and r.json()["values"]["model_catalogue"] is False
        assert await listed(api) == {CLAIMED, OWN}
        await served_by_hostile(api, hostile, CLAIMED)
