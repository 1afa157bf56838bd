import msgspec
import pytest

from arenahub.protocol import frames


def test_every_frame_round_trips_with_its_type_tag():
    samples = [
        frames.Hello(version=1, client_id="cl_1", api_key="ck-x", models=["m"], max_concurrent_requests=3),
        frames.Welcome(version=1, connection_id="c", client_name="n", max_concurrent_requests=3),
        frames.Refused(code="invalid_credentials", message="no"),
        frames.Heartbeat(stats=frames.ClientStats(requests_processed=5, success_rate=80.0),
                         session=frames.SessionStatus(session_valid=False)),
        frames.Chunk(id="r1", events=[[{"index": 0, "delta": {"content": "hi"}}]]),
        frames.End(id="r1", usage={"prompt_tokens": 1, "completion_tokens": 2}),
        frames.Error(id="r1", code="bridge_unreachable", message="down", retryable=True),
        frames.Cancel(id="r1"),
        frames.Notice(code="bad_frame", message="x"),
    ]
    for frame in samples:
        data = frames.encode(frame)
        assert msgspec.json.decode(data)["type"] == type(frame).__name__.lower()
        assert frames.decode(data) == frame


def test_request_body_travels_unparsed():
    body = b'{"model":"m","messages":[{"role":"user","content":"x"}],"weird":[1,2]}'
    data = frames.encode(frames.Request(id="r", body=msgspec.Raw(body)))
    decoded = frames.decode(data)
    assert isinstance(decoded, frames.Request)
    assert bytes(decoded.body) == body


@pytest.mark.parametrize("raw, fragment", [
    (b"not json", "malformed"),
    (b'{"type": "nonsense"}', "nonsense"),
    (b'{"type": "chunk"}', "id"),
    (b'{"type": "heartbeat", "stats": {"requests_processed": "many"}}', "requests_processed"),
    (b"[]", "object"),
])
def test_broken_frames_raise_frame_error_naming_the_problem(raw, fragment):
    with pytest.raises(frames.FrameError) as info:
        frames.decode(raw)
    assert fragment in str(info.value)


def test_text_frames_decode_like_binary_ones():
    data = frames.encode(frames.Cancel(id="abc", reason="consumer disconnected"))
    assert frames.decode(data.decode()) == frames.decode(data)
