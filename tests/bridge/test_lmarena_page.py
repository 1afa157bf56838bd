"""extract_page_models / models_json_text: `arenahub bridge update-models` reads the page's model list."""

import json

import pytest

from arenahub.bridge.lmarena import (
    Model,
    ModelListNotFound,
    extract_page_models,
    models_json_text,
)

U = [f"{i:08x}-0000-4000-8000-00000000000{i}" for i in range(1, 8)]
PAGE_MODELS = [
    {"id": U[1], "publicName": "gpt-5-high", "organization": "openai", "provider": "openai",
     "capabilities": {"inputCapabilities": {"text": True, "image": True}, "outputCapabilities": {"text": True}}},
    # capabilities before the name: the owning object is found all the same
    {"id": U[2], "capabilities": {"inputCapabilities": {"text": True},
                                  "outputCapabilities": {"image": {"aspectRatios": ["1:1"]}}},
     "publicName": "imagen-4.0"},
    {"id": U[3], "publicName": "veo-3", "capabilities": {"outputCapabilities": {"video": True}}},  # not chat
    {"id": U[4], "publicName": "web-search 模型 \"β\"", "capabilities": {"outputCapabilities": {"search": True}}},
    {"id": U[5], "publicName": "older-model"},  # no capability data
    {"id": "not-a-uuid", "publicName": "broken"},
    {"id": U[6], "publicName": ""},
    {"id": U[1], "publicName": "gpt-5-high", "note": "listed twice: the first wins"},
    {"id": U[6], "publicName": "text-and-image", "capabilities": {"outputCapabilities": {"text": True, "image": True}}},
]
EXPECTED = {"gpt-5-high": U[1], "imagen-4.0": f"{U[2]}:image", "web-search 模型 \"β\"": U[4], "older-model": U[5],
            "text-and-image": f"{U[6]}:image"}
FLIGHT = ('0:["$","html",null,{"lang":"en"}]\n'
          '6:["$","$L7",null,' + json.dumps({"initialModels": PAGE_MODELS, "initialModelAId": U[1]},
                                             ensure_ascii=False) + ']\n')


def next_page(pieces):
    scripts = "".join(f"<script>self.__next_f.push([1,{json.dumps(p, ensure_ascii=False)}])</script>" for p in pieces)
    return ('<!DOCTYPE html><html lang="en"><head><title>LMArena</title></head><body><div id="root"></div>'
            '<script>(self.__next_f=self.__next_f||[]).push([0])</script>' + scripts + "</body></html>")


def test_flight_data_in_one_push():
    assert extract_page_models(next_page([FLIGHT])) == EXPECTED


def test_page_order_is_kept():
    assert list(extract_page_models(next_page([FLIGHT]))) == list(EXPECTED)


@pytest.mark.parametrize("at", range(0, len(FLIGHT), 37))
def test_flight_data_split_over_pushes(at):
    assert extract_page_models(next_page([FLIGHT[:at], FLIGHT[at:]])) == EXPECTED


def test_plain_json_in_the_page():
    page = f'<script id="__NEXT_DATA__" type="application/json">{json.dumps({"models": PAGE_MODELS})}</script>'
    assert extract_page_models(page) == EXPECTED


def test_escaped_json_outside_flight_pushes():
    inner = json.dumps({"models": PAGE_MODELS[:2]})
    page = f"<script>window.__DATA__ = {json.dumps(inner)};</script>"
    assert extract_page_models(page) == {"gpt-5-high": U[1], "imagen-4.0": f"{U[2]}:image"}


@pytest.mark.parametrize("page", [
    "", "<html><body>Hello</body></html>",
    '<!DOCTYPE html><html><head><title>Just a moment...</title></head></html>',
    next_page(['0:["$","html",null,{}]\n']),
    next_page([json.dumps([{"id": "x", "publicName": "no uuid"}])]),
    next_page([json.dumps([{"id": U[3], "publicName": "video only",
                            "capabilities": {"outputCapabilities": {"video": True}}}])]),
])
def test_no_model_list_is_a_named_error(page):
    with pytest.raises(ModelListNotFound) as info:
        extract_page_models(page)
    assert "Reload the tab" in info.value.message


def test_a_broken_push_string_does_not_hide_the_others():
    page = next_page([FLIGHT]).replace("<script>(self", '<script>self.__next_f.push([1,"\\x"])</script><script>(self')
    assert extract_page_models(page) == EXPECTED


def test_models_json_text_sorted_and_readable():
    text = models_json_text(EXPECTED)
    assert text.endswith("}\n") and '\n    "' in text
    assert "模型" in text  # not \u-escaped
    data = json.loads(text)
    assert data == EXPECTED
    assert list(data) == sorted(EXPECTED, key=str.lower)
    for name, value in data.items():
        Model.parse(name, value)  # every value is one models.json accepts


def test_models_json_text_keeps_the_users_own_entries():
    existing = {"nano-banana": "null:image", "gpt-5-high": U[3]}
    data = json.loads(models_json_text({"gpt-5-high": U[1]}, existing))
    assert data == {"gpt-5-high": U[1], "nano-banana": "null:image"}  # the page wins where both have a name
