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


@pytest.mark.parametrize("strategy", ["least_load", None])
def test_hello_round_trips_with_and_without_a_preferred_routing_strategy(strategy):
    hello = frames.Hello(version=1, client_id="cl_1", api_key="ck-x", preferred_routing_strategy=strategy)
    data = frames.encode(hello)
    assert frames.decode(data) == hello
    # Left out when unset: what goes on the wire is exactly what version 1 sent before the field existed.
    assert ("preferred_routing_strategy" in msgspec.json.decode(data)) == (strategy is not None)


def test_hello_stays_compatible_with_peers_of_either_age():
    class OldHello(msgspec.Struct, tag_field="type", tag="hello", omit_defaults=True):
        """Hello as version 1 defined it before preferred_routing_strategy."""

        version: int
        client_id: str
        api_key: str
        max_concurrent_requests: int = 4

    new = frames.encode(frames.Hello(version=1, client_id="cl_1", api_key="k", preferred_routing_strategy="fastest"))
    old = msgspec.json.decode(new, type=OldHello)  # an older platform skips the field it does not know
    assert (old.client_id, old.max_concurrent_requests) == ("cl_1", 4)
    decoded = frames.decode(msgspec.json.encode(OldHello(version=1, client_id="cl_1", api_key="k")))
    assert isinstance(decoded, frames.Hello) and decoded.preferred_routing_strategy is None


def test_a_frame_nested_too_deeply_is_a_frame_error_not_a_crash():
    deep = b'{"type":"chunk","id":"r","events":[[{"delta":' + b"[" * 100_000 + b"]" * 100_000 + b"}]]}"
    with pytest.raises(frames.FrameError, match="nested too deeply|depth"):
        frames.decode(deep)


def test_bounds_refuse_what_a_stranger_could_flood_and_name_the_field():
    with pytest.raises(frames.FrameError, match=r"\$\.models"):
        frames.decode(frames.encode(frames.Heartbeat(stats=frames.ClientStats(),
                                                     models=["m"] * (frames.MAX_MODELS + 1))))
    with pytest.raises(frames.FrameError, match=r"\$\.reason"):
        frames.decode(b'{"type":"drain","reason":"' + b"x" * 501 + b'"}')
    assert isinstance(frames.decode(frames.encode(frames.Window(id="r", bytes=10))), frames.Window)


def test_a_batch_is_read_frame_by_frame_with_each_frames_size() -> None:
    end, chunk = frames.encode(frames.End(id="a")), frames.encode(frames.Chunk(id="b", events=[[{"x": 1}]]))
    assert frames.batch([end]) == end  # one frame goes alone
    message = frames.batch([end, b'{"type":"nope"}', chunk])
    got = frames.decode_message(message)
    assert [type(f).__name__ for f, _ in got] == ["End", "FrameError", "Chunk"]
    assert [size for _, size in got] == [len(end), len(b'{"type":"nope"}'), len(chunk)]
    assert frames.decode_message(end.decode()) == [(frames.End(id="a"), len(end))]


@pytest.mark.parametrize("message", [b"[1,2", b"[" + b",".join([b"{}"] * (frames.MAX_BATCH_FRAMES + 1)) + b"]",
                                     b"[" * 100_000, b"{not json"])
def test_a_message_that_is_neither_a_frame_nor_a_batch_is_a_frame_error(message: bytes) -> None:
    with pytest.raises(frames.FrameError):
        frames.decode_message(message)
