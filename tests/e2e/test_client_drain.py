"""A client drained from its own local endpoint: its work in flight finishes, new work goes elsewhere."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai

from .harness import Client, ask, served_by


def test_a_client_drains_itself_and_takes_work_again(consumer: openai.OpenAI,
                                                     start_client: Callable[..., Client]) -> None:
    a, b = start_client(name="a"), start_client(name="b")
    with ThreadPoolExecutor(4) as pool:
        # Two slow requests at once: least load puts one on each client.
        slow = [pool.submit(served_by, consumer, ask(f"slow {i} [[first_ms=1500]]")) for i in range(2)]
        for client in (a, b):
            client.wait_status(lambda s: s["active_requests"] == 1, "a slow request in flight", timeout=5)

        drained_at = time.monotonic()
        resp = httpx.post(a.url + "/platform/drain", json={"reason": "upgrading the bridge"}, timeout=10)
        assert resp.status_code == 200, resp.text
        assert resp.json()["applied"] is True
        status = a.status()
        assert status["routing"]["draining"] is True and status["routing"]["drained_by"] == "client"
        assert status["routing"]["drain_reason"] == "upgrading the bridge"
        assert status["active_requests"] == 1  # still answering the slow one

        # Every new request goes to b, within 2 s of the drain and while a's slow request runs.
        fresh = list(pool.map(lambda i: served_by(consumer, ask(f"new {i}")), range(6)))
        assert time.monotonic() - drained_at < 2.0
        assert [client for client, _ in fresh] == [b.client_id] * 6
        assert sorted(text for _, text in fresh) == sorted(f"Echo: new {i}" for i in range(6))

        # The slow request on a still completes normally.
        answers = dict(f.result(timeout=10) for f in slow)
    assert set(answers) == {a.client_id, b.client_id}
    assert answers[a.client_id].startswith("Echo: slow ")
    health = a.health()
    assert health["stats"]["requests_processed"] == 1 and health["stats"]["success_rate"] == 100.0

    resp = httpx.post(a.url + "/platform/undrain", timeout=10)
    assert resp.status_code == 200 and resp.json()["routing"]["draining"] is False
    assert a.status()["routing"]["drained_by"] is None
    with ThreadPoolExecutor(4) as pool:
        again = Counter(pool.map(lambda i: served_by(consumer, ask(f"again {i} [[first_ms=300]]"))[0], range(4)))
    assert again[a.client_id] >= 1, again
