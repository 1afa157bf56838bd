import json

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from arenahub.protocol.errors import InvalidRequest
from arenahub.protocol.openai import (
    MAX_JSON_DEPTH,
    ChoiceAccumulator,
    chunk_event,
    delta_text,
    error_body,
    json_too_deep,
    parse_chat_request,
    prompt_text,
)


def test_valid_request_parses():
    req = parse_chat_request(b'{"model":"m","messages":[{"role":"user","content":"hi"}],'
                             b'"stream":true,"stream_options":{"include_usage":true},"extra_field":1}')
    assert req.model == "m" and req.stream and req.include_usage
    assert prompt_text(req) == "hi"


def test_content_parts_count_as_prompt_text():
    req = parse_chat_request(b'{"model":"m","messages":[{"role":"user","content":'
                             b'[{"type":"text","text":"a"},{"type":"image_url","image_url":{"url":"x"}}]}]}')
    assert prompt_text(req) == "a"


@pytest.mark.parametrize("body, code, param", [
    (b"", "invalid_json", None),
    (b"{not json", "invalid_json", None),
    (b"[1,2]", "invalid_request", None),
    (b'{"messages":[]}', "invalid_request", "model"),  # a field left out is named too
    (b'{"model":"m"}', "invalid_request", "messages"),
    (b'{"model":"m","messages":[{"content":"x"}]}', "invalid_request", "messages[0].role"),
    (b'{"model":"m","messages":[]}', "invalid_request", "messages"),
    (b'{"model":"","messages":[{"role":"user","content":"x"}]}', "invalid_request", "model"),
    (b'{"model":"m","messages":[{"role":"robot","content":"x"}]}', "invalid_request", "messages[0].role"),
    (b'{"model":"m","messages":[{"role":"user","content":5}]}', "invalid_request", "messages[0].content"),
    (b'{"model":"m","messages":[{"role":"user","content":"x"}],"stream":"yes"}', "invalid_request", "stream"),
    (b'{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":0}', "invalid_request", "max_tokens"),
    (b'{"model":"m","messages":[{"role":"user","content":"x"}],"n":2}', "invalid_request", "n"),
])
def test_bad_requests_name_the_field(body, code, param):
    with pytest.raises(InvalidRequest) as info:
        parse_chat_request(body)
    assert info.value.code == code
    assert info.value.param == param
    assert info.value.status == 400


def test_error_body_is_the_openai_envelope():
    err = InvalidRequest("bad", param="model")
    assert msgspec.json.decode(error_body(err)) == {
        "error": {"message": "bad", "type": "invalid_request_error", "param": "model", "code": "invalid_request"}}


def test_chunk_event_is_one_sse_event():
    event = chunk_event("id1", 5, "m", [{"index": 0, "delta": {"content": "x"}}], {"total_tokens": 1})
    assert event.startswith(b"data: ") and event.endswith(b"\n\n")
    chunk = msgspec.json.decode(event[6:])
    assert chunk["object"] == "chat.completion.chunk" and chunk["usage"] == {"total_tokens": 1}


def test_accumulator_folds_deltas_into_a_message():
    acc = ChoiceAccumulator()
    acc.add([{"index": 0, "delta": {"role": "assistant", "content": "Hel"}}])
    acc.add([{"index": 0, "delta": {"content": "lo", "reasoning_content": "think"}}])
    acc.add([{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "t1",
                                                    "function": {"name": "f", "arguments": "{\"a\""}}]}}])
    acc.add([{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": ":1}"}}]},
              "finish_reason": "tool_calls"}])
    [choice] = acc.choices()
    assert choice["message"]["content"] == "Hello"
    assert choice["message"]["reasoning_content"] == "think"
    assert choice["message"]["tool_calls"] == [{"id": "t1", "type": "function",
                                                "function": {"name": "f", "arguments": "{\"a\":1}"}}]
    assert choice["finish_reason"] == "tool_calls"
    assert acc.text() == "Hellothink"


def test_empty_answer_still_has_one_choice():
    assert ChoiceAccumulator().choices() == [
        {"index": 0, "message": {"role": "assistant", "content": ""}, "finish_reason": "stop", "logprobs": None}]


def test_delta_text_ignores_non_text():
    assert delta_text([{"delta": {"content": "a"}}, {"delta": {"content": None}}, {"delta": {}}]) == "a"


# -- JSON nesting depth (issue 11, item 10) ------------------------------------------------------
def _nested(depth: int, opener: bytes = b"[", closer: bytes = b"]") -> bytes:
    return opener * depth + closer * depth


@pytest.mark.parametrize("body", [
    b'{"model":"m","messages":[{"role":"user","content":"x"}],"metadata":' + _nested(100_000) + b"}",
    b'{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"x","deep":'
    + _nested(100_000) + b"}]}]}",
    b'{"model":"m","messages":[{"role":"user","content":"x"}],"metadata":' + _nested(64) + b"}",  # 65 with the body
    b'{"model":"m","messages":[{"role":"user","content":"x"}],"metadata":' + b'{"a":' * 64 + b"1" + b"}" * 65,
], ids=["100000-deep-skipped-field", "100000-deep-content-part", "65-arrays", "65-objects"])
def test_json_nested_too_deep_is_invalid_json_naming_the_limit(body):
    with pytest.raises(InvalidRequest) as info:
        parse_chat_request(body)
    assert info.value.code == "invalid_json" and info.value.status == 400
    assert str(MAX_JSON_DEPTH) in info.value.message


def test_json_nested_to_the_limit_parses():
    parse_chat_request(b'{"model":"m","messages":[{"role":"user","content":"x"}],"metadata":' + _nested(63) + b"}")


@pytest.mark.parametrize("text, depth", [
    (b"1", 0), (b"[]", 1), (b'{"a":[{}]}', 3), (b'["[[[[", "]]"]', 1), (b'["\\"[[[", {"\\\\": [[]]}]', 4),
    (b'{"k\\\\\\"[": "}}}\\\\"}', 1), (b"[" * 70 + b"]" * 70, 70),
])
def test_json_too_deep_ignores_brackets_in_strings(text, depth):
    assert json_too_deep(text, depth) is False
    if depth:
        assert json_too_deep(text, depth - 1) is True


@given(st.recursive(st.none() | st.text("[]{}\"\\ab", max_size=4),
                    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text("[]{}\"\\", max_size=3), kids,
                                                                             max_size=3),
                    max_leaves=40))
def test_json_too_deep_agrees_with_the_structure(value):
    def depth(v):
        if isinstance(v, list):
            return 1 + max(map(depth, v), default=0)
        if isinstance(v, dict):
            return 1 + max(map(depth, v.values()), default=0)
        return 0
    text = json.dumps(value).encode()
    for limit in (0, 1, 2, 3, 5):
        assert json_too_deep(text, limit) is (depth(value) > limit)
