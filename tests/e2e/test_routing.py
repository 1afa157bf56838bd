"""Several clients behind one platform: the models they serve together, and how the load is spread."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest

from .harness import Client, Platform, Stack, ask, served_by, wait_until


def test_models_lists_the_union_of_connected_clients(stack: Stack, platform: Platform, consumer: openai.OpenAI,
                                                     start_client: Callable[..., Client]) -> None:
    a = start_client(name="a", upstream=stack.upstream(["m-shared", "m-only-a"], name="upstream-a"))
    b = start_client(name="b", upstream=stack.upstream(["m-shared", "m-only-b-1", "m-only-b-2"],
                                                       name="upstream-b"))

    models = consumer.models.list()
    assert sorted(m.id for m in models.data) == ["m-only-a", "m-only-b-1", "m-only-b-2", "m-shared"]
    assert {m.object for m in models.data} == {"model"}
    assert served_by(consumer, ask("x"), model="m-only-a")[0] == a.client_id
    assert served_by(consumer, ask("x"), model="m-only-b-2")[0] == b.client_id

    b.stop()
    platform.wait_health(lambda h: h["clients_connected"] == 1, "client b gone")
    assert sorted(m.id for m in consumer.models.list().data) == ["m-only-a", "m-shared"]


def test_two_clients_share_the_load(platform: Platform, consumer: openai.OpenAI,
                                    start_client: Callable[..., Client]) -> None:
    # Room for every request on either client, so only the routing decides where they go.
    a, b = start_client(name="a", max_concurrent=8), start_client(name="b", max_concurrent=8)
    n = 6
    # Each answer waits a little before it starts, so that all requests are in flight together.
    with ThreadPoolExecutor(n) as pool:
        results = list(pool.map(lambda i: served_by(consumer, ask(f"request {i} [[first_ms=600]]")),
                                range(n)))

    assert sorted(text for _, text in results) == sorted(f"Echo: request {i}" for i in range(n))
    counts = Counter(client for client, _ in results)
    assert set(counts) == {a.client_id, b.client_id}, counts
    assert abs(counts[a.client_id] - counts[b.client_id]) <= 1, counts  # least load first
    processed = {c.client_id: c.health()["stats"]["requests_processed"] for c in (a, b)}
    assert processed == dict(counts)


@pytest.mark.parametrize("platform_env", [{"ARENAHUB_QUEUE_SIZE": "0"}])  # no queue: refused at once
def test_a_client_never_gets_more_than_its_max_concurrent(platform: Platform, consumer: openai.OpenAI,
                                                          start_client: Callable[..., Client]) -> None:
    client = start_client(name="small", max_concurrent=2)
    with ThreadPoolExecutor(2) as pool:
        slow = [pool.submit(served_by, consumer, ask(f"slow {i} [[first_ms=1500]]")) for i in range(2)]
        wait_until(lambda: client.status()["active_requests"] == 2, 5, "two requests on the client")

        started = time.monotonic()
        with pytest.raises(openai.InternalServerError) as info:
            consumer.chat.completions.create(model="e2e-alpha", messages=ask("one too many"))
        assert time.monotonic() - started < 1.0
        assert info.value.status_code == 503
        assert info.value.code == "no_client_available"
        assert "concurrency limit" in info.value.message

        assert sorted(f.result(timeout=10)[1] for f in slow) == ["Echo: slow 0", "Echo: slow 1"]


def test_a_client_whose_bridge_is_down_gets_no_work(stack: Stack, platform: Platform, consumer: openai.OpenAI,
                                                     start_client: Callable[..., Client]) -> None:
    bridge = stack.upstream(["m-fragile"], name="fragile-upstream")
    client = start_client(name="fragile", upstream=bridge)
    assert served_by(consumer, ask("x"), model="m-fragile")[0] == client.client_id

    bridge.kill()
    # The client sees it at its next heartbeat (every second) and says so; the platform stops routing there.
    platform.wait_health(lambda h: h["clients_available"] == 0 and "m-fragile" not in h["models"],
                         "the client marked unhealthy", timeout=5)
    assert client.health()["healthy"] is False
    assert "m-fragile" not in {m.id for m in consumer.models.list().data}
    started = time.monotonic()
    with pytest.raises(openai.InternalServerError) as info:
        consumer.chat.completions.create(model="m-fragile", messages=ask("anyone?"))
    assert time.monotonic() - started < 1.0
    assert info.value.status_code == 503
    assert "unhealthy" in info.value.message
