"""StreamParser: the upstream's line format, fed in arbitrary chunks."""

import pytest

from arenahub.bridge.lmarena import (
    AttachmentTooLarge,
    Challenge,
    ContentRejected,
    Finish,
    Images,
    InvalidSession,
    LMArenaError,
    Reasoning,
    StreamParser,
    TextDelta,
    Unknown,
    UpstreamFailure,
    UpstreamRateLimited,
    WrongPosition,
)

SAMPLE = (
    'af:{"messageId":"3f1c2d4e-0000-4000-8000-000000000001"}\n'
    'ag:"thinking "\n'
    'a0:"Hello"\n'
    'a0:", 世界 🌍"\n'
    'a0:"\\n\\"quoted\\" \\\\ slash \\u00e9"\n'
    'a2:[{"type":"heartbeat"}]\n'
    'a2:[{"type":"image","image":"https://img.example/1.png","mimeType":"image/png"}]\n'
    'b0:"the other side"\n'
    'a8:[{"note":1}]\n'
    '\n'
    'ae:{"finishReason":"stop","isContinued":false}\n'
    'ad:{"finishReason":"stop","usage":{"promptTokens":3,"completionTokens":5}}\n'
)
SAMPLE_EVENTS = [
    Reasoning("thinking "),
    TextDelta("Hello"),
    TextDelta(", 世界 🌍"),
    TextDelta('\n"quoted" \\ slash é'),
    Images(["https://img.example/1.png"]),
    Unknown('b0:"the other side"', "participant b: this request follows a"),
    Unknown('a8:[{"note":1}]'),
    Finish("stop", {"promptTokens": 3, "completionTokens": 5}),
]


def parse(*chunks, position="a"):
    parser = StreamParser(position)
    events = [e for chunk in chunks for e in parser.feed(chunk)]
    return events + parser.close()


def test_sample_stream_in_one_chunk():
    assert parse(SAMPLE) == SAMPLE_EVENTS


@pytest.mark.parametrize("at", range(len(SAMPLE) + 1))
def test_sample_stream_split_at_every_position(at):
    assert parse(SAMPLE[:at], SAMPLE[at:]) == SAMPLE_EVENTS


def test_sample_stream_one_character_at_a_time():
    assert parse(*SAMPLE) == SAMPLE_EVENTS


def test_sample_stream_with_crlf_split_everywhere():
    crlf = SAMPLE.replace("\n", "\r\n")
    for at in range(len(crlf) + 1):
        assert parse(crlf[:at], crlf[at:]) == SAMPLE_EVENTS


def test_last_line_without_newline_is_read_at_close():
    parser = StreamParser()
    assert parser.feed('a0:"x"\nad:{"finishReason":"length"}') == [TextDelta("x")]
    assert parser.close() == [Finish("length")]


@pytest.mark.parametrize("line, expected", [
    ('a0:"x"', [TextDelta("x")]),
    ('0:"x"', [TextDelta("x")]),  # no position: counts for any
    ('a0:""', []),
    ('a0:"He said {\\"error\\": 1}"', [TextDelta('He said {"error": 1}')]),  # text, not an error object
    ('a0:"Enable JavaScript and cookies to continue"', [TextDelta("Enable JavaScript and cookies to continue")]),
    ('a0:5', [Unknown('a0:5')]),
    ('a0:"unterminated', [Unknown('a0:"unterminated', "not JSON after its prefix")]),
    ('ag:"r"', [Reasoning("r")]),
    ('ag:""', []),
    ('a2:[{"type":"image","image":"u1"},{"type":"image","image":"u2"}]', [Images(["u1", "u2"])]),
    ('a2:[{"type":"heartbeat"}]', []),
    ('a2:[]', []),
    ('a2:[{"type":"image"}]', [Unknown('a2:[{"type":"image"}]', "data items that are not images")]),
    ('a2:[{"type":"image","image":"u"},{"x":1}]',
     [Images(["u"]), Unknown('a2:[{"type":"image","image":"u"},{"x":1}]', "data items that are not images")]),
    ('a2:{"x":1}', [Unknown('a2:{"x":1}')]),
    ('ad:{"finishReason":"content-filter"}', [Finish("content-filter")]),
    ('ad:{"finishReason":"length"}', [Finish("length")]),
    ('ad:{}', [Finish("stop")]),
    ('ad:{"finishReason":"stop","usage":7}', [Finish("stop")]),
    ('ad:"stop"', [Unknown('ad:"stop"')]),
    ('ae:{"finishReason":"stop"}', []),
    ('af:{"messageId":"m"}', []),
    ('a9:[{"toolCallId":"x"}]', [Unknown('a9:[{"toolCallId":"x"}]')]),
    ('<html lang="en">', [Unknown('<html lang="en">')]),
    ("some words", [Unknown("some words")]),
    ("   ", []),
    ('a0:"x"\r', [TextDelta("x")]),
])
def test_single_lines(line, expected):
    assert parse(line + "\n") == expected


@pytest.mark.parametrize("line", ['b0:"x"', 'bd:{"finishReason":"stop"}', 'b2:[{"type":"image","image":"u"}]',
                                  'bg:"r"'])
def test_the_other_position_is_not_the_answer(line):
    event = parse(line + "\n")[0]
    assert isinstance(event, Unknown) and "participant b" in event.reason


@pytest.mark.parametrize("stream, expected", [
    ('b0:"x"\nbd:{"finishReason":"stop"}\n', [TextDelta("x"), Finish("stop")]),
    ('a0:"other"\nb0:"mine"\n', [Unknown('a0:"other"', "participant a: this request follows b"), TextDelta("mine")]),
])
def test_battle_target_b(stream, expected):
    assert parse(stream, position="b") == expected


def failure(*chunks, position="a"):
    events = parse(*chunks, position=position)
    failures = [e for e in events if isinstance(e, UpstreamFailure)]
    assert len(failures) == 1, events
    assert events[-1] is failures[0], "nothing may follow a failure"
    return failures[0].error


@pytest.mark.parametrize("line, kind, words", [
    ('a3:"boom"', LMArenaError, "boom"),
    ('b3:"boom"', LMArenaError, "boom"),  # an error counts from either position
    ('3:"Rate limit exceeded, try again in 20 seconds"', UpstreamRateLimited, "20 s"),
    ('a3:"{\\"error\\":{\\"message\\":\\"blocked by safety\\",\\"code\\":\\"moderation_blocked\\"}}"',
     ContentRejected, "blocked by safety"),
    ('ae:{"message":"Request rejected: Content violates our terms of use"}', ContentRejected, "violates"),
    ('ae:"platform says no"', LMArenaError, "platform says no"),
    ('{"error":"User 9 does not have access to evaluation session 1"}', InvalidSession, "capture-ids"),
    ('{"error":{"message":"File too large"}}', AttachmentTooLarge, "5 MB"),
    ('{"error":"slow down","status":429}', UpstreamRateLimited, "slow down"),
    ('{"message":"x","error":"inner"}', LMArenaError, "inner"),
    ('data: {"detail":{"error":"nested"}}', LMArenaError, "nested"),
    ('a0:"hasArenaError"', LMArenaError, "hasArenaError"),
])
def test_error_lines(line, kind, words):
    error = failure(line + "\n" + 'a0:"after"\n')
    assert type(error) is kind
    assert words in error.message


def test_error_object_split_over_lines_is_found_at_close():
    body = '{\n  "error": "Request rejected: Content violates our terms of use"\n}\n'
    for at in range(len(body) + 1):
        assert isinstance(failure(body[:at], body[at:]), ContentRejected)


def test_nothing_after_a_failure():
    parser = StreamParser()
    (event,) = parser.feed('a3:"boom"\n')
    assert isinstance(event, UpstreamFailure)
    assert parser.feed('a0:"more"\n') == []
    assert parser.close() == []
    assert parser.stopped


CF_PAGE = ('<!DOCTYPE html><html lang="en-US"><head><title>Just a moment...</title>\n'
           '<meta http-equiv="refresh" content="390">\n</head><body><noscript>\n'
           'Enable JavaScript and cookies to continue</noscript></body></html>')


@pytest.mark.parametrize("page", [CF_PAGE, CF_PAGE.upper(), "<p>Enable JavaScript and cookies to continue</p>",
                                  "<script>window._cf_chl_opt={cvId: '3'}</script>"])
def test_cloudflare_page_is_a_challenge(page):
    assert parse(page) == [Challenge()]


@pytest.mark.parametrize("at", range(len(CF_PAGE) + 1))
def test_cloudflare_page_split_anywhere(at):
    parser = StreamParser()
    events = parser.feed(CF_PAGE[:at]) + parser.feed(CF_PAGE[at:]) + parser.close()
    assert [e for e in events if not isinstance(e, Unknown)] == [Challenge()]


def test_challenge_is_seen_before_the_line_ends():
    parser = StreamParser()
    assert parser.feed("<html><head><title>Just a moment...</title>") == [Challenge()]
    assert parser.feed('\na0:"x"\n') == []
    assert parser.close() == []


def test_answer_only_at_the_other_position_is_a_named_failure():
    error = failure('a0:"hi"\nad:{"finishReason":"stop"}\n', position="b")
    assert isinstance(error, WrongPosition)
    assert "participant A" in error.message and "id_updater_battle_target" in error.message


@pytest.mark.parametrize("stream", ['b0:"x"\nb0:"y"\n', 'ad:{"finishReason":"stop"}\n', ""])
def test_no_position_failure_when_we_answered_or_nobody_did(stream):
    assert not any(isinstance(e, UpstreamFailure) for e in parse(stream, position="b"))


@pytest.mark.parametrize("stream, answered", [('a0:"x"\n', True), ('a2:[{"type":"image","image":"u"}]\n', True),
                                              ('ag:"r"\n', False), ('b0:"x"\n', False), ('a0:""\n', False)])
def test_answered(stream, answered):
    parser = StreamParser("a")
    parser.feed(stream)
    assert parser.answered is answered


def test_unknown_lines_are_cut_to_a_loggable_size():
    (event,) = parse("x" * 5000 + "\n")
    assert isinstance(event, Unknown) and len(event.line) == 2000


@pytest.mark.parametrize("reason, openai", [("stop", "stop"), ("length", "length"), ("content-filter", "content_filter"),
                                            ("tool-calls", "tool_calls"), ("error", "stop"), ("other", "stop")])
def test_finish_reason_in_openai_words(reason, openai):
    assert Finish(reason).openai_reason == openai


def test_position_is_checked():
    with pytest.raises(ValueError):
        StreamParser("c")  # type: ignore[arg-type]
