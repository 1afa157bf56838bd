"""The models in the arena.ai page (``initialModels`` in the Next.js flight data) and models.json from them."""

import json

import pytest

from arenahub.bridge.lmarena import (
    ModelListNotFound,
    PageModel,
    extract_page_models,
    models_json_text,
    page_models,
)

IDS = [f"0192f0a1-2b3c-7d4e-8f00-{n:012x}" for n in range(1, 10)]


def model(i, name, out=None, **extra):
    caps = {"inputCapabilities": {"text": True, "image": {"multipleImages": True}}}
    if out is not None:
        caps["outputCapabilities"] = out
    return {"id": IDS[i], "publicName": name, "organization": "org", "capabilities": caps, **extra}


MODELS = [
    model(0, "gpt-5", {"text": True}, displayName="GPT-5"),
    model(1, "nano-banana", {"image": {"aspectRatios": ["1:1"]}, "text": True}),
    model(2, "sonar-pro", {"search": True}),
    model(3, "veo-3", {"video": True}),
    model(4, "old-model"),  # no outputCapabilities: a chat model, as older pages had
    model(5, "hidden", {"text": True}, userSelectable=False),
    model(6, "empty-image", {"image": {}}),
    model(7, "explicit", {"text": True, "image": False, "search": None}, userSelectable=True),
]
EXPECTED = [
    PageModel("gpt-5", IDS[0], "GPT-5", "text", True),
    PageModel("nano-banana", IDS[1], "nano-banana", "image", True),
    PageModel("sonar-pro", IDS[2], "sonar-pro", "search", True),
    PageModel("veo-3", IDS[3], "veo-3", None, True),
    PageModel("old-model", IDS[4], "old-model", "text", True),
    PageModel("hidden", IDS[5], "hidden", "text", False),
    PageModel("empty-image", IDS[6], "empty-image", "image", True),
    PageModel("explicit", IDS[7], "explicit", "text", True),
]
SELECTABLE = {"gpt-5": IDS[0], "nano-banana": f"{IDS[1]}:image", "sonar-pro": f"{IDS[2]}:search",
              "old-model": IDS[4], "empty-image": f"{IDS[6]}:image", "explicit": IDS[7]}


def flight_row(models):
    """A flight row as the page streams it: a reference id, then JSON that holds the models."""
    props = {"initialModels": models, "initialModelAId": IDS[0], "mode": "direct"}
    return '5:["$","$L1a",null,' + json.dumps(props) + "]\n"


def html(*pushes):
    scripts = "".join(f"<script>self.__next_f.push([1,{json.dumps(p)}])</script>" for p in pushes)
    return ('<!DOCTYPE html><html><head><title>Arena</title>'
            '<script src="https://www.google.com/recaptcha/enterprise.js?render=6Lxyz"></script></head><body>'
            '<script>(self.__next_f=self.__next_f||[]).push([0])</script>' + scripts + "</body></html>")


def test_models_from_the_joined_flight_data():
    assert page_models(flight_row(MODELS)) == EXPECTED


@pytest.mark.parametrize("pieces", [1, 2, 7, 40])
def test_models_split_over_several_pushes(pieces):
    row = flight_row(MODELS)
    size = -(-len(row) // pieces)
    assert page_models(html(*(row[i:i + size] for i in range(0, len(row), size)))) == EXPECTED


def test_escaped_json_outside_a_push():
    text = '<script>window.__data = "' + json.dumps({"initialModels": MODELS}).replace('"', '\\"') + '";</script>'
    assert '\\"publicName\\"' in text
    assert page_models(text) == EXPECTED


def test_extract_keeps_what_a_person_can_select_and_chat_can_serve():
    assert extract_page_models(html(flight_row(MODELS))) == SELECTABLE


@pytest.mark.parametrize("entry", [
    {"id": "not-a-uuid", "publicName": "bad-id"},
    {"id": IDS[8], "publicName": ""},
    {"id": IDS[8], "publicName": 7},
    {"id": IDS[8], "name": "no-public-name"},
])
def test_entries_that_are_not_models_are_skipped(entry):
    assert [m.name for m in page_models(flight_row([entry, MODELS[0]]))] == ["gpt-5"]


def test_each_name_once_the_first_wins():
    twice = [MODELS[0], {**MODELS[0], "id": IDS[8], "displayName": "second"}]
    assert page_models(flight_row(twice)) == [EXPECTED[0]]


def test_a_model_with_deep_capabilities_before_its_name():
    deep = {"id": IDS[8], "capabilities": {"inputCapabilities": {"image": {"a": {"b": {"c": {}}}}},
                                           "outputCapabilities": {"text": True}}, "publicName": "deep"}
    assert page_models(flight_row([deep])) == [PageModel("deep", IDS[8], "deep", "text", True)]


@pytest.mark.parametrize("text", ["", "<html><body>Sign in</body></html>", flight_row([MODELS[3], MODELS[5]])])
def test_no_model_list(text):
    with pytest.raises(ModelListNotFound) as info:
        extract_page_models(text)
    assert (info.value.status, info.value.code) == (502, "model_list_not_found")
    assert "Reload the tab" in info.value.message


def test_page_model_values():
    assert [m.value for m in EXPECTED if m.kind] == [IDS[0], f"{IDS[1]}:image", f"{IDS[2]}:search", IDS[4],
                                                     IDS[5], f"{IDS[6]}:image", IDS[7]]


def test_models_json_text_merges_and_sorts():
    existing = {"Zeta-mine": "null:image", "gpt-5": "old", "alpha": IDS[8]}
    text = models_json_text({"gpt-5": IDS[0], "Beta": f"{IDS[1]}:image", "ünicode": IDS[2]}, existing)
    assert text.endswith("}\n") and "ünicode" in text
    assert list(json.loads(text).items()) == [("alpha", IDS[8]), ("Beta", f"{IDS[1]}:image"), ("gpt-5", IDS[0]),
                                              ("Zeta-mine", "null:image"), ("ünicode", IDS[2])]
    assert json.loads(models_json_text({"a": IDS[0]})) == {"a": IDS[0]}
