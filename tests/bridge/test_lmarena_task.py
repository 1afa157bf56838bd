"""build_task: an OpenAI chat request -> the task payload the userscript turns into the upstream call."""

import copy

import pytest

from arenahub.bridge.lmarena import Endpoint, Model, build_task
from arenahub.protocol.errors import InvalidRequest

MODEL_ID = "e2d9d353-6dbe-4414-bf87-bd289d523726"
SESSION = "cebc557a-3f35-4794-beaf-6e33d947e0cd"
MESSAGE = "562414bc-0ea8-412a-bd15-8ec1cc61f4af"
TEXT = Model("gemini", MODEL_ID)
IMAGE = Model("nano-banana", None, image=True)
DIRECT = Endpoint(SESSION, MESSAGE, "direct_chat", "a")
BATTLE_A = Endpoint(SESSION, MESSAGE, "battle", "a")
BATTLE_B = Endpoint(SESSION, MESSAGE, "battle", "b")
PNG = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="

CHAT = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"}, {"role": "user", "content": "bye"}]


def task(messages, model=TEXT, endpoint=DIRECT, *, tavern=False, bypass=False):
    return build_task({"model": model.name, "messages": messages}, model, endpoint, tavern_mode=tavern, bypass=bypass)


def shape(payload):
    return [(t["role"], t["content"], t["participantPosition"]) for t in payload["message_templates"]]


@pytest.mark.parametrize("endpoint, positions, model_id", [
    (DIRECT, ["b", "a", "a", "a"], MODEL_ID),  # direct_chat: system b, the rest a
    (BATTLE_A, ["a", "a", "a", "a"], None),  # battle: everything at the target; the model stays hidden
    (BATTLE_B, ["b", "b", "b", "b"], None),
])
def test_modes_set_positions_and_model_id(endpoint, positions, model_id):
    payload = task(CHAT, endpoint=endpoint)
    assert [t["participantPosition"] for t in payload["message_templates"]] == positions
    assert payload["target_model_id"] == model_id
    assert (payload["session_id"], payload["message_id"]) == (SESSION, MESSAGE)
    assert payload["is_image_request"] is False


def test_payload_has_exactly_the_wire_keys():
    payload = task(CHAT)
    assert set(payload) == {"message_templates", "target_model_id", "session_id", "message_id", "is_image_request"}
    assert all(set(t) == {"role", "content", "attachments", "participantPosition"} for t in payload["message_templates"])


def test_the_request_is_not_mutated():
    messages = [{"role": "developer", "content": [{"type": "text", "text": "x"}]},
                {"role": "user", "content": [{"type": "text", "text": "q --bypass"},
                                             {"type": "image_url", "image_url": {"url": PNG}}]}]
    before = copy.deepcopy(messages)
    task(messages, tavern=True, bypass=True)
    assert messages == before


@pytest.mark.parametrize("role, expected", [("system", "system"), ("developer", "system"), ("user", "user"),
                                            ("assistant", "assistant"), ("tool", "user"), ("function", "user")])
def test_roles_are_mapped(role, expected):
    assert task([{"role": role, "content": "x"}])["message_templates"][0]["role"] == expected


def test_developer_is_a_system_message_for_positions_and_tavern():
    payload = task([{"role": "developer", "content": "rules"}, {"role": "user", "content": "q"}])
    assert shape(payload) == [("system", "rules", "b"), ("user", "q", "a")]


@pytest.mark.parametrize("message, expected", [
    ({"role": "tool", "content": "42", "tool_call_id": "call_1"}, "[tool result call_1]\n42"),
    ({"role": "function", "content": "sunny", "name": "weather"}, "[function result weather]\nsunny"),
    ({"role": "tool", "content": "x"}, "[tool result]\nx"),
])
def test_tool_results_become_labelled_user_turns(message, expected):
    assert shape(task([message])) == [("user", expected, "a")]


def test_assistant_tool_calls_are_written_out():
    message = {"role": "assistant", "content": None,
               "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}]}
    assert task([message])["message_templates"][0]["content"] == '[tool call f({"a":1})]'


@pytest.mark.parametrize("content, expected", [
    ("", " "), ("   ", " "), (None, " "), ([], " "),  # LMArena fails on an empty user turn
    ([{"type": "text", "text": "a"}, {"type": "text", "text": "b"}], "a\n\nb"),
    ([{"type": "input_text", "text": "a"}], "a"),
    ("plain", "plain"),
])
def test_user_content(content, expected):
    assert task([{"role": "user", "content": content}])["message_templates"][0]["content"] == expected


def test_empty_assistant_content_stays_empty():
    assert task([{"role": "assistant", "content": None}])["message_templates"][0]["content"] == ""


# --- tavern mode ---

@pytest.mark.parametrize("messages, expected", [
    ([{"role": "user", "content": "q"}, {"role": "system", "content": "s1"}, {"role": "assistant", "content": "a"},
      {"role": "developer", "content": "s2"}, {"role": "user", "content": "q2"}],
     [("system", "s1\n\ns2", "b"), ("user", "q", "a"), ("assistant", "a", "a"), ("user", "q2", "a")]),
    ([{"role": "system", "content": ""}, {"role": "user", "content": "q"}], [("user", "q", "a")]),
    ([{"role": "user", "content": "q"}], [("user", "q", "a")]),
    ([{"role": "system", "content": "only"}], [("system", "only", "b")]),
])
def test_tavern_mode_merges_system_messages_at_the_start(messages, expected):
    assert shape(task(messages, tavern=True)) == expected


def test_without_tavern_mode_system_messages_stay_in_place():
    messages = [{"role": "user", "content": "q"}, {"role": "system", "content": "s"}]
    assert shape(task(messages)) == [("user", "q", "a"), ("system", "s", "b")]


def test_tavern_mode_in_battle_puts_the_merged_message_at_the_target():
    messages = [{"role": "system", "content": "s1"}, {"role": "system", "content": "s2"}, {"role": "user", "content": "q"}]
    assert shape(task(messages, endpoint=BATTLE_B, tavern=True)) == [("system", "s1\n\ns2", "b"), ("user", "q", "b")]


# --- bypass mode ---

@pytest.mark.parametrize("model, endpoint, extra", [
    (TEXT, DIRECT, [("user", " ", "a")]),
    (TEXT, BATTLE_B, [("user", " ", "b")]),
    (IMAGE, DIRECT, []),  # image generation does not take the extra turn
])
def test_bypass_appends_an_empty_user_turn_for_text_models(model, endpoint, extra):
    messages = [{"role": "user", "content": "q"}]
    base = shape(task(messages, model, endpoint))
    assert shape(task(messages, model, endpoint, bypass=True)) == base + extra


def test_bypass_turn_comes_last_after_tavern_merge():
    messages = [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}]
    assert shape(task(messages, tavern=True, bypass=True)) == [("system", "s", "b"), ("user", "q", "a"),
                                                               ("user", " ", "a")]
    assert task(messages, bypass=True)["message_templates"][-1]["attachments"] == []


# --- the "--bypass" suffix with images ---

def image_turn(text):
    return {"role": "user", "content": [{"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": PNG}}]}


def test_bypass_suffix_moves_images_to_an_empty_assistant_turn():
    payload = task([{"role": "system", "content": "s"}, image_turn("describe it --bypass")])
    templates = payload["message_templates"]
    assert [(t["role"], t["content"]) for t in templates] == [("system", "s"), ("assistant", ""),
                                                             ("user", "describe it")]
    assert templates[1]["attachments"][0]["url"] == PNG
    assert templates[2]["attachments"] == []


def test_bypass_suffix_as_first_turn_gets_a_user_turn_before_it():
    templates = task([image_turn("--bypass")])["message_templates"]
    assert [(t["role"], t["content"], len(t["attachments"])) for t in templates] == [
        ("user", " ", 0), ("assistant", "", 1), ("user", " ", 0)]


@pytest.mark.parametrize("messages", [
    [{"role": "user", "content": "no image --bypass"}],  # no image: nothing to move
    [image_turn("no flag")],
    [image_turn("flag not at end --bypass please")],
    [image_turn("x --bypass"), {"role": "assistant", "content": "last is not user"}],
])
def test_bypass_suffix_needs_a_last_user_turn_with_images_ending_in_the_flag(messages):
    templates = task(messages)["message_templates"]
    assert [t["role"] for t in templates] == [m["role"] for m in messages]
    first = templates[0]
    assert first["content"] == (messages[0]["content"] if isinstance(messages[0]["content"], str)
                                else messages[0]["content"][0]["text"])
    assert len(first["attachments"]) == (0 if isinstance(messages[0]["content"], str) else 1)


# --- image models ---

def test_image_model_request():
    payload = task([{"role": "user", "content": "a cat"}], IMAGE, bypass=True)
    assert payload["is_image_request"] is True
    assert payload["target_model_id"] is None
    assert shape(payload) == [("user", "a cat", "a")]


def test_image_model_with_an_id():
    payload = task([{"role": "user", "content": "a cat"}], Model("imagen", MODEL_ID, image=True))
    assert (payload["is_image_request"], payload["target_model_id"]) == (True, MODEL_ID)


# --- attachments ---

@pytest.mark.parametrize("image_url, expected", [
    ({"url": PNG}, {"name": "image-1.png", "contentType": "image/png", "url": PNG}),
    (PNG, {"name": "image-1.png", "contentType": "image/png", "url": PNG}),  # the short string form
    ({"url": "data:image/jpeg;base64,/9j/4AAQ"}, {"name": "image-1.jpg", "contentType": "image/jpeg"}),
    ({"url": "data:image/webp;base64,UklGRg=="}, {"name": "image-1.webp", "contentType": "image/webp"}),
    ({"url": "data:IMAGE/GIF;base64,R0lGOD=="}, {"name": "image-1.gif", "contentType": "image/gif"}),
    ({"url": "data:application/pdf;base64,JVBERi0="}, {"name": "file-1.pdf", "contentType": "application/pdf"}),
    ({"url": "data:image/svg+xml,%3Csvg%3E"}, {"name": "image-1.svg", "contentType": "image/svg+xml"}),
    ({"url": "https://example.com/pics/cat.JPEG?size=2"}, {"name": "cat.JPEG", "contentType": "image/jpeg"}),
    ({"url": "https://example.com/a%20b.webp"}, {"name": "a b.webp", "contentType": "image/webp"}),
    ({"url": "http://example.com/x.gif#frag"}, {"name": "x.gif", "contentType": "image/gif"}),
    ({"url": "https://example.com/render?id=3"}, {"name": "image-1.png", "contentType": "image/png"}),
    ({"url": "https://example.com/get.php?img=1"}, {"name": "image-1.png", "contentType": "image/png"}),
    ({"url": "https://example.com/"}, {"name": "image-1.png", "contentType": "image/png"}),
    ({"url": PNG, "detail": "high"}, {"name": "image-1.png"}),  # detail is not a file name
    ({"url": PNG, "detail": "photo.png"}, {"name": "photo.png"}),  # ... unless it is one (existing bridge)
    ({"url": PNG, "name": "mine.png"}, {"name": "mine.png"}),
    ({"url": f"  {PNG}  "}, {"url": PNG}),
])
def test_attachments(image_url, expected):
    message = {"role": "user", "content": [{"type": "image_url", "image_url": image_url}]}
    (attachment,) = task([message])["message_templates"][0]["attachments"]
    assert set(attachment) == {"name", "contentType", "url"}
    assert attachment | expected == attachment


def test_attachments_are_numbered_across_messages_and_text_is_joined():
    messages = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": PNG}},
                                             {"type": "text", "text": "one"}]},
                {"role": "assistant", "content": "ok"},
                {"role": "user", "content": [{"type": "text", "text": "two"},
                                             {"type": "image_url", "image_url": {"url": PNG}},
                                             {"type": "image_url", "image_url": {"url": "https://h/c.png"}}]}]
    templates = task(messages)["message_templates"]
    assert [a["name"] for t in templates for a in t["attachments"]] == ["image-1.png", "image-2.png", "c.png"]
    assert templates[0]["content"] == "one"
    assert templates[1]["attachments"] == []


@pytest.mark.parametrize("part, param", [
    ({"type": "image_url", "image_url": {"url": "file:///etc/passwd"}}, "messages[0].content[0].image_url.url"),
    ({"type": "image_url", "image_url": {"url": "ftp://h/x.png"}}, "messages[0].content[0].image_url.url"),
    ({"type": "image_url", "image_url": {"url": "cat.png"}}, "messages[0].content[0].image_url.url"),
    ({"type": "image_url", "image_url": {"url": "https:///x.png"}}, "messages[0].content[0].image_url.url"),
    ({"type": "image_url", "image_url": {"url": ""}}, "messages[0].content[0].image_url.url"),
    ({"type": "image_url", "image_url": {}}, "messages[0].content[0].image_url.url"),
    ({"type": "image_url", "image_url": 7}, "messages[0].content[0].image_url.url"),
    ({"type": "image_url", "image_url": {"url": "data:image/png;base64"}}, "messages[0].content[0].image_url.url"),
    ({"type": "image_url", "image_url": {"url": "data:;base64,iVBO"}}, "messages[0].content[0].image_url.url"),
    ({"type": "image_url", "image_url": {"url": "data:png;base64,iVBO"}}, "messages[0].content[0].image_url.url"),
    ({"type": "image_url", "image_url": {"url": "data:image/png;base64,"}}, "messages[0].content[0].image_url.url"),
    ({"type": "image_url", "image_url": {"url": "data:image/png;base64,not*base64!"}},
     "messages[0].content[0].image_url.url"),
    ({"type": "input_audio", "input_audio": {}}, "messages[0].content[0]"),
    ({"type": "text", "text": 5}, "messages[0].content[0]"),
    ("just a string", "messages[0].content[0]"),
])
def test_bad_attachments_and_parts_are_named(part, param):
    with pytest.raises(InvalidRequest) as info:
        task([{"role": "user", "content": [part]}])
    assert info.value.param == param
    assert info.value.status == 400
    assert f"`{param}`" in info.value.message


@pytest.mark.parametrize("request_, param", [
    ({"messages": []}, "messages"),
    ({}, "messages"),
    ({"messages": "hi"}, "messages"),
    ({"messages": ["hi"]}, "messages[0]"),
    ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
    ({"messages": [{"content": "x"}]}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
])
def test_bad_requests_are_named(request_, param):
    with pytest.raises(InvalidRequest) as info:
        build_task(request_, TEXT, DIRECT, tavern_mode=False, bypass=False)
    assert info.value.param == param


# --- Endpoint and Model ---

@pytest.mark.parametrize("endpoint, position", [(DIRECT, "a"), (Endpoint("s", "m", "direct_chat", "b"), "a"),
                                                (BATTLE_A, "a"), (BATTLE_B, "b")])
def test_endpoint_position(endpoint, position):
    assert endpoint.position == position


@pytest.mark.parametrize("kwargs", [{"mode": "direct"}, {"battle_target": "A"}, {"battle_target": "c"}])
def test_endpoint_rejects_bad_values(kwargs):
    with pytest.raises(ValueError):
        Endpoint("s", "m", **kwargs)


@pytest.mark.parametrize("value, model_id, image", [
    (MODEL_ID, MODEL_ID, False),
    (f"{MODEL_ID}:image", MODEL_ID, True),
    (f"{MODEL_ID}:IMAGE", MODEL_ID, True),
    (f"{MODEL_ID}:text", MODEL_ID, False),
    ("null:image", None, True),
    ("NULL:image", None, True),
    ("null", None, False),
    (None, None, False),
    (f" {MODEL_ID} ", MODEL_ID, False),
])
def test_model_values(value, model_id, image):
    model = Model.parse("m", value)
    assert (model.name, model.model_id, model.image) == ("m", model_id, image)


@pytest.mark.parametrize("value, words", [
    ("", "not an LMArena model id"),
    ("YOUR_MODEL_ID", "not an LMArena model id"),
    ("gpt-5", "not an LMArena model id"),
    (f"{MODEL_ID}:video", "has type 'video'"),
    (42, "must be a string"),
    (["x"], "must be a string"),
])
def test_bad_model_values(value, words):
    with pytest.raises(ValueError, match=words):
        Model.parse("m", value)


@pytest.mark.parametrize("model, value", [(TEXT, MODEL_ID), (IMAGE, "null:image"),
                                          (Model("x", MODEL_ID, True), f"{MODEL_ID}:image")])
def test_model_round_trip(model, value):
    assert model.to_value() == value
    assert Model.parse(model.name, value) == model
