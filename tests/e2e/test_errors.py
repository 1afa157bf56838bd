"""Every consumer-facing failure: the right status and an OpenAI error envelope, or an SSE error event."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest

from .harness import MODELS, SHARED_MAX_BODY_BYTES, Client, Platform, Shared, Stack, ask, consumer_for

MODEL = MODELS[0]



def post(platform: Platform, body: Any = None, *, key: str | None, content: Any = None,
         headers: dict[str, str] | None = None) -> httpx.Response:
    """A raw POST /v1/chat/completions, for what the openai package will not send."""
    all_headers = {"Authorization": f"Bearer {key}"} if key else {}
    all_headers.update(headers or {})
    return httpx.post(platform.v1 + "/chat/completions", json=body, content=content, headers=all_headers,
                      timeout=10)


def envelope(resp: httpx.Response) -> dict[str, Any]:
    """The ``error`` object of an OpenAI error envelope, after checking its shape."""
    assert resp.headers["content-type"].startswith("application/json")
    data = resp.json()
    assert set(data) == {"error"}, data
    error = data["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert isinstance(error["message"], str) and error["message"]
    return error


# -- 401 ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("authorization", [None, "Bearer", "Basic dXNlcjpwYXNz", "Bearer sk-not-a-real-key"])
def test_bad_or_missing_key_is_401(shared: Shared, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    resp = post(shared.platform, {"model": MODEL, "messages": ask("hi")}, key=None, headers=headers)

    assert resp.status_code == 401
    error = envelope(resp)
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "invalid_api_key"


def test_bad_key_with_the_openai_package(shared: Shared) -> None:
    with consumer_for(shared.platform, "sk-wrong") as consumer:
        with pytest.raises(openai.AuthenticationError) as info:
            consumer.chat.completions.create(model=MODEL, messages=ask("hi"))
        with pytest.raises(openai.AuthenticationError):
            consumer.models.list()

    assert info.value.status_code == 401
    assert info.value.code == "invalid_api_key"
    assert info.value.type == "invalid_request_error"


# -- 404 ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("stream", [False, True])
def test_unknown_model_is_404(shared: Shared, stream: bool) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        shared.consumer.chat.completions.create(model="no-such-model", messages=ask("hi"), stream=stream)

    err = info.value
    assert err.status_code == 404
    assert err.code == "model_not_found"
    assert err.type == "invalid_request_error"
    assert err.param == "model"
    assert "no-such-model" in err.message


# -- 400 ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("content, param", [
    (b"{not json", None),
    (b"", None),
    (b"[1, 2]", None),
])
def test_malformed_json_is_400(shared: Shared, content: bytes, param: str | None) -> None:
    resp = post(shared.platform, key=shared.key, content=content, headers={"Content-Type": "application/json"})

    assert resp.status_code == 400
    error = envelope(resp)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param


@pytest.mark.parametrize("body, param", [
    ({"model": MODEL, "messages": "hello"}, "messages"),
    ({"model": 42, "messages": [{"role": "user", "content": "hi"}]}, "model"),
    ({"model": MODEL, "messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role"),
    ({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": "yes"}, "stream"),
    ({"messages": [{"role": "user", "content": "hi"}]}, "model"),  # a field left out is named too
    ({"model": MODEL, "messages": []}, "messages"),
])
def test_wrong_types_are_400_naming_the_field(shared: Shared, body: dict[str, Any], param: str | None) -> None:
    resp = post(shared.platform, body, key=shared.key)

    assert resp.status_code == 400
    error = envelope(resp)
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "invalid_request"
    assert error["param"] == param


def test_wrong_type_with_the_openai_package(shared: Shared) -> None:
    hot: Any = "hot"  # the package passes it through; the platform must refuse it
    with pytest.raises(openai.BadRequestError) as info:
        shared.consumer.chat.completions.create(model=MODEL, messages=ask("hi"), temperature=hot)

    assert info.value.status_code == 400
    assert info.value.param == "temperature"


# -- 413 ---------------------------------------------------------------------------------------
def test_body_too_large_is_413(shared: Shared) -> None:
    with pytest.raises(openai.APIStatusError) as info:
        shared.consumer.chat.completions.create(model=MODEL, messages=ask("x" * (SHARED_MAX_BODY_BYTES + 1)))

    assert info.value.status_code == 413
    assert info.value.code == "request_too_large"
    assert info.value.type == "invalid_request_error"


def test_body_too_large_without_content_length_is_413(shared: Shared) -> None:
    """A chunked upload declares no size; the platform counts while it reads."""
    def chunks() -> Iterator[bytes]:
        yield b'{"model": "%s", "messages": [{"role": "user", "content": "' % MODEL.encode()
        for _ in range(SHARED_MAX_BODY_BYTES // 1024 + 1):
            yield b"y" * 1024
        yield b'"}]}'

    resp = post(shared.platform, key=shared.key, content=chunks(), headers={"Content-Type": "application/json"})

    assert "content-length" not in resp.request.headers
    assert resp.status_code == 413
    assert envelope(resp)["code"] == "request_too_large"


def test_body_just_under_the_limit_is_served(shared: Shared) -> None:
    text = "z" * (SHARED_MAX_BODY_BYTES - 200)
    resp = shared.consumer.chat.completions.create(model=MODEL, messages=ask(text))

    assert resp.choices[0].message.content == "Echo: " + text


# -- failures of the upstream ------------------------------------------------------------------
def test_upstream_client_error_is_passed_on(shared: Shared) -> None:
    with pytest.raises(openai.APIStatusError) as info:
        shared.consumer.chat.completions.create(model=MODEL, messages=ask("[[status=400]]"))

    assert info.value.status_code == 400
    error = info.value.body
    assert isinstance(error, dict) and error["code"] == "http_400"
    assert "scripted failure" not in info.value.message  # the platform speaks; the client's words stay apart
    assert error["upstream_message"] == "scripted failure with status 400"


@pytest.mark.parametrize("stream", [False, True])
def test_upstream_server_error_before_the_first_byte_is_an_http_error(shared: Shared, stream: bool) -> None:
    with pytest.raises(openai.InternalServerError) as info:
        shared.consumer.chat.completions.create(model=MODEL, messages=ask("[[status=500]]"), stream=stream)

    assert info.value.status_code == 500
    assert info.value.type == "upstream_error"


def test_upstream_error_mid_stream_is_an_sse_error_event(shared: Shared) -> None:
    stream = shared.consumer.chat.completions.create(model=MODEL, messages=ask("[[words=10]] [[error_after=3]]"),
                                                     stream=True)
    received: list[str] = []
    with pytest.raises(openai.APIError) as info:
        for chunk in stream:
            received.append(chunk.choices[0].delta.content or "")

    assert "".join(received) == "w0 w1 w2"
    assert info.value.message.startswith("The client serving this request could not answer it")
    body = info.value.body
    assert isinstance(body, dict) and body["upstream_message"] == "scripted mid-stream failure"
    assert info.value.type == "upstream_error"


# -- 503 ---------------------------------------------------------------------------------------
def assert_503_at_once(consumer: openai.OpenAI, model: str, stream: bool) -> openai.APIStatusError:
    started = time.monotonic()
    with pytest.raises(openai.InternalServerError) as info:
        consumer.chat.completions.create(model=model, messages=ask("anyone there?"), stream=stream)
    elapsed = time.monotonic() - started

    assert elapsed < 1.0, f"503 took {elapsed:.2f} s"
    err = info.value
    assert err.status_code == 503
    assert err.type == "service_unavailable_error"
    assert err.code == "no_client_available"
    assert err.response.headers.get("retry-after")
    return err


def test_all_clients_offline_is_503_at_once(stack: Stack, platform: Platform, consumer: openai.OpenAI,
                                            start_client: Callable[..., Client]) -> None:
    first, second = start_client(name="first"), start_client(name="second")
    assert consumer.chat.completions.create(model=MODEL, messages=ask("hi")).choices[0].message.content == "Echo: hi"

    first.stop()
    second.stop()
    platform.wait_health(lambda h: h["clients_connected"] == 0, "both clients gone")

    for stream in (False, True):
        err = assert_503_at_once(consumer, MODEL, stream)
        assert MODEL in err.message


def test_model_whose_only_client_left_is_503_while_others_serve(stack: Stack, platform: Platform,
                                                                consumer: openai.OpenAI,
                                                                start_client: Callable[..., Client]) -> None:
    start_client(name="general")
    special = start_client(name="special", upstream=stack.upstream(["e2e-special"], name="special-upstream"))
    assert consumer.chat.completions.create(model="e2e-special", messages=ask("hi")).choices

    special.stop()
    platform.wait_health(lambda h: "e2e-special" not in h["models"], "e2e-special gone")

    assert_503_at_once(consumer, "e2e-special", stream=False)
    assert consumer.chat.completions.create(model=MODEL, messages=ask("still here")).choices  # others still serve


def test_every_refused_request_with_a_valid_key_is_recorded(platform: Platform, consumer_key: str,
                                                            start_client: Callable[..., Client]) -> None:
    """400s, a 404 and a 413 from a known key reach the request log (the Overview once read "100%
    success" after them); a wrong key leaves no record."""
    from .harness import read_records, wait_until

    start_client()
    sent = [
        post(platform, key=consumer_key, content=b"{nope", headers={"Content-Type": "application/json"}),
        post(platform, {"model": MODEL, "messages": "not a list"}, key=consumer_key),
        post(platform, {"model": "no-such-model", "messages": ask("hi")}, key=consumer_key),
        post(platform, key=consumer_key, content=b"x" * (8 * 1024 * 1024 + 1),
             headers={"Content-Type": "application/json"}),
        post(platform, {"model": MODEL, "messages": ask("hi")}, key="sk-wrong"),
    ]
    assert [r.status_code for r in sent] == [400, 400, 404, 413, 401]

    def recorded() -> list[tuple[int, str | None]] | None:
        rows = sorted((r["status"], r["error_code"]) for r in read_records(platform.database_url))
        return rows if len(rows) >= 4 else None
    rows = wait_until(recorded, 10, "the records of the refused requests", 0.1)
    assert rows == [(400, "invalid_json"), (400, "invalid_request"), (404, "model_not_found"),
                    (413, "request_too_large")]
