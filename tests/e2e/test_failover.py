"""Clients that die while serving: an error event after the first byte, another client before it."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest

from .harness import Client, Platform, ask, served_by, wait_until


def test_client_killed_mid_stream_ends_the_stream_with_an_error(platform: Platform, consumer: openai.OpenAI,
                                                                start_client: Callable[..., Client]) -> None:
    client = start_client()
    # 100 words, 100 ms apart: the answer would take 10 s if nothing broke it.
    stream = consumer.chat.completions.create(model="e2e-alpha", messages=ask("[[words=100]] [[delay_ms=100]]"),
                                              stream=True)
    received: list[str] = []
    killed_at = None
    with pytest.raises(openai.APIError) as info:
        for chunk in stream:
            received.append(chunk.choices[0].delta.content or "")
            if len(received) == 3:
                client.kill()
                killed_at = time.monotonic()
    assert killed_at is not None
    elapsed = time.monotonic() - killed_at

    assert elapsed < 2.0, f"the error came {elapsed:.2f} s after the kill"
    assert 3 <= len(received) < 100
    assert "".join(received).startswith("w0 w1 w2")
    assert info.value.code == "client_disconnected"
    assert info.value.type == "upstream_error"
    assert "disconnected" in info.value.message
    platform.wait_health(lambda h: h["clients_connected"] == 0 and h["requests_in_flight"] == 0, "cleaned up")


@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
def test_client_killed_before_its_first_byte_is_retried_on_another(
        platform: Platform, consumer: openai.OpenAI, start_client: Callable[..., Client], stream: bool) -> None:
    clients = [start_client(name="a"), start_client(name="b")]
    text = "patience pays [[first_ms=3000]]"

    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(served_by, consumer, ask(text), stream=stream)
        first = wait_until(lambda: next((c for c in clients if c.status()["active_requests"]), None), 5,
                           "a client to take the request")
        first.kill()
        client_id, answer = future.result(timeout=15)

    survivor = next(c for c in clients if c is not first)
    assert answer == "Echo: patience pays"
    assert client_id == survivor.client_id
    assert survivor.health()["stats"]["requests_processed"] == 1
