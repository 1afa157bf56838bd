"""JSON with comments and trailing commas (config.jsonc), with errors that name file, line and key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class ConfigError(Exception):
    """A config file that cannot be used: says which file, where, and why."""

    def __init__(self, path: Path | str, reason: str, *, key: str | None = None, line: int | None = None) -> None:
        self.path, self.reason, self.key, self.line = str(path), reason, key, line
        where = self.path + (f":{line}" if line else "")
        super().__init__(f"{where}: {key + ': ' if key else ''}{reason}")


def strip(text: str) -> str:
    """Blank out comments and trailing commas, keeping every other character where it was.

    Keeping positions means the JSON parser's line and column numbers point into the real file.
    """
    out = list(text)
    i, n = 0, len(text)
    in_string = False
    last_comma = -1  # position of a comma that may turn out to be trailing
    while i < n:
        c = text[i]
        if in_string:
            if c == "\\":
                i += 2
                continue
            if c == '"':
                in_string = False
            i += 1
            continue
        if c == '"':
            in_string = True
            last_comma = -1
        elif c == "/" and i + 1 < n and text[i + 1] == "/":
            while i < n and text[i] != "\n":
                out[i] = " "
                i += 1
            continue
        elif c == "/" and i + 1 < n and text[i + 1] == "*":
            end = text.find("*/", i + 2)
            end = n if end < 0 else end + 2
            for j in range(i, end):
                if text[j] != "\n":
                    out[j] = " "
            i = end
            continue
        elif c == ",":
            last_comma = i
        elif c in "}]":
            if last_comma >= 0:
                out[last_comma] = " "
            last_comma = -1
        elif not c.isspace():
            last_comma = -1
        i += 1
    return "".join(out)


def loads(text: str, path: Path | str = "<string>") -> Any:
    try:
        return json.loads(strip(text))
    except json.JSONDecodeError as exc:
        raise ConfigError(path, f"column {exc.colno}: {exc.msg}", line=exc.lineno) from None


def load(path: Path | str) -> Any:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(path, "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(path, f"cannot read it ({exc})") from None
    return loads(text, path)


def line_of(text: str, key: str) -> int | None:
    """Line of the first ``"key":`` in ``text`` (for pointing at a bad value)."""
    needle = json.dumps(key)
    pos = strip(text).find(needle)
    return text.count("\n", 0, pos) + 1 if pos >= 0 else None
