from arenahub.protocol.sse import SSEDecoder


def test_events_split_across_reads():
    d = SSEDecoder()
    assert d.feed(b"data: {\"a\"") == []
    assert d.feed(b":1}\n") == []
    assert d.feed(b"\ndata: [DONE]\n\n") == [b'{"a":1}', b"[DONE]"]


def test_crlf_comments_and_multiline_data():
    d = SSEDecoder()
    events = d.feed(b": keep-alive\r\n\r\nevent: x\r\ndata: one\r\ndata: two\r\n\r\n")
    assert events == [b"one\ntwo"]


def test_trailing_event_without_blank_line_is_kept_on_close():
    d = SSEDecoder()
    assert d.feed(b"data: last") == []
    assert d.close() == [b"last"]
    assert SSEDecoder().close() == []
