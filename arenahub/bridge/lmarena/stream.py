"""LMArena's upstream answer stream, parsed incrementally into events."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from arenahub.bridge.lmarena.failures import (
    LMArenaError,
    WrongPosition,
    classify_failure,
    is_challenge,
)
from arenahub.bridge.lmarena.jsonscan import enclosing_object
from arenahub.bridge.lmarena.models import POSITIONS, Position
from arenahub.protocol.errors import ApiError


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class Reasoning:
    """``ag:`` lines: the model's reasoning, apart from its answer."""

    text: str


@dataclass(frozen=True)
class Images:
    urls: list[str]


_OPENAI_REASONS = {"stop": "stop", "length": "length", "content-filter": "content_filter",
                   "content_filter": "content_filter", "tool-calls": "tool_calls", "tool_calls": "tool_calls"}


@dataclass(frozen=True)
class Finish:
    reason: str
    usage: dict[str, Any] | None = None

    @property
    def openai_reason(self) -> str:
        """The reason in OpenAI's words (``content-filter`` -> ``content_filter``); ``stop`` when it has none."""
        return _OPENAI_REASONS.get(self.reason, "stop")


@dataclass(frozen=True)
class UpstreamFailure:
    error: ApiError


@dataclass(frozen=True)
class Challenge:
    """A Cloudflare challenge page came instead of an answer."""


@dataclass(frozen=True)
class Unknown:
    """A line the bridge does not use: logged, never fatal."""

    line: str
    reason: str = "a line the bridge does not know"


Event = TextDelta | Reasoning | Images | Finish | UpstreamFailure | Challenge | Unknown

_LINE = re.compile(r"([ab]?)([0-9a-z]):(.*)", re.DOTALL)
_PREFIX = re.compile(r"[ab]?[0-9a-z]:")
_LOOSE_LIMIT = 20_000
ARENA_ERROR_TEXT = "hasArenaError"  # sent as a text delta when LMArena fails mid-answer


class StreamParser:
    """Incremental parser of the upstream answer: feed() raw chunks as the tab forwards them.

    Lines are ``<position><kind>:<json>`` (``a0:"text"``, ``a2:[images]``, ``ad:{finish}``, ``a3:"error"``,
    ``ag:"reasoning"``). In battle mode only the followed position is the answer. After a failure or a
    challenge the rest is not an answer, and the parser returns nothing more.
    """

    def __init__(self, position: Position = "a") -> None:
        if position not in POSITIONS:
            raise ValueError(f"position must be 'a' or 'b', got {position!r}")
        self.position = position
        self.answered = False  # text or images came for our position
        self.stopped = False
        self._pending = ""  # an unfinished last line
        self._loose: list[str] = []  # lines outside the line format: maybe an error body over several lines
        self._other_text = False

    def feed(self, text: str) -> list[Event]:
        if self.stopped or not text:
            return []
        lines = (self._pending + text).split("\n")
        self._pending = lines.pop()
        events = self._lines(lines)
        # A challenge page need not end in a newline: look at its unfinished line now, not at the end.
        pending = self._pending
        if not self.stopped and len(pending) < 500_000 and not _PREFIX.match(pending) and is_challenge(pending):
            self.stopped = True
            events.append(Challenge())
        return events

    def close(self) -> list[Event]:
        """The stream ended: parse what is left and report what only the whole stream shows."""
        events = self._lines([self._pending])
        self._pending = ""
        if not self.stopped and len(self._loose) > 1 and (obj := _error_object("\n".join(self._loose))):
            events.append(self._fail(obj))
        elif not self.stopped and not self.answered and self._other_text:
            other = "b" if self.position == "a" else "a"
            events.append(UpstreamFailure(WrongPosition(
                f"LMArena answered as participant {other.upper()}, but this request reads participant "
                f"{self.position.upper()}: the ids come from a session in another mode. Set id_updater_last_mode / "
                "id_updater_battle_target (or the map entry's mode / battle_target) to match, or capture the ids "
                "again with `arenahub bridge capture-ids --config config.jsonc --mode ... --target ...`.")))
        self.stopped = True
        return events

    def _lines(self, lines: list[str]) -> list[Event]:
        events: list[Event] = []
        for raw in lines:
            line = raw.rstrip("\r")
            if self.stopped:
                break
            if line.strip():
                events.extend(self._line(line))
        return events

    def _fail(self, error: ApiError | dict[str, Any]) -> UpstreamFailure:
        self.stopped = True
        if isinstance(error, dict):
            status = error.get("status", error.get("statusCode"))
            error = classify_failure(status if isinstance(status, int) else None, json.dumps(error))
        return UpstreamFailure(error)

    def _line(self, line: str) -> list[Event]:
        m = _LINE.fullmatch(line)
        if not m:
            # Only outside the line format: a model may well write these words in its answer.
            if is_challenge(line):
                self.stopped = True
                return [Challenge()]
            if sum(map(len, self._loose)) < _LOOSE_LIMIT:
                self._loose.append(line)
            obj = _error_object(line)
            return [self._fail(obj)] if obj else [Unknown(line[:2000])]
        position, kind, rest = m.groups()
        try:
            value = json.loads(rest)
        except ValueError:
            return [Unknown(line[:2000], "not JSON after its prefix")]
        if kind == "3" or (kind == "e" and _is_error_step(value)):  # errors count from either position
            body = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
            return [self._fail(classify_failure(None, body))]  # the whole body: codes classify too
        if position and position != self.position:
            self._other_text = self._other_text or (kind == "0" and bool(value))
            return [Unknown(line[:2000], f"participant {position}: this request follows {self.position}")]
        if kind in "0g" and isinstance(value, str):
            if kind == "0" and value == ARENA_ERROR_TEXT:
                return [self._fail(LMArenaError("LMArena failed in the middle of the answer (hasArenaError); "
                                                "retry the request."))]
            self.answered = self.answered or (kind == "0" and bool(value))
            return [] if not value else [TextDelta(value) if kind == "0" else Reasoning(value)]
        if kind == "2" and isinstance(value, list):
            return self._data(line, value)
        if kind == "d" and isinstance(value, dict):
            usage = value.get("usage")
            return [Finish(str(value.get("finishReason") or "stop"), usage if isinstance(usage, dict) else None)]
        if kind in "ef":  # step bookkeeping: start (message id) and end of a step
            return []
        return [Unknown(line[:2000])]

    def _data(self, line: str, items: list[Any]) -> list[Event]:
        urls, rest = [], False
        for item in items:
            kind = item.get("type") if isinstance(item, dict) else None
            if kind == "image" and isinstance(item.get("image"), str) and item["image"]:
                urls.append(item["image"])
            elif kind != "heartbeat":
                rest = True
        events: list[Event] = [Unknown(line[:2000], "data items that are not images")] if rest else []
        if urls:
            self.answered = True
            events.insert(0, Images(urls))
        return events


def _is_error_step(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, dict) and "finishReason" not in value
                                      and ("error" in value or "message" in value))


def _error_object(text: str) -> dict[str, Any] | None:
    """The innermost JSON object in ``text`` that has an ``"error"`` key, if there is one."""
    at = text.find('"error"')
    while at >= 0:
        obj = enclosing_object(text, at, "error", tries=20)
        if obj is not None:
            return obj
        at = text.find('"error"', at + 1)
    return None
