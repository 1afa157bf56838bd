"""The Tampermonkey userscript (``userscript.js``, package data), rendered with the bridge's WebSocket URL."""

from __future__ import annotations

import re
from importlib import resources
from urllib.parse import urlsplit

PLACEHOLDER = "{{BRIDGE_WS_URL}}"
DEFAULT_BRIDGE_WS_URL = "ws://127.0.0.1:5102/ws"
# The URL lands inside a JS string literal: refuse anything that could end it or break a line.
_UNSAFE = re.compile(r"[\s\"'`\\<>]")


def template() -> str:
    return resources.files("arenahub.bridge").joinpath("userscript.js").read_text(encoding="utf-8")


def render(bridge_ws_url: str = DEFAULT_BRIDGE_WS_URL) -> str:
    """The userscript, connecting to ``bridge_ws_url``; ValueError when that is not a ws:// or wss:// URL."""
    parts = urlsplit(bridge_ws_url)
    if parts.scheme not in ("ws", "wss"):
        raise ValueError(f"the bridge URL must start with ws:// or wss://, got {bridge_ws_url!r}")
    if not parts.hostname:
        raise ValueError(f"the bridge URL names no host: {bridge_ws_url!r}")
    if _UNSAFE.search(bridge_ws_url):
        raise ValueError(f"the bridge URL may not contain spaces, quotes, backslashes or angle brackets: "
                         f"{bridge_ws_url!r}")
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError as exc:
        raise ValueError(f"the bridge URL has a bad port: {bridge_ws_url!r}") from exc
    text = template()
    if text.count(PLACEHOLDER) != 1:
        raise RuntimeError(f"userscript.js must hold {PLACEHOLDER} exactly once")
    return text.replace(PLACEHOLDER, bridge_ws_url)
