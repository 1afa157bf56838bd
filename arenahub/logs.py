"""Log lines that a peer cannot forge or flood: every message on one line, escaped and bounded."""

from __future__ import annotations

import logging
import re
from typing import Any

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
# A log message is cut to this many characters: what a peer sent is logged, never at any length.
MAX_LOG_CHARS = 2000
# Control characters (C0, DEL, C1) and the Unicode line and paragraph separators: any of them could
# end a log line early or restyle a terminal, so they are written as escapes.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return _ESCAPES.get(char) or (f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}")


def printable(text: str, limit: int = MAX_LOG_CHARS) -> str:
    """``text`` on one line: control characters escaped (``\\n``, ``\\x1b``), at most ``limit``
    characters, and when cut, an ellipsis and the original length."""
    if len(text) <= limit and not _UNPRINTABLE.search(text):
        return text
    escaped = _UNPRINTABLE.sub(_escape, text[:limit])
    if len(text) <= limit and len(escaped) <= limit:
        return escaped
    return f"{escaped[:limit]}… ({len(text):,} characters)"


class SafeFormatter(logging.Formatter):
    """Every message on one line of bounded length, whatever its arguments carried. A traceback
    prints as usual, except that each exception's own message in it is made printable too."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = printable(record.message)
        return super().formatMessage(record)

    def formatException(self, ei: Any) -> str:
        text = super().formatException(ei)
        for exc in _chain(ei[1]):
            try:
                message = str(exc)
            except Exception:  # noqa: BLE001 - a broken __str__ is printed by traceback as such
                continue
            safe = printable(message)
            if safe != message:
                text = text.replace(message, safe)
        return text


def _chain(exc: BaseException | None) -> list[BaseException]:
    seen: list[BaseException] = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen


def configure_logging(level: str, instance: str = "") -> None:
    """One stream handler on the root logger, with ``SafeFormatter`` (unless the root already has a
    handler); uvicorn's own loggers write through it too (see ``server``). ``instance``: a platform
    instance's id, on every line (a cluster's logs are read side by side)."""
    handler = logging.StreamHandler()
    fmt = LOG_FORMAT.replace("%(name)s", f"[{instance}] %(name)s") if instance else LOG_FORMAT
    handler.setFormatter(SafeFormatter(fmt))
    logging.basicConfig(level=level.upper(), handlers=[handler])
