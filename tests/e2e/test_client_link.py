"""The client's connection to the platform: a refused key, and a client that stops heartbeating."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import openai
import pytest

from .harness import Client, Platform, ask, wait_until

REFUSAL = "refusing a client: invalid_credentials"



def test_wrong_api_key_is_refused_once_and_not_retried(platform: Platform,
                                                       start_client: Callable[..., Client]) -> None:
    client = start_client(api_key="ck-this-is-not-the-key", expect_state="refused")

    status = client.status()
    assert status["connected"] is False
    assert status["refused"]["code"] == "invalid_credentials"
    assert "api_key" in status["refused"]["message"]
    assert "api_key" in status["last_error"]
    health = client.health()
    assert (health["connected"], health["healthy"]) == (False, False)
    assert platform.health()["clients_connected"] == 0

    # Its reconnect delay is at most 1 s: a client retrying in a loop would be refused again here.
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        assert client.status()["state"] == "refused"
        time.sleep(0.2)
    assert platform.log().count(REFUSAL) == 1
    assert client.status()["reconnect_count"] == 0

    # Asking it to register again makes exactly one more attempt, refused the same way.
    resp = httpx.post(client.url + "/platform/register", timeout=15)
    assert resp.status_code == 502
    assert resp.json()["registered"] is False
    assert resp.json()["state"] == "refused"
    assert "api_key" in resp.json()["error"]
    wait_until(lambda: platform.log().count(REFUSAL) == 2, 5, "the second refusal in the platform log")
    assert client.status()["state"] == "refused"


@pytest.fixture
def platform_env() -> dict[str, str]:
    return {"ARENAHUB_MISSED_HEARTBEATS": "2"}


def test_client_that_stops_heartbeating_is_dropped(platform: Platform, consumer: openai.OpenAI,
                                                   start_client: Callable[..., Client]) -> None:
    client = start_client(heartbeat_interval_seconds=0.5)
    assert consumer.chat.completions.create(model="e2e-alpha", messages=ask("hi")).choices

    # Frozen, it sends nothing, but its socket stays open: only the missed heartbeats tell.
    client.pause()
    paused_at = time.monotonic()
    platform.wait_health(lambda h: h["clients_connected"] == 0, "the silent client dropped", timeout=5)
    assert time.monotonic() - paused_at < 3.0  # 2 missed 0.5 s heartbeats, checked every 0.5 s
    assert "missed 2 heartbeats; dropping it" in platform.log()

    started = time.monotonic()
    with pytest.raises(openai.InternalServerError) as info:
        consumer.chat.completions.create(model="e2e-alpha", messages=ask("anyone?"))
    assert info.value.status_code == 503
    assert time.monotonic() - started < 1.0

    # Woken up, it finds its connection closed and comes back by itself.
    client.resume()
    client.wait_status(lambda s: s["state"] == "connected" and s["reconnect_count"] >= 1, "reconnected")
    platform.wait_health(lambda h: h["clients_connected"] == 1, "the client back")
    assert consumer.chat.completions.create(model="e2e-alpha", messages=ask("back")).choices[0].message.content \
        == "Echo: back"


def test_a_regenerated_key_disconnects_the_client_with_the_reason(platform: Platform, stack,
                                                                  start_client: Callable[..., Client],
                                                                  tmp_path) -> None:
    client = start_client()
    # `client-package` regenerates the key (the only way to hand out a usable one); the old one stops at once.
    stack.admin("client-package", client.client_id, "--platform-url", platform.url, "--output",
                str(tmp_path / "package.zip"), database_url=platform.database_url)
    status = client.wait_state("refused", timeout=15)
    assert status["refused"]["code"] == "invalid_credentials"
    assert "regenerated" in status["refused"]["message"]
    assert platform.health()["clients_connected"] == 0


def test_a_bridge_that_comes_up_late_is_offered_within_seconds(platform: Platform, stack) -> None:
    """A client started before its bridge says so, sends its figures at once, and offers the bridge's
    models as soon as it is up, not at its next heartbeat (30 s here)."""
    from .harness import Upstream, write_client_config

    late = Upstream(stack.workdir, "late-upstream", ["late-model"])  # its port is chosen, nothing listens yet
    stack.programs.append(late)
    account = stack.admin("create-client", "--name", "late", database_url=platform.database_url)
    config = write_client_config(stack.workdir / "late.config.jsonc", platform_url=platform.api_url,
                                 client_id=account["client_id"], api_key=account["api_key"], bridge_url=late.url,
                                 heartbeat_interval_seconds=30.0, max_concurrent_requests=2)
    client = Client(stack.workdir, "late", config, account["client_id"], account["api_key"])
    stack.programs.append(client)
    client.start()
    client.wait_http(client.url + "/health")
    client.wait_state("connected")
    wait_until(lambda: "offers no model yet" in client.log(), 5, "the client's warning")

    def stats() -> dict | None:  # its first heartbeat comes a second after it connects, not 30 s
        r = httpx.get(f"{platform.url}/api/admin/clients/{client.client_id}", headers=platform.admin_headers,
                      timeout=5)
        return (r.json().get("live") or {}).get("stats") if r.status_code == 200 else None
    assert wait_until(stats, 5, "the client's first figures")["memory_mb"] > 0
    late.start()
    late.wait_ready()
    started = time.monotonic()
    wait_until(lambda: "late-model" in platform.health()["models"], 15, "the late bridge's model")
    assert time.monotonic() - started < 5  # looked at every 2 s; the next heartbeat would be 30 s after connecting
