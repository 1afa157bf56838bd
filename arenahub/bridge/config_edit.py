"""Write values into config.jsonc the way a person would: only those values change.

Every comment, the key order, the indentation, escaped ``\\/\\/`` URLs and trailing commas stay as
they were. ``arenahub bridge capture-ids`` writes the captured ids (and mode and target) with it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
import tempfile
from pathlib import Path
from typing import Any

from arenahub import jsonc
from arenahub.jsonc import ConfigError

_SCALAR_END = re.compile(r"[^\s,\]}/]*")


def set_values(path: Path | str, values: dict[str, Any]) -> None:
    """Set top-level keys of a JSONC file, e.g. ``{"session_id": S, "message_id": M,
    "id_updater_last_mode": "battle", "id_updater_battle_target": "B"}``.

    A key that is present gets its value token replaced (every occurrence, should it appear twice);
    a missing one is added before the closing brace. The file is replaced atomically, and only if the
    result reads back with these values.
    """
    path = Path(os.path.realpath(path))  # a symlinked config stays a symlink
    for key, value in values.items():
        if not isinstance(value, (str, int, float, bool)) and value is not None:
            raise TypeError(f"{key}: only strings, numbers, booleans and null can be written, got {value!r}")
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(path, "file not found") from None
    bom = raw.startswith(b"\xef\xbb\xbf")
    text = raw.decode("utf-8-sig")
    if not isinstance(jsonc.loads(text, path), dict):
        raise ConfigError(path, "the file must hold a JSON object", line=1)
    new = _edit(text, values)
    result = jsonc.loads(new, path)
    if any(result.get(key) != value for key, value in values.items()):  # never write a file that reads back wrong
        raise ConfigError(path, "could not write the values without changing their meaning; edit the file by hand")
    _write_atomic(path, (b"\xef\xbb\xbf" if bom else b"") + new.encode("utf-8"))


def _edit(text: str, values: dict[str, Any]) -> str:
    members, close, last_end, trailing_comma, indent = _members(text)
    edits: list[tuple[int, int, str]] = []
    for key, value in values.items():
        token = json.dumps(value, ensure_ascii=False)
        edits.extend((start, end, token) for start, end in members.get(key, ()))
    missing = [f"{json.dumps(k, ensure_ascii=False)}: {json.dumps(v, ensure_ascii=False)}"
               for k, v in values.items() if k not in members]
    if missing:
        newline = "\r\n" if "\r\n" in text else "\n"
        line_start = text.rfind("\n", 0, close) + 1
        needs_comma = last_end is not None and not trailing_comma
        if not text[line_start:close].strip() and line_start > 0:  # the brace has a line of its own
            if needs_comma:
                edits.append((last_end, last_end, ","))  # type: ignore[arg-type]
            block = ("," + newline).join(indent + m for m in missing) + newline
            edits.append((line_start, line_start, block))
        elif needs_comma:
            edits.append((last_end, last_end, ", " + ", ".join(missing)))  # type: ignore[arg-type]
        else:
            edits.append((close, close, (" " if trailing_comma else "") + ", ".join(missing)))
    for start, end, replacement in sorted(edits, reverse=True):
        text = text[:start] + replacement + text[end:]
    return text


def _members(text: str) -> tuple[dict[str, list[tuple[int, int]]], int, int | None, bool, str]:
    """Spans of the top-level values by key, the closing brace, the end of the last value, whether a
    comma follows it, and the indentation of the last key's line."""
    i = _skip(text, 0)
    members: dict[str, list[tuple[int, int]]] = {}
    last_end, comma, indent = None, False, "  "
    i = _skip(text, i + 1)  # past "{"
    while text[i] != "}":
        if text[i] == ",":
            comma, i = True, _skip(text, i + 1)
            continue
        key_end = _string_end(text, i)
        key = json.loads(text[i:key_end])
        line_start = text.rfind("\n", 0, i) + 1
        if not text[line_start:i].strip():
            indent = text[line_start:i]
        start = _skip(text, _skip(text, key_end) + 1)  # past the colon
        end = _value_end(text, start)
        members.setdefault(key, []).append((start, end))
        last_end, comma = end, False
        i = _skip(text, end)
    return members, i, last_end, comma, indent


def _skip(text: str, i: int) -> int:
    """Past whitespace and comments."""
    n = len(text)
    while i < n:
        if text[i] in " \t\r\n\ufeff":
            i += 1
        elif text.startswith("//", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = n if end < 0 else end + 2
        else:
            break
    return i


def _string_end(text: str, i: int) -> int:
    j = i + 1
    while text[j] != '"':
        j += 2 if text[j] == "\\" else 1
    return j + 1


def _value_end(text: str, i: int) -> int:
    if text[i] == '"':
        return _string_end(text, i)
    if text[i] not in "{[":
        return _SCALAR_END.match(text, i).end()  # type: ignore[union-attr]
    depth = 0
    while True:
        i = _skip(text, i)
        c = text[i]
        if c == '"':
            i = _string_end(text, i)
            continue
        if c in "{[":
            depth += 1
        elif c in "}]":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(OSError):
            os.chmod(tmp, stat.S_IMODE(path.stat().st_mode))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


__all__ = ["set_values"]
