"""An OpenAI history as the one user message arena.ai takes (the documented format), and follow-ups."""

import time
from types import SimpleNamespace

import pytest

from arenahub.bridge.lmarena import (
    Conversations,
    ImageRef,
    Prompt,
    Turn,
    flatten,
    read_turns,
)
from arenahub.bridge.lmarena import conversation as conv
from arenahub.protocol.errors import InvalidRequest

PNG = "data:image/png;base64,iVBORw0KGgo="
PREAMBLE = conv.PREAMBLE


def image(url):
    return {"type": "image_url", "image_url": {"url": url}}


def flat(messages, **kw):
    return flatten(read_turns(messages), **kw)


# --- reading the request's messages ---

def test_roles_and_content_shapes():
    turns = read_turns([
        {"role": "developer", "content": "dev"},
        {"role": "system", "content": [{"type": "text", "text": "a"}, {"type": "input_text", "text": "b"}]},
        {"role": "user", "content": [{"type": "text", "text": "look"}, image(PNG)]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Paris"}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        {"role": "function", "name": "clock", "content": "noon"},
        {"role": "assistant", "content": "ok", "function_call": {"name": "f", "arguments": "{}"}},
        {"role": "user", "content": [{"type": "input_image", "image_url": " https://x.example/i.png ",
                                      }]},
    ])
    assert [t.role for t in turns] == ["system", "system", "user", "assistant", "tool_result", "tool_result",
                                       "assistant", "user"]
    assert turns[1].text == "a\n\nb"
    assert turns[2].text == "look\n\n\x00image\x00"
    assert turns[2].images == (ImageRef(PNG, None, "messages[2].content[1].image_url.url"),)
    assert turns[3].text == '[called weather({"city":"Paris"})]'
    assert (turns[4].label, turns[5].label) == ("weather", "clock")  # the call's tool, found by its id
    assert turns[6].text == "ok\n[called f({})]"
    assert turns[7].images[0].url == "https://x.example/i.png"


def test_image_name_is_kept():
    (turn,) = read_turns([{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": PNG, "name": "cat.png"}}]}])
    assert turn.images[0].name == "cat.png"


@pytest.mark.parametrize("messages, param, words", [
    (None, "messages", "non-empty list"),
    ([], "messages", "non-empty list"),
    (["hi"], "messages[0]", "must be an object"),
    ([{"role": "user", "content": "x"}, {"role": "robot", "content": "x"}], "messages[1].role", "'robot'"),
    ([{"content": "x"}], "messages[0].role", "None"),
    ([{"role": "user", "content": 5}], "messages[0].content", "string or a list"),
    ([{"role": "user", "content": [{"type": "audio"}]}], "messages[0].content[0]", "type 'audio'"),
    ([{"role": "user", "content": ["text"]}], "messages[0].content[0]", "type None"),
    ([{"role": "user", "content": [{"type": "text", "text": 1}]}], "messages[0].content[0]", "not a text"),
    ([{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {}}]}],
     "messages[0].content[1].image_url.url", "is missing"),
    ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "  "}}]}],
     "messages[0].content[0].image_url.url", "data: URI or an http(s) URL"),
])
def test_read_turns_errors_name_the_field(messages, param, words):
    with pytest.raises(InvalidRequest) as info:
        read_turns(messages)
    assert info.value.param == param and info.value.status == 400
    assert f"`{param}`" in info.value.message and words in info.value.message


# --- the flattened message ---

def test_a_single_user_message_goes_verbatim():
    assert flat([{"role": "user", "content": "  hello <b>\n"}]) == Prompt("  hello <b>\n", ())


def test_an_empty_single_message_is_one_space():
    assert flat([{"role": "user", "content": ""}]).content == " "


def test_a_history_becomes_a_transcript():
    prompt = flat([{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"},
                   {"role": "assistant", "content": "hello"}, {"role": "user", "content": "bye"}])
    assert prompt.content == (
        f"{PREAMBLE}\n\n<system>\nbe brief\n</system>\n\n<user>\nhi\n</user>\n\n"
        "<assistant>\nhello\n</assistant>\n\n<user>\nbye\n</user>")
    assert "Reply as the assistant to the last user message" in PREAMBLE


def test_tool_calls_and_results():
    prompt = flat([
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": "checking", "tool_calls": [
            {"function": {"name": "weather", "arguments": '{"city":"Paris"}'}},
            {"function": {"name": "time"}}]},
        {"role": "tool", "name": "weather", "content": "sunny"},
        {"role": "tool", "content": "noon"},
    ])
    assert prompt.content.split("\n\n", 2)[2] == (
        '<assistant>\nchecking\n[called weather({"city":"Paris"})]\n[called time()]\n</assistant>\n\n'
        '<tool_result name="weather">\nsunny\n</tool_result>\n\n<tool_result>\nnoon\n</tool_result>')


def test_images_are_numbered_and_attached_in_order():
    one, two, three = PNG, "https://x.example/2.png", PNG + "AA"
    prompt = flat([{"role": "user", "content": [image(one), {"type": "text", "text": "and"}, image(two)]},
                   {"role": "assistant", "content": "seen"},
                   {"role": "user", "content": [{"type": "text", "text": "now"}, image(three)]}])
    assert [i.url for i in prompt.images] == [one, two, three]
    assert "<user>\n[image 1]\n\nand\n\n[image 2]\n</user>" in prompt.content
    assert "<user>\nnow\n\n[image 3]\n</user>" in prompt.content
    assert "\x00" not in prompt.content


def test_a_single_message_with_images():
    prompt = flat([{"role": "user", "content": [{"type": "text", "text": "what is"}, image(PNG)]}])
    assert prompt == Prompt("what is\n\n[image 1]", (ImageRef(PNG, None, "messages[0].content[1].image_url.url"),))


@pytest.mark.parametrize("count, ok", [(10, True), (11, False)])
def test_at_most_ten_images(count, ok):
    messages = [{"role": "user", "content": [image(PNG)] * (count - 1)}, {"role": "assistant", "content": "x"},
                {"role": "user", "content": [image(PNG)]}]
    if ok:
        assert len(flat(messages).images) == count
    else:
        with pytest.raises(InvalidRequest, match="carries 11 images; arena.ai takes at most 10"):
            flat(messages)


def test_a_prefill_is_continued():
    prompt = flat([{"role": "user", "content": "write a poem"}, {"role": "assistant", "content": "Roses are"}])
    assert prompt.content.startswith(conv.PREAMBLE_CONTINUE + "\n\n<user>")
    assert prompt.content.endswith("<assistant>\nRoses are\n</assistant>")
    assert "Continue the last assistant message" in conv.PREAMBLE_CONTINUE


def test_tavern_mode_merges_the_systems_at_the_top():
    messages = [{"role": "system", "content": "one"}, {"role": "user", "content": "hi"},
                {"role": "system", "content": [image(PNG)]}, {"role": "developer", "content": "  "},
                {"role": "user", "content": [image("https://x.example/u.png")]}]
    prompt = flat(messages, merge_system=True)
    assert prompt.content == (f"{PREAMBLE}\n\n<system>\none\n\n[image 1]\n</system>\n\n<user>\nhi\n</user>\n\n"
                              "<user>\n[image 2]\n</user>")
    assert [i.url for i in prompt.images] == [PNG, "https://x.example/u.png"]
    assert flat(messages).content.count("<system>") == 3  # without tavern mode: where they were


def test_tavern_mode_without_a_system_changes_nothing():
    messages = [{"role": "user", "content": "hi"}]
    assert flat(messages, merge_system=True) == flat(messages)


def test_a_follow_up_says_what_is_new():
    prompt = flat([{"role": "tool", "name": "t", "content": "42"}, {"role": "user", "content": "so?"}],
                  follow_up=True)
    assert prompt.content == (f"{conv.PREAMBLE_FOLLOW_UP}\n\n<tool_result name=\"t\">\n42\n</tool_result>\n\n"
                              "<user>\nso?\n</user>")
    assert flat([{"role": "user", "content": "so?"}], follow_up=True).content == "so?"


# --- conversations this bridge answered ---

KEY = "model|direct|a|"
HISTORY = [Turn("system", "s"), Turn("user", "hi")]


def test_a_history_that_continues_an_answer_is_found():
    known = Conversations()
    known.remember(KEY, HISTORY, "hello", "eval-1", "tab-1")
    new = [Turn("user", "more"), Turn("user", "and more")]
    found = known.find(KEY, [*HISTORY, Turn("assistant", "hello"), *new])
    assert found is not None
    assert (found[0].evaluation_id, found[0].tab_id, found[1]) == ("eval-1", "tab-1", new)


@pytest.mark.parametrize("turns", [
    [*HISTORY, Turn("assistant", "hello!"), Turn("user", "x")],  # the answer was edited
    [Turn("system", "s2"), Turn("user", "hi"), Turn("assistant", "hello"), Turn("user", "x")],
    [*HISTORY, Turn("assistant", "hello")],  # nothing new: a prefill
    [*HISTORY, Turn("user", "x")],  # no answer in it
    [*HISTORY, Turn("assistant", "hello", (ImageRef(PNG, None, "w"),)), Turn("user", "x")],
])
def test_anything_else_is_not_a_follow_up(turns):
    known = Conversations()
    known.remember(KEY, HISTORY, "hello", "eval-1", "tab-1")
    assert known.find(KEY, turns) is None


def test_the_key_separates_models_and_modes():
    known = Conversations()
    known.remember(KEY, HISTORY, "hello", "eval-1", "tab-1")
    assert known.find("model|battle|a|", [*HISTORY, Turn("assistant", "hello"), Turn("user", "x")]) is None


def test_a_continued_conversation_cannot_be_branched_from_before():
    known = Conversations()
    known.remember(KEY, HISTORY, "a1", "eval-1", "tab-1")
    longer = [*HISTORY, Turn("assistant", "a1"), Turn("user", "u2")]
    known.remember(KEY, longer, "a2", "eval-1", "tab-1")
    # The site's conversation now holds u2 and a2: a history that edits u2 is not what it holds.
    assert known.find(KEY, [*HISTORY, Turn("assistant", "a1"), Turn("user", "edited")]) is None
    assert known.find(KEY, [*longer, Turn("assistant", "a2"), Turn("user", "u3")]) is not None
    assert len(known) == 1


def test_forget():
    known = Conversations()
    known.remember(KEY, HISTORY, "hello", "eval-1", "tab-1")
    known.remember(KEY, [Turn("user", "other")], "x", "eval-2", "tab-1")
    known.forget("eval-1")
    assert len(known) == 1
    assert known.find(KEY, [*HISTORY, Turn("assistant", "hello"), Turn("user", "x")]) is None


def test_entries_expire_after_the_ttl(monkeypatch):
    known = Conversations(ttl=60)
    known.remember(KEY, HISTORY, "hello", "eval-1", "tab-1")
    start = time.monotonic()
    later = [0.0]
    monkeypatch.setattr(conv, "time", SimpleNamespace(monotonic=lambda: start + later[0]))
    follow = [*HISTORY, Turn("assistant", "hello"), Turn("user", "x")]
    later[0] = 59.9
    assert known.find(KEY, follow) is not None
    later[0] = 60.1
    assert known.find(KEY, follow) is None
    assert len(known) == 0


def test_the_oldest_are_dropped_at_the_limit():
    known = Conversations(limit=2)
    for i in range(3):
        known.remember(KEY, [Turn("user", str(i))], "a", f"eval-{i}", "tab")
    assert len(known) == 2
    assert known.find(KEY, [Turn("user", "0"), Turn("assistant", "a"), Turn("user", "x")]) is None
    assert known.find(KEY, [Turn("user", "2"), Turn("assistant", "a"), Turn("user", "x")]) is not None


def test_only_digests_are_kept():
    known = Conversations()
    known.remember(KEY, [Turn("user", "a secret prompt")], "a secret answer", "eval-1", "tab")
    assert "secret" not in repr(vars(known))
