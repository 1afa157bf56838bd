"""StreamParser: arena.ai's answer lines (2026), fed in arbitrary chunks, and every way a stream fails."""

import codecs
import re

import pytest

from arenahub.bridge.lmarena import (
    Citations,
    CloudflareBlocked,
    Finish,
    Images,
    InvalidSession,
    LMArenaError,
    NeedsVerification,
    Reasoning,
    RoutedModel,
    StreamParser,
    TextDelta,
    UnexpectedAnswer,
    Unknown,
    UpstreamFailure,
    UpstreamRateLimited,
    VerificationRequired,
    WrongPosition,
)

CITE_1 = r'ac:{"toolCallId":"t1","argsTextDelta":"{\"source\":[{\"url\":\"https://a.example/x\",\"title\":\"A\"},"}'
CITE_2 = r'ac:{"toolCallId":"t1","argsTextDelta":"{\"url\":\"https://b.example/y\",\"title\":\"B\"}]}"}'
IMAGES = ('a2:[{"type":"image","image":"https://img.example/1.png","mimeType":"image/png"},'
          '{"type":"video","url":"https://v.example/1.mp4"}]')
SAMPLE_LINES = [
    'af:{"messageId":"0192f0a1-2b3c-7d4e-8f00-000000000001"}',
    'ag:"thinking "',
    'a0:"Hello"',
    'a0:", 世界 🌍"',
    r'a0:"\n\"quoted\" \\ slash \u00e9"',
    'a2:[{"type":"heartbeat"}]',
    'a2:[{"type":"routed_model","publicName":"gpt-x-2026"}]',
    IMAGES,
    CITE_1,
    CITE_2,
    'b0:"the other side"',
    'a8:[{"note":1}]',
    '',
    'ae:{"finishReason":"stop","isContinued":false}',
    'ad:{"finishReason":"stop","usage":{"promptTokens":3,"completionTokens":5}}',
]
SAMPLE = "\n".join(SAMPLE_LINES) + "\n"
SAMPLE_EVENTS = [
    Reasoning("thinking "),
    TextDelta("Hello"),
    TextDelta(", 世界 🌍"),
    TextDelta('\n"quoted" \\ slash é'),
    RoutedModel("gpt-x-2026"),
    Images(["https://img.example/1.png"]),
    Unknown(IMAGES, "2:video", "a data item the bridge does not use"),
    Citations([{"url": "https://a.example/x", "title": "A"}, {"url": "https://b.example/y", "title": "B"}]),
    Unknown('b0:"the other side"', "other-side:0", "side b: this request follows a"),
    Unknown('a8:[{"note":1}]', "8"),
    Finish("stop", {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}),
]
UUID = re.compile(r"(?i)[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
CHALLENGE = ("<!DOCTYPE html><html lang=\"en-US\"><head><title>Just a moment...</title>"
             "<script>window._cf_chl_opt={cType: 'managed'}</script></head><body>Enable JavaScript and cookies to "
             "continue</body></html>")
BLOCK = ("<!DOCTYPE html>\n<html><head>\n<title>Attention Required! | Cloudflare</title>\n</head>\n<body>\n"
         "<div id=\"cf-error-details\"><h1>Sorry, you have been blocked</h1></div>\n</body></html>")


def parse(*chunks, position="a", legacy=False):
    parser = StreamParser(position, legacy=legacy)
    events = [e for chunk in chunks for e in parser.feed(chunk)]
    return events + parser.close()


def failure(events):
    (last,) = [e for e in events if isinstance(e, UpstreamFailure)]
    assert events[-1] is last, "nothing may follow a failure"
    return last.error


# --- the whole line format, however it is cut ---

def test_sample_stream_in_one_chunk():
    assert parse(SAMPLE) == SAMPLE_EVENTS


@pytest.mark.parametrize("at", range(len(SAMPLE) + 1))
def test_sample_stream_split_at_every_position(at):
    assert parse(SAMPLE[:at], SAMPLE[at:]) == SAMPLE_EVENTS


def test_sample_stream_one_character_at_a_time():
    assert parse(*SAMPLE) == SAMPLE_EVENTS


def test_utf8_bytes_split_at_every_byte_decode_to_the_same_events():
    # The tab decodes bytes as they come (TextDecoder with stream: true): a character may span two reads.
    raw = SAMPLE.encode()
    for at in range(len(raw) + 1):
        decoder = codecs.getincrementaldecoder("utf-8")()
        assert parse(decoder.decode(raw[:at]), decoder.decode(raw[at:], final=True)) == SAMPLE_EVENTS


def test_crlf_line_ends_split_everywhere():
    crlf = SAMPLE.replace("\n", "\r\n")
    for at in range(0, len(crlf) + 1, 3):
        assert parse(crlf[:at], crlf[at:]) == SAMPLE_EVENTS


def test_server_sent_event_framing():
    sse = "".join(f"data: {line}\n\n" for line in SAMPLE_LINES if line)
    assert parse(sse[:100], sse[100:]) == SAMPLE_EVENTS


def test_last_line_without_newline_is_read_at_close():
    parser = StreamParser()
    assert parser.feed('a0:"x"\nad:{"finishReason":"length"}') == [TextDelta("x")]
    assert parser.close() == [Finish("length")]
    assert parser.feed('a0:"more"\n') == [] and parser.close() == []


# --- one line at a time ---

@pytest.mark.parametrize("line, expected", [
    ('a0:""', []),
    ('0:"no side prefix"', [TextDelta("no side prefix")]),
    ('ag:"why"', [Reasoning("why")]),
    ('af:{"messageId":"m"}', []),
    ('ae:{"finishReason":"tool-calls","isContinued":true}', []),
    ('a2:[{"type":"heartbeat"},{"type":"heartbeat"}]', []),
    ('a2:[{"type":"routed_model","displayName":"Shown"}]', [RoutedModel("Shown")]),
    ('a2:[{"type":"routed_model","name":"n"}]', [RoutedModel("n")]),
    ('a2:[{"type":"routed_model"}]', []),
    ('a2:[{"type":"image","image":"u1"},{"type":"image","image":"u2"}]', [Images(["u1", "u2"])]),
    ('a2:[{"type":"image"}]', [Unknown('a2:[{"type":"image"}]', "2:image", "a data item the bridge does not use")]),
    ('a2:["x"]', [Unknown('a2:["x"]', "2:None", "a data item the bridge does not use")]),
    ('a0:123', [Unknown("a0:123", "0")]),
    ('ah:{"new":true}', [Unknown('ah:{"new":true}', "h")]),
    ('a0:"unterminated', [Unknown('a0:"unterminated', "0:unparsed", "not JSON after its prefix")]),
    ('ad:{}', [Finish("stop")]),
    ('ad:{"finishReason":"length","usage":{"promptTokens":-1,"completionTokens":2}}', [Finish("length")]),
    ('ad:{"finishReason":"stop","usage":{"promptTokens":"3","completionTokens":2}}', [Finish("stop")]),
])
def test_single_lines(line, expected):
    parser = StreamParser()
    assert parser.feed(line + "\n") == expected


@pytest.mark.parametrize("reason, openai", [("stop", "stop"), ("length", "length"),
                                            ("content-filter", "content_filter"), ("tool-calls", "tool_calls"),
                                            ("other", "stop"), ("unknown", "stop")])
def test_finish_reason_in_openai_words(reason, openai):
    (finish,) = StreamParser().feed(f'ad:{{"finishReason":"{reason}"}}\n')
    assert finish.openai_reason == openai


def test_unknown_kinds_are_named_for_logging_and_never_fatal():
    events = parse('a0:"a"\naz:1\na7:{"x":1}\na0:"b"\nad:{"finishReason":"stop"}\n')
    assert [e.kind for e in events if isinstance(e, Unknown)] == ["z", "7"]
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["a", "b"]
    assert isinstance(events[-1], Finish)


def test_citations_are_deduplicated_across_the_answer():
    second = (r'ac:{"toolCallId":"t2","argsTextDelta":"{\"source\":[{\"url\":\"https://a.example/x\"},'
              r'{\"url\":\"https://c.example/z\",\"title\":7},{\"url\":\"ftp://no\"}]}"}')
    again = r'ac:{"toolCallId":"t3","argsTextDelta":"{\"source\":{\"url\":\"https://c.example/z\"}}"}'
    events = parse(f'{CITE_1}\n{CITE_2}\n{second}\n{again}\na0:"ok"\n')
    assert [e for e in events if isinstance(e, Citations)] == [
        Citations([{"url": "https://a.example/x", "title": "A"}, {"url": "https://b.example/y", "title": "B"}]),
        Citations([{"url": "https://c.example/z", "title": ""}]),
    ]


def test_citation_pieces_of_two_calls_interleaved():
    a1 = r'ac:{"toolCallId":"a","argsTextDelta":"{\"source\":{\"url\":"}'
    b1 = r'ac:{"toolCallId":"b","argsTextDelta":"{\"source\":{\"url\":\"https://b.example\"}}"}'
    a2 = r'ac:{"toolCallId":"a","argsTextDelta":"\"https://a.example\"}}"}'
    events = parse(f'{a1}\n{b1}\n{a2}\na0:"x"')
    assert [e.sources[0]["url"] for e in events if isinstance(e, Citations)] == ["https://b.example",
                                                                                  "https://a.example"]


# --- sides: direct answers on a, battle modes answer on both ---

def test_direct_ignores_side_b():
    events = parse('a0:"mine"\nb0:"theirs"\nbd:{"finishReason":"stop"}\nad:{"finishReason":"stop"}\n')
    assert [e for e in events if not isinstance(e, Unknown)] == [TextDelta("mine"), Finish("stop")]
    assert {e.kind for e in events if isinstance(e, Unknown)} == {"other-side:0", "other-side:d"}


def test_battle_follows_side_b_when_asked():
    stream = ('a0:"A says"\nb0:"B says"\na2:[{"type":"image","image":"ua"}]\nb2:[{"type":"image","image":"ub"}]\n'
              'ad:{"finishReason":"stop"}\nbd:{"finishReason":"length"}\n')
    events = [e for e in parse(stream, position="b") if not isinstance(e, Unknown)]
    assert events == [TextDelta("B says"), Images(["ub"]), Finish("length")]


def test_invalid_position_is_refused():
    with pytest.raises(ValueError, match="position must be 'a' or 'b'"):
        StreamParser("c")  # type: ignore[arg-type]


def test_legacy_answer_only_on_the_other_side_is_a_wrong_position():
    error = failure(parse('b0:"hi"\nbd:{"finishReason":"stop"}\n', legacy=True))
    assert isinstance(error, WrongPosition)
    assert "side B" in error.message and "side A" in error.message
    assert "capture-ids" in error.message and "id_updater_battle_target" in error.message


def test_new_mode_answer_only_on_the_other_side_does_not_blame_captured_ids():
    error = failure(parse('a0:"hi"\nad:{"finishReason":"stop"}\n', position="b"))
    assert type(error) is LMArenaError
    assert "side A" in error.message and "capture" not in error.message


# --- failures inside the stream ---

@pytest.mark.parametrize("stream, kind, words", [
    ('a0:"partial"\na0:"hasArenaError"\na0:"never"\n', LMArenaError, "hasArenaError"),
    ('a0:"x"\nad:{"finishReason":"error"}\n', LMArenaError, 'finishReason "error"'),
    ('a3:"Too many requests, try again in 20 seconds"\n', UpstreamRateLimited, "in 20 s"),
    ('a3:{"error":"User does not have access to evaluation session"}\n', InvalidSession, "new conversation"),
    ('a3:"{\\"error\\":{\\"message\\":\\"provider overloaded\\"}}"\n', LMArenaError, "provider overloaded"),
])
def test_errors_in_the_stream(stream, kind, words):
    parser = StreamParser()
    events = parser.feed(stream)
    error = failure(events)
    assert type(error) is kind and words in error.message
    assert parser.feed('a0:"more"\n') == [] and parser.close() == []


def test_finish_error_is_not_a_finish():
    events = parse('a0:"x"\nad:{"finishReason":"error"}\n')
    assert not [e for e in events if isinstance(e, Finish)]


@pytest.mark.parametrize("page, kind", [(CHALLENGE, NeedsVerification), (BLOCK, CloudflareBlocked)])
def test_cloudflare_page_mid_stream(page, kind):
    events = parse('a0:"start"\n', page + "\n", 'a0:"after"\n')
    assert events[0] == TextDelta("start")
    assert isinstance(failure(events), kind)


@pytest.mark.parametrize("page, kind", [(CHALLENGE, NeedsVerification), (BLOCK.replace("\n", ""), CloudflareBlocked)])
def test_cloudflare_page_without_a_trailing_newline_fails_before_the_stream_ends(page, kind):
    parser = StreamParser()
    events = parser.feed('a0:"x"\n') + parser.feed(page[:40]) + parser.feed(page[40:])
    assert isinstance(failure(events), kind)  # at feed time: the tab may keep the socket open


@pytest.mark.parametrize("body, kind", [
    ('{\n  "status": 403,\n  "error": "recaptcha validation failed"\n}', VerificationRequired),
    ('{\n  "error": "User 0192f0a1-2b3c-7d4e-8f00-000000000001 does not have access to evaluation session"\n}',
     InvalidSession),
    ('{\n  "error": {\n    "message": "Too many requests"\n  }\n}', UpstreamRateLimited),
])
def test_json_error_body_spread_over_lines(body, kind):
    error = failure(parse(body[:7], body[7:]))
    assert type(error) is kind
    assert not UUID.search(error.message)


def test_json_error_body_on_one_line_with_its_status():
    error = failure(parse('{"statusCode": 429, "error": "slow down"}\n'))
    assert isinstance(error, UpstreamRateLimited)


@pytest.mark.parametrize("body, words", [
    ("<!DOCTYPE html>\n<html><head><title>Arena | Chat</title></head>\n<body>app</body></html>\n",
     "an HTML page (Arena | Chat)"),
    ("Internal Server Error", "Internal Server Error"),
])
def test_something_else_where_the_stream_was_expected(body, words):
    error = failure(parse(body))
    assert isinstance(error, UnexpectedAnswer) and words in error.message
    assert "update arenahub" in error.message.lower()


def test_unframed_lines_beside_an_answer_are_only_logged():
    events = parse('event: message\na0:"hi"\n: keep-alive\nad:{"finishReason":"stop"}\n')
    assert [e.kind for e in events if isinstance(e, Unknown)] == ["unframed"]  # ": keep-alive" is a comment
    assert events[-1] == Finish("stop")


def test_a_stream_that_ends_with_no_answer_and_no_finish():
    for stream in ("", 'af:{"messageId":"m"}\n', 'a2:[{"type":"heartbeat"}]\nag:"thinking only"\n'):
        error = failure(parse(stream))
        assert type(error) is LMArenaError and "without an answer or a finish line" in error.message


def test_an_empty_answer_that_finishes_is_not_a_failure():
    assert parse('af:{}\nad:{"finishReason":"stop"}\n') == [Finish("stop")]


def test_a_line_too_long_to_be_an_answer():
    parser = StreamParser()
    events = parser.feed('a0:"' + "x" * 499_999) + parser.feed("y" * 10)
    assert "500,000 characters" in failure(events).message
