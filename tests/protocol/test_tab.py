"""The bridge <-> userscript messages: round trips, the 2025 hello, refusals, and the userscript's side of it."""

import json
import re
from pathlib import Path

import msgspec
import pytest

from arenahub.protocol import tab

USERSCRIPT = Path(tab.__file__).parents[1] / "bridge" / "userscript.js"
PNG = "data:image/png;base64,AAAA"
FACTS = tab.PageFacts(origin="https://arena.ai", page="arena", title="Arena", auth_cookies=["arena-auth-prod-v1.0"],
                      sitekey_found=True, sitekey_hint="6Lc", grecaptcha=True, upload_actions=False,
                      upload_problem="no chunk")
CREATE = tab.Task(call="create", mode="side-by-side", modality="image", model_a_id="a-id", model_b_id="b-id",
                  content="hi", attachments=[tab.Attachment("image-1.png", "image/png", PNG)])
RETRY = tab.Task(call="retry", session_id="s", message_id="m", model_id=None, messages=[
    tab.LegacyMessage("system", "be brief", "b"),
    tab.LegacyMessage("user", "hi", attachments=[tab.Attachment("a.png", "image/png", PNG)])])
FROM_BRIDGE = [
    tab.Run(id="r1", task=CREATE),
    tab.Run(id="r2", task=tab.Task(call="follow_up", mode="battle", content="more", evaluation_id="e")),
    tab.Run(id="r3", task=RETRY),
    tab.Cancel(id="r1"),
    tab.Diagnose(id="d1"),
    tab.Diagnose(id="d2", find_uploads=False),
    tab.PageModels(id="p1"),
    tab.Reload(reason="Cloudflare interstitial"),
    tab.Reload(),
    tab.ArmCapture(),
]
FROM_TAB = [
    tab.Hello(script_version="0.2.0", protocol=2, facts=FACTS),
    tab.Diagnosis(id="d1", facts=FACTS),
    tab.Flight(id="p1", text='1:{"initialModels":[]}'),
    tab.Flight(id="p1", text="<html></html>", source="html"),
    tab.Started(id="r1", status=200, content_type="text/plain", evaluation_id="e"),
    tab.Chunk(id="r1", data='a0:"世界 🌍"\n'),
    tab.Done(id="r1"),
    tab.Failed(id="r1", stage="upstream", message="HTTP 429", status=429, content_type="application/json",
               retry_after="30", body='{"error":"slow down"}'),
    tab.Failed(id="r1", stage="token", message="grecaptcha missing"),
    tab.IdsCaptured(session_id="s", message_id="m"),
    tab.PageCall(ok=True, status=200),
]
BRIDGE_DECODER = msgspec.json.Decoder(tab.FromBridge)


@pytest.mark.parametrize("message", FROM_BRIDGE, ids=lambda m: type(m).__name__)
def test_bridge_messages_round_trip(message):
    text = tab.encode(message)
    assert isinstance(text, str)
    assert json.loads(text)["type"] == message.__struct_config__.tag
    assert BRIDGE_DECODER.decode(text) == message


@pytest.mark.parametrize("message", FROM_TAB, ids=lambda m: type(m).__name__)
def test_tab_messages_round_trip(message):
    data = msgspec.json.encode(message)
    assert tab.decode(data) == message
    assert tab.decode(data.decode()) == message


def test_a_task_sends_every_field():
    # The userscript reads the task's fields as they are: defaults included, nothing to guess.
    sent = json.loads(tab.encode(tab.Run(id="r", task=tab.Task(call="create"))))["task"]
    assert set(sent) == set(tab.Task.__struct_fields__)
    assert (sent["mode"], sent["modality"], sent["model_b_id"], sent["attachments"]) == ("direct", "chat", None, [])


def test_the_2025_hello_reads_as_protocol_1():
    hello = tab.decode('{"type":"hello","version":"0.1.0","origin":"https://lmarena.ai"}')
    assert hello == tab.Hello()
    assert (hello.protocol, hello.script_version, hello.facts) == (1, "", tab.PageFacts())
    assert hello.protocol != tab.TAB_PROTOCOL_VERSION


def test_facts_default_to_nothing_found():
    facts = tab.decode('{"type":"diagnosis","id":"d","facts":{}}').facts
    assert (facts.page, facts.auth_cookies, facts.sitekey_found, facts.grecaptcha, facts.upload_actions) == \
        ("other", [], False, False, None)


def test_unknown_fields_from_a_newer_userscript_are_ignored():
    message = tab.decode('{"type":"done","id":"r1","took_ms":12}')
    assert message == tab.Done(id="r1")


@pytest.mark.parametrize("data, words", [
    ("not json", "malformed"),
    ("", "Input data was truncated"),
    ('{"id": "r1"}', "Object missing required field `type`"),
    ('{"type": "teleport", "id": "r1"}', "Invalid value 'teleport'"),
    ('{"type": "chunk", "id": "r1"}', "missing required field `data`"),
    ('{"type": "started", "id": "r1", "status": "200"}', "Expected `int`, got `str`"),
    ('{"type": "failed", "id": "r1", "stage": "somewhere", "message": "x"}', "Invalid enum value 'somewhere'"),
    ('{"type": "run", "id": "r1", "task": {"call": "create"}}', "Invalid value 'run'"),
    ('[1, 2]', "Expected `object`, got `array`"),
])
def test_what_is_not_a_tab_message(data, words):
    with pytest.raises(tab.TabMessageError, match=re.escape(words)):
        tab.decode(data)


def test_tab_message_error_is_a_value_error():
    assert issubclass(tab.TabMessageError, ValueError)


# --- the userscript builds the same shapes by hand ---

def tags(union):
    return {t.__struct_config__.tag for t in union.__args__}


def test_the_userscript_knows_every_message_type():
    script = USERSCRIPT.read_text(encoding="utf-8")
    missing = {t for t in tags(tab.FromBridge) | tags(tab.FromTab) if f'"{t}"' not in script}
    assert not missing, f"userscript.js does not use these message types: {sorted(missing)}"
    assert re.search(rf"\bPROTOCOL\s*=\s*{tab.TAB_PROTOCOL_VERSION}\b", script)


def test_the_userscript_uses_every_field_name():
    script = USERSCRIPT.read_text(encoding="utf-8")
    structs = [tab.Task, tab.Attachment, tab.LegacyMessage, tab.PageFacts, *tab.FromTab.__args__,
               tab.Diagnose, tab.Reload]
    fields = {name for struct in structs for name in struct.__struct_fields__}
    missing = {name for name in fields if not re.search(rf"\b{name}\b", script)}
    assert not missing, f"userscript.js never names these fields: {sorted(missing)}"
