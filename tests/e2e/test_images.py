"""Image generation through the real programs: the official ``openai`` package asks the platform, which
routes to a client that declares the images capability, which relays to its bridge (a local upstream
serving an image model). Billed per image on the platform's own count, and recorded."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import openai
import pytest

from arenahub.tools.local_upstream import _PNG

from .harness import Client, Platform, Stack, consumer_for, read_records, wait_until

IMAGE_MODEL = "e2e-painter"
CHAT_MODEL = "e2e-alpha"
PER_IMAGE = 40_000  # micro-USD: 0.04 USD an image


@pytest.fixture
def priced_platform(stack: Stack, platform_db: str) -> Platform:
    platform = stack.platform(platform_db, {"ARENAHUB_RECORD_FLUSH_SECONDS": "0.1"})
    # An image costs its image price and nothing else (no prompt price), so that every cost is easy to check.
    resp = httpx.put(f"{platform.url}/api/admin/prices/{IMAGE_MODEL}", headers=platform.admin_headers, timeout=5.0,
                     json={"prompt": "0", "completion": "0", "image": "0.04"})
    assert resp.status_code == 200, resp.text
    return platform


def capabilities(platform: Platform, client: Client) -> list[str]:
    resp = httpx.get(f"{platform.url}/api/admin/clients/{client.client_id}", headers=platform.admin_headers,
                     timeout=5.0)
    live = resp.json().get("live") or {}
    return live.get("capabilities") or []


def record_of(platform_db: str, request_id: str) -> dict[str, Any]:
    return wait_until(lambda: next((r for r in read_records(platform_db) if r["id"] == request_id), None), 20,
                      f"the record of request {request_id}", interval=0.1)


def balance(stack: Stack, platform_db: str, key_id: str) -> int:
    return stack.admin("show-key", key_id, database_url=platform_db)["credit"]["balance_micros"]


def test_images_through_platform_client_and_bridge(stack: Stack, priced_platform: Platform,
                                                   platform_db: str) -> None:
    platform = priced_platform
    bridge = stack.upstream([f"{IMAGE_MODEL}:image", CHAT_MODEL])
    # Both serve the image model; only the second declares the images capability.
    plain = stack.client(platform, bridge, name="plain", capabilities=["chat", "models"])
    painter = stack.client(platform, bridge, name="painter")
    wait_until(lambda: "images" in capabilities(platform, painter), 10, "the painter's images capability")
    assert "images" not in capabilities(platform, plain)

    created = stack.admin("create-key", "--name", "artist", "--credit", "1", database_url=platform_db)
    with consumer_for(platform, created["key"]) as consumer:
        raw = consumer.images.with_raw_response.generate(model=IMAGE_MODEL, prompt="a red square", n=2)
        images = raw.parse()
        assert [image.url for image in images.data or []] == [f"https://images.example/{IMAGE_MODEL}/{i}.png"
                                                               for i in range(2)]
        assert raw.headers["x-arenahub-client"] == painter.client_id
        first = raw.headers["x-request-id"]

        b64 = consumer.images.generate(model=IMAGE_MODEL, prompt="a dot", response_format="b64_json")
        assert b64.data is not None and base64.b64decode(b64.data[0].b64_json or "") == _PNG

        for _ in range(4):  # never the client without the capability
            again = consumer.images.with_raw_response.generate(model=IMAGE_MODEL, prompt="again")
            assert again.headers["x-arenahub-client"] == painter.client_id

    with consumer_for(platform, stack.create_key(platform, "chatter")["key"]) as chatter:  # chat is as before
        assert chatter.chat.completions.create(model=CHAT_MODEL, messages=[{"role": "user", "content": "hi"}])

    record = record_of(platform_db, first)
    assert (record["status"], record["images"], record["cost"]) == (200, 2, 2 * PER_IMAGE)
    assert record["client_id"] == painter.client_id and record["model"] == IMAGE_MODEL
    # The ledger reaches the database in batches (ARENAHUB_RECORD_FLUSH_SECONDS): wait for the last one.
    wanted = 1_000_000 - (2 + 1 + 4) * PER_IMAGE
    wait_until(lambda: balance(stack, platform_db, created["key_id"]) == wanted or None, 20, "the balance")

    # A key whose credit buys one image is refused two, and the refusal is recorded.
    poor = stack.admin("create-key", "--name", "poor", "--credit", "0.05", database_url=platform_db)
    with consumer_for(platform, poor["key"]) as consumer:
        with pytest.raises(openai.APIStatusError) as refused:
            consumer.images.generate(model=IMAGE_MODEL, prompt="two", n=2)
        assert refused.value.status_code == 402 and refused.value.body["code"] == "insufficient_quota"  # type: ignore[index]
        assert consumer.images.generate(model=IMAGE_MODEL, prompt="one", n=1).data
    wait_until(lambda: any(r["key_id"] == poor["key_id"] and r["status"] == 402 for r in read_records(platform_db)),
               20, "the record of the refusal")
    assert balance(stack, platform_db, poor["key_id"]) == 50_000 - PER_IMAGE

    # Without the painter, nobody that serves the model can make images: a clear 503 at once.
    painter.stop()
    platform.wait_health(lambda h: h["clients_connected"] == 1, "the painter gone")
    with consumer_for(platform, created["key"]) as consumer:
        with pytest.raises(openai.InternalServerError) as none:
            consumer.images.generate(model=IMAGE_MODEL, prompt="anyone?")
    assert none.value.status_code == 503
    message = none.value.body["message"]  # type: ignore[index]
    assert "'images' capability" in message and IMAGE_MODEL in message


def test_bad_image_requests_are_openai_errors(stack: Stack, platform: Platform, platform_db: str) -> None:
    bridge = stack.upstream([f"{IMAGE_MODEL}:image"])
    stack.client(platform, bridge)
    key = stack.create_key(platform)["key"]
    with consumer_for(platform, key) as consumer:
        with pytest.raises(openai.BadRequestError) as bad:
            consumer.images.generate(model=IMAGE_MODEL, prompt="x", n=11)
        assert bad.value.body["param"] == "n"  # type: ignore[index]
        with pytest.raises(openai.NotFoundError):
            consumer.images.generate(model="no-such-model", prompt="x")
        # The bridge refuses what is not an image model; the consumer hears it as a 400.
        with pytest.raises(openai.BadRequestError):
            consumer.images.generate(model=IMAGE_MODEL, prompt="[[status=400]]")
