"""Per-key rate limits over HTTP: exact RPM, concurrency, 429 with Retry-After and x-ratelimit-* headers."""

from __future__ import annotations

import concurrent.futures
import time

import httpx

from .harness import MODELS, Platform, Stack


def post(platform: Platform, key: str, content: str = "hi") -> httpx.Response:
    return httpx.post(platform.v1 + "/chat/completions", headers={"Authorization": f"Bearer {key}"}, timeout=30,
                      json={"model": MODELS[0], "messages": [{"role": "user", "content": content}]})


def test_rpm_is_exact_and_refusals_say_when_to_retry(stack: Stack, platform: Platform, start_client) -> None:
    start_client()
    key = stack.admin("create-key", "--name", "limited", "--rpm", "3", "--tpm", "100000",
                      database_url=platform.database_url)["key"]
    answers = [post(platform, key) for _ in range(3)]
    assert [r.status_code for r in answers] == [200, 200, 200]
    assert [r.headers["x-ratelimit-remaining-requests"] for r in answers] == ["2", "1", "0"]
    assert answers[0].headers["x-ratelimit-limit-requests"] == "3"
    assert answers[0].headers["x-ratelimit-limit-tokens"] == "100000"
    refused = post(platform, key)
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["code"] == "rate_limit_exceeded" and "request" in error["message"].lower()
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"


def test_concurrency_limit(stack: Stack, platform: Platform, start_client) -> None:
    start_client()
    key = stack.admin("create-key", "--name", "one-at-a-time", "--max-concurrent", "1",
                      database_url=platform.database_url)["key"]
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        slow = pool.submit(post, platform, key, "[[first_ms=800]] slow")
        time.sleep(0.3)
        second = post(platform, key)
        assert slow.result().status_code == 200
    assert second.status_code == 429 and second.json()["error"]["code"] == "rate_limit_exceeded"
    assert post(platform, key).status_code == 200  # the slot is free again
