"""What a request's record keeps of its routing attempts and error (``Exchange.detail``), and the
prompt and answer text stored when the operator turns that on (``Exchange.prompt``/``answer``)."""

from __future__ import annotations

import msgspec

from arenahub.platform.exchange import MESSAGE_CHARS, Exchange
from arenahub.platform.storage.accounts import ConsumerKey
from arenahub.protocol.openai import parse_chat_request


def exchange(messages: list[dict[str, object]] | None = None) -> Exchange:
    key = ConsumerKey(id="key_1", name="k", key_hash="h", rpm=None, disabled=False,
                      updated_at=None)  # type: ignore[arg-type]
    body = msgspec.json.encode({"model": "m", "messages": messages or [{"role": "user", "content": "secret soup"}]})
    return Exchange(id="r1", key=key, request=parse_chat_request(body), body=body)


def test_a_success_at_the_first_attempt_keeps_no_detail() -> None:
    ex = exchange()
    ex.attempt_ended("cl_1", "ok", 0.0123)
    assert ex.detail() is None and ex.record().detail is None


def test_every_attempt_and_the_error_are_kept_otherwise() -> None:
    ex = exchange()
    ex.attempt_ended("cl_1", "disconnected", 0.5, "client_disconnected", "the client disconnected (gone)")
    ex.attempt_ended("cl_2", "ok", 1.25)
    assert ex.record().detail == {"attempts": [
        {"client_id": "cl_1", "outcome": "disconnected", "code": "client_disconnected",
         "error": "the client disconnected (gone)", "ms": 500.0},
        {"client_id": "cl_2", "outcome": "ok", "code": None, "error": None, "ms": 1250.0}], "error": None}

    left = exchange()
    left.attempt_ended("cl_1", "cancelled", 0.2, None, "consumer disconnected")
    left.fail(499, "client_closed", "the consumer disconnected before the answer was complete")
    assert left.detail() == {"attempts": [{"client_id": "cl_1", "outcome": "cancelled", "code": None,
                                           "error": "consumer disconnected", "ms": 200.0}],
                             "error": "the consumer disconnected before the answer was complete"}

    refused = exchange()  # never placed: the queue was full
    refused.fail(429, "queue_full", "x" * 1000)
    detail = refused.detail()
    assert detail is not None and detail["attempts"] == []
    assert len(detail["error"]) == MESSAGE_CHARS and detail["error"].endswith("…")
    assert "secret soup" not in str(detail)


def test_the_prompt_and_answer_text() -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}
    ex = exchange([{"role": "system", "content": "be brief"},
                   {"role": "user", "content": [{"type": "text", "text": "what is this"}, image]}])
    ex.completion_parts = ["a ", "cat"]
    assert ex.prompt() == "system: be brief\n\nuser: what is this\n[image_url]"
    assert ex.answer() == "a cat"
