"""Per-key rate limits over HTTP: exact RPM, concurrency, 429 with Retry-After and x-ratelimit-* headers."""

from __future__ import annotations

import concurrent.futures
import time

import httpx

from arenahub.tokens import count_tokens

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


def test_tpm_counts_the_estimate_then_the_real_use_exactly(stack: Stack, platform: Platform, start_client) -> None:
    """Admission counts prompt + max_tokens; the window keeps each request's real tokens once it ends."""
    start_client()
    tpm, max_tokens = 300, 40
    key = stack.admin("create-key", "--name", "tokens", "--tpm", str(tpm), database_url=platform.database_url)["key"]
    used = 0  # real tokens of the requests served so far, all inside this minute
    for i in range(100):
        resp = httpx.post(platform.v1 + "/chat/completions", headers={"Authorization": f"Bearer {key}"}, timeout=30,
                          json={"model": MODELS[0], "max_tokens": max_tokens,
                                "messages": [{"role": "user", "content": f"request {i}"}]})
        if resp.status_code == 429:
            break
        assert resp.status_code == 200, resp.text
        usage = resp.json()["usage"]  # the upstream's own count, which the window keeps
        estimate = count_tokens(f"request {i}") + max_tokens  # the platform's count at admission
        assert used + estimate <= tpm
        # Remaining at admission: the limit less the real use so far and this request's estimate.
        assert int(resp.headers["x-ratelimit-remaining-tokens"]) == tpm - used - estimate
        assert resp.headers["x-ratelimit-limit-tokens"] == str(tpm)
        used += usage["total_tokens"]
    else:
        raise AssertionError("never refused")
    error = resp.json()["error"]
    assert error["code"] == "rate_limit_exceeded" and "tokens per minute" in error["message"]
    prompt = count_tokens(f"request {i}")
    assert used + prompt + max_tokens > tpm  # refused exactly when the estimate no longer fits
    assert 1 <= int(resp.headers["retry-after"]) <= 60
    # A request whose estimate fits in what is left is still admitted.
    assert tpm - used - prompt >= 1, "choose tpm and max_tokens so that something is left"
    small = httpx.post(platform.v1 + "/chat/completions", headers={"Authorization": f"Bearer {key}"}, timeout=30,
                       json={"model": MODELS[0], "max_tokens": tpm - used - prompt,
                             "messages": [{"role": "user", "content": f"request {i}"}]})
    assert small.status_code == 200, small.text
