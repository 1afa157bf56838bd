"""Per-client RPM set at registration: routing never sends a client more, and says when to retry."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from .harness import MODELS, Platform, Stack, Upstream

ADMIN_TOKEN = "adm-e2e-client-limits"


@pytest.fixture
def platform_env() -> dict[str, str]:
    return {"ARENAHUB_RECORD_FLUSH_SECONDS": "0.2", "ARENAHUB_ADMIN_TOKEN": ADMIN_TOKEN}


def post(platform: Platform, key: str, content: str) -> httpx.Response:
    return httpx.post(platform.v1 + "/chat/completions", headers={"Authorization": f"Bearer {key}"}, timeout=30,
                      json={"model": MODELS[0], "messages": [{"role": "user", "content": content}]})


def test_clients_get_no_more_than_their_rpm_and_then_503_with_retry_after(
        stack: Stack, platform: Platform, upstream: Upstream, consumer_key: str) -> None:
    # Room for every request at once, so only the RPM limits them.
    three = stack.client(platform, upstream, name="rpm-3", rpm=3, max_concurrent=16, max_concurrent_requests=16)
    four = stack.client(platform, upstream, name="rpm-4", rpm=4, max_concurrent=16, max_concurrent_requests=16)

    # All at once, each answer starting late so that they are in flight together.
    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(lambda i: post(platform, consumer_key, f"request {i} [[first_ms=300]]"), range(10)))

    served = Counter(r.headers["x-arenahub-client"] for r in answers if r.status_code == 200)
    assert served == {three.client_id: 3, four.client_id: 4}, served
    refused = [r for r in answers if r.status_code != 200]
    assert len(refused) == 3
    for r in refused:
        assert r.status_code == 503
        error = r.json()["error"]
        assert error["code"] == "no_client_available"
        assert f"all 2 client(s) serving model '{MODELS[0]}' are at their rate limit" in error["message"]
        assert 55 <= int(r.headers["retry-after"]) <= 60  # the first admitted leaves the window in ~60 s
    assert {c.client_id: c.health()["stats"]["requests_processed"] for c in (three, four)} == dict(served)

    clients = httpx.get(platform.url + "/api/admin/clients", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                        timeout=5).json()["data"]
    live = {c["id"]: c["live"] for c in clients}
    assert (live[three.client_id]["rpm"], live[three.client_id]["requests_in_window"]) == (3, 3)
    assert (live[four.client_id]["rpm"], live[four.client_id]["requests_in_window"]) == (4, 4)
