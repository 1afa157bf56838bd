"""Rendering the userscript: its header, the bridge URL it connects to, and URLs it refuses."""

from __future__ import annotations

import re

import pytest

from arenahub.bridge.userscript import DEFAULT_BRIDGE_WS_URL, PLACEHOLDER, render, template


def header(script: str) -> list[tuple[str, str]]:
    block = script.split("// ==UserScript==", 1)[1].split("// ==/UserScript==", 1)[0]
    return re.findall(r"^// @(\S+)\s+(.*?)\s*$", block, flags=re.MULTILINE)


def test_header_is_a_tampermonkey_header_for_lmarena():
    entries = header(render())
    assert ("match", "https://lmarena.ai/*") in entries
    assert ("grant", "none") in entries and ("run-at", "document-end") in entries
    assert ("connect", "localhost") in entries and ("connect", "127.0.0.1") in entries
    assert {k for k, _ in entries} >= {"name", "namespace", "version", "description"}


@pytest.mark.parametrize("url", ["ws://127.0.0.1:5102/ws", "wss://bridge.example.test/ws", "ws://localhost/ws",
                                 "ws://[::1]:5102/ws"])
def test_renders_the_bridge_url_once(url):
    script = render(url)
    assert PLACEHOLDER not in script
    assert f'const BRIDGE_WS_URL = "{url}";' in script
    assert script.count(url) == 1


def test_default_url_is_the_bridge_default():
    assert f'"{DEFAULT_BRIDGE_WS_URL}"' in render()


@pytest.mark.parametrize("url, fragment", [
    ("http://127.0.0.1:5102/ws", "ws:// or wss://"),
    ("127.0.0.1:5102/ws", "ws:// or wss://"),
    ("ws:///ws", "names no host"),
    ('ws://127.0.0.1:5102/ws";alert(1);"', "may not contain"),
    ("ws://127.0.0.1:5102/w s", "may not contain"),
    ("ws://127.0.0.1:5102/ws\n", "may not contain"),
    ("ws://127.0.0.1:99999/ws", "bad port"),
])
def test_refuses_what_is_not_a_websocket_url(url, fragment):
    with pytest.raises(ValueError, match=re.escape(fragment)):
        render(url)


def test_upstream_knowledge_sits_in_one_object():
    # Every upstream path and format is in the UPSTREAM object at the top, nowhere else in the script.
    script = template()
    start = script.index("const UPSTREAM = {")
    end = script.index("// ====", start)
    outside = script[:start] + script[end:]
    for fact in ("nextjs-api", "retry-evaluation-session-message", "text/plain", "evaluationSessionId",
                 "parentMessageIds", "participantPosition"):
        assert fact in script[start:end] and fact not in outside, fact
