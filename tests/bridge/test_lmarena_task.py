"""The tab's task for each way of calling arena.ai: a new conversation, a follow-up, and the 2025 retry."""

import pytest

from arenahub.bridge.lmarena import (
    ArenaSettings,
    Endpoint,
    ImageRef,
    Model,
    Turn,
    attachments,
    create_task,
    flatten,
    follow_up_task,
    read_turns,
    retry_task,
)
from arenahub.bridge.lmarena import conversation as conv
from arenahub.bridge.lmarena.task import attachment
from arenahub.protocol import tab
from arenahub.protocol.errors import InvalidRequest

A_ID = "0192f0a1-2b3c-7d4e-8f00-0000000000a1"
B_ID = "0192f0a1-2b3c-7d4e-8f00-0000000000b2"
SESSION = "cebc557a-3f35-4794-beaf-6e33d947e0cd"
MESSAGE = "562414bc-0ea8-412a-bd15-8ec1cc61f4af"
TEXT = Model("gemini", A_ID)
IMAGE = Model("imagen", A_ID, "image")
SEARCH = Model("sonar", A_ID, "search")
OTHER = Model("claude", B_ID)
B64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
PNG = f"data:image/png;base64,{B64}"
CHAT = read_turns([{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"},
                   {"role": "assistant", "content": "hello"}, {"role": "user", "content": "bye"}])


def ref(url, name=None, where="messages[0].content[0].image_url.url"):
    return ImageRef(url, name, where)


# --- a new conversation (create-evaluation) ---

@pytest.mark.parametrize("settings, a_id, b_id, position", [
    (ArenaSettings("direct"), A_ID, None, "a"),
    (ArenaSettings("direct", target="b"), A_ID, None, "a"),  # the target is for battle only
    (ArenaSettings("direct-battle", target="b"), A_ID, None, "a"),
    (ArenaSettings("side-by-side", side_by_side_model=OTHER), A_ID, B_ID, "a"),
    (ArenaSettings("battle", target="a"), None, None, "a"),
    (ArenaSettings("battle", target="b"), None, None, "b"),
])
def test_create_for_every_mode(settings, a_id, b_id, position):
    task, prompt = create_task(CHAT, TEXT, settings)
    assert (task.call, task.mode, task.modality) == ("create", settings.mode, "chat")
    assert (task.model_a_id, task.model_b_id) == (a_id, b_id)
    assert task.content == prompt.content == flatten(CHAT).content
    assert (task.evaluation_id, task.session_id, task.messages) == (None, None, [])
    assert settings.position() == position


@pytest.mark.parametrize("model, modality", [(TEXT, "chat"), (IMAGE, "image"), (SEARCH, "search")])
def test_modality_follows_the_model(model, modality):
    task, _ = create_task(CHAT, model, ArenaSettings())
    assert task.modality == modality
    assert follow_up_task(CHAT, model, ArenaSettings(), "eval-1")[0].modality == modality


def test_side_by_side_needs_the_other_model():
    with pytest.raises(ValueError, match="side_by_side_model"):
        create_task(CHAT, TEXT, ArenaSettings("side-by-side"))


def test_tavern_mode_merges_systems_in_a_new_conversation():
    turns = [*CHAT, Turn("system", "late rule")]
    task, _ = create_task(turns, TEXT, ArenaSettings(tavern_mode=True))
    assert task.content == flatten(turns, merge_system=True).content
    assert task.content.count("<system>") == 1 and "be brief\n\nlate rule" in task.content


def test_the_prompt_keeps_the_images_for_the_bridge_to_resolve():
    turns = read_turns([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": PNG}}]}])
    task, prompt = create_task(turns, TEXT, ArenaSettings())
    assert task.attachments == [] and prompt.images == turns[0].images
    assert attachments(prompt.images) == [tab.Attachment("image-1.png", "image/png", PNG)]


# --- a follow-up (post-to-evaluation) ---

@pytest.mark.parametrize("mode", ["direct", "direct-battle", "side-by-side", "battle"])
def test_follow_up_for_every_mode(mode):
    settings = ArenaSettings(mode, side_by_side_model=OTHER)
    task, prompt = follow_up_task([Turn("user", "and then?")], IMAGE, settings, "eval-7")
    assert (task.call, task.mode, task.modality, task.evaluation_id) == ("follow_up", mode, "image", "eval-7")
    assert task.content == prompt.content == "and then?"


def test_follow_up_of_several_turns_says_what_is_new():
    task, _ = follow_up_task([Turn("tool_result", "42", label="calc"), Turn("user", "so?")], TEXT,
                             ArenaSettings(), "eval-7")
    assert task.content.startswith(conv.PREAMBLE_FOLLOW_UP)
    assert '<tool_result name="calc">\n42\n</tool_result>' in task.content


# --- attachments: always data URLs by now ---

@pytest.mark.parametrize("url, name, expected", [
    (PNG, None, tab.Attachment("image-3.png", "image/png", PNG)),
    (PNG, "  cat.png ", tab.Attachment("cat.png", "image/png", PNG)),
    (f"DATA:Image/JPEG;base64,{B64}", None, tab.Attachment("image-3.jpg", "image/jpeg",
                                                            f"data:image/jpeg;base64,{B64}")),
    (f"data:image/webp;name=x.webp;base64, {B64} ", None, tab.Attachment("image-3.webp", "image/webp",
                                                                          f"data:image/webp;base64,{B64}")),
    (f"data:application/pdf;base64,{B64}", None, tab.Attachment("file-3.pdf", "application/pdf",
                                                                 f"data:application/pdf;base64,{B64}")),
    (f"data:application/x-thing;base64,{B64}", None, tab.Attachment("file-3.bin", "application/x-thing",
                                                                      f"data:application/x-thing;base64,{B64}")),
    ("data:image/png;base64,ab-_cd==", None, tab.Attachment("image-3.png", "image/png",
                                                            "data:image/png;base64,ab-_cd==")),
])
def test_attachment(url, name, expected):
    assert attachment(ref(url, name), 3) == expected


def test_attachment_names_are_bounded():
    assert len(attachment(ref(PNG, "x" * 500), 1).name) == 200


@pytest.mark.parametrize("url, words", [
    ("https://x.example/a.png", "must be a data: URI"),
    ("data:image/png;base64" + B64, "without a comma"),
    (f"data:;base64,{B64}", "without a media type"),
    (f"data:png;base64,{B64}", "without a media type"),
    (f"data:image/png,{B64}", "no valid base64"),
    ("data:image/png;base64,", "no valid base64"),
    ("data:image/png;base64,not*base64!", "no valid base64"),
])
def test_bad_attachments_name_the_field(url, words):
    where = "messages[2].content[1].image_url.url"
    with pytest.raises(InvalidRequest) as info:
        attachment(ref(url, where=where), 1)
    assert info.value.param == where and f"`{where}`" in info.value.message and words in info.value.message


def test_attachments_are_numbered_in_order():
    names = [a.name for a in attachments((ref(PNG), ref(PNG, "b.png"), ref(PNG)))]
    assert names == ["image-1.png", "b.png", "image-3.png"]


# --- the 2025 retry path (legacy mode) ---

DIRECT = Endpoint(SESSION, MESSAGE, "direct_chat", "a")
BATTLE_A = Endpoint(SESSION, MESSAGE, "battle", "a")
BATTLE_B = Endpoint(SESSION, MESSAGE, "battle", "b")


def shape(task):
    return [(m.role, m.content, m.position, [a.name for a in m.attachments]) for m in task.messages]


@pytest.mark.parametrize("endpoint, positions, model_id", [
    (DIRECT, ["b", "a", "a", "a"], A_ID),  # direct_chat: the system prompt on b, the rest on a
    (BATTLE_A, ["a", "a", "a", "a"], None),  # battle: everything on the target; the model stays hidden
    (BATTLE_B, ["b", "b", "b", "b"], None),
])
def test_retry_positions_and_model_id(endpoint, positions, model_id):
    task = retry_task(CHAT, TEXT, endpoint, tavern_mode=False, bypass=False)
    assert (task.call, task.session_id, task.message_id, task.model_id) == ("retry", SESSION, MESSAGE, model_id)
    assert [m.position for m in task.messages] == positions
    assert [(m.role, m.content) for m in task.messages] == [("system", "be brief"), ("user", "hi"),
                                                            ("assistant", "hello"), ("user", "bye")]


def test_retry_turns_tool_results_and_empty_users():
    turns = [Turn("user", ""), Turn("assistant", "x"), Turn("tool_result", "42", label="calc"),
             Turn("tool_result", "7")]
    task = retry_task(turns, TEXT, DIRECT, tavern_mode=False, bypass=False)
    assert shape(task) == [("user", " ", "a", []), ("assistant", "x", "a", []),
                           ("user", "[tool result calc]\n42", "a", []), ("user", "[tool result]\n7", "a", [])]


def test_retry_attachments_numbered_across_turns():
    turns = read_turns([
        {"role": "user", "content": [{"type": "text", "text": "look"}, {"type": "image_url", "image_url": PNG}]},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": PNG}},
                                     {"type": "image_url", "image_url": {"url": PNG, "name": "c.png"}}]},
    ])
    task = retry_task(turns, TEXT, DIRECT, tavern_mode=False, bypass=False)
    assert shape(task) == [("user", "look", "a", ["image-1.png"]), ("assistant", "ok", "a", []),
                           ("user", " ", "a", ["image-2.png", "c.png"])]


def test_retry_tavern_mode():
    turns = [Turn("user", "hi"), Turn("system", "one"), Turn("system", "two")]
    task = retry_task(turns, TEXT, DIRECT, tavern_mode=True, bypass=False)
    assert [(m.role, m.content) for m in task.messages] == [("system", "one\n\ntwo"), ("user", "hi")]


@pytest.mark.parametrize("model, endpoint, extra", [
    (TEXT, DIRECT, [("user", " ", "a", [])]),
    (TEXT, BATTLE_B, [("user", " ", "b", [])]),
    (IMAGE, DIRECT, []),  # image models get no empty turn
])
def test_retry_bypass_adds_an_empty_user_turn(model, endpoint, extra):
    plain = shape(retry_task(CHAT, model, endpoint, tavern_mode=False, bypass=False))
    assert shape(retry_task(CHAT, model, endpoint, tavern_mode=False, bypass=True)) == plain + extra


def image_turn(text, *urls):
    parts = [{"type": "text", "text": text}] + [{"type": "image_url", "image_url": {"url": u}} for u in urls]
    return read_turns([{"role": "user", "content": parts}])[0]


def test_image_bypass_moves_the_images_to_an_assistant_turn_before():
    pdf = f"data:application/pdf;base64,{B64}"
    turns = [Turn("user", "hi"), Turn("assistant", "hello"), image_turn("draw this --bypass  ", PNG, pdf)]
    task = retry_task(turns, TEXT, DIRECT, tavern_mode=False, bypass=False)
    assert shape(task) == [("user", "hi", "a", []), ("assistant", "hello", "a", []),
                           ("assistant", "", "a", ["image-1.png"]), ("user", "draw this", "a", ["file-2.pdf"])]


def test_image_bypass_of_a_first_message_starts_with_a_user_turn():
    task = retry_task([image_turn("--bypass", PNG)], TEXT, BATTLE_B, tavern_mode=False, bypass=False)
    assert shape(task) == [("user", " ", "b", []), ("assistant", "", "b", ["image-1.png"]),
                           ("user", " ", "b", [])]


@pytest.mark.parametrize("turn", [image_turn("draw this", PNG), image_turn("--bypass")])
def test_no_image_bypass_without_the_flag_or_images(turn):
    task = retry_task([turn], TEXT, DIRECT, tavern_mode=False, bypass=False)
    assert [m.role for m in task.messages] == ["user"]
