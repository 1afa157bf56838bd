"""Finding a JSON object inside text that is not all JSON (a page, a stream line)."""

from __future__ import annotations

import json
from typing import Any

_DECODER = json.JSONDecoder()


def enclosing_object(text: str, at: int, key: str, *, tries: int, lowest: int = 0) -> dict[str, Any] | None:
    """The innermost JSON object that spans position ``at`` and has ``key``.

    Tries the ``{`` before ``at``, then the ones before that, at most ``tries`` of them and none
    before ``lowest``: bounded work on large or hostile text.
    """
    start, tried = text.rfind("{", 0, at), 0
    while start >= lowest and tried < tries:
        try:
            obj, end = _DECODER.raw_decode(text, start)
        except ValueError:
            obj, end = None, -1
        if isinstance(obj, dict) and end > at and key in obj:
            return obj
        start, tried = text.rfind("{", 0, start), tried + 1
    return None
