import msgspec
import pytest

from arenahub.protocol.errors import InvalidRequest
from arenahub.protocol.openai import (
    ChoiceAccumulator,
    chunk_event,
    delta_text,
    error_body,
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
    (b'{"messages":[]}', "invalid_request", None),
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
