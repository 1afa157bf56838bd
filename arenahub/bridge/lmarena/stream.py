"""arena.ai's answer stream, parsed incrementally into events.

Lines are ``<side><kind>:<json>`` (``af:`` start, ``a0:`` text, ``ag:`` reasoning, ``a2:`` data,
``ac:`` citations, ``a3:`` error, ``ae:`` step end, ``ad:`` finish; see ``site``). In the battle
modes two models answer at once, on sides a and b: only the followed side is the answer. After a
failure the rest is not an answer, and the parser returns nothing more. Lines of a kind the
bridge does not know are returned as ``Unknown`` (logged once per kind by the bridge), never fatal.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from arenahub.bridge.lmarena import site
from arenahub.bridge.lmarena.failures import (
    LMArenaError,
    WrongPosition,
    classify_failure,
    is_block_page,
    is_challenge,
    unexpected_answer,
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


@dataclass(frozen=True)
class Citations:
    """Sources a search model cited: ``[{"url", "title"}]``, each url once per answer."""

    sources: list[dict[str, str]]


@dataclass(frozen=True)
class RoutedModel:
    """The model the site actually routed to (an ``a2:`` item), when it says."""

    name: str


@dataclass(frozen=True)
class Finish:
    reason: str
    usage: dict[str, int] | None = None  # OpenAI's names: prompt_tokens, completion_tokens, total_tokens

    @property
    def openai_reason(self) -> str:
        """The reason in OpenAI's words (``content-filter`` -> ``content_filter``); ``stop`` when it has none."""
        return site.FINISH_REASONS.get(self.reason, "stop")


@dataclass(frozen=True)
class UpstreamFailure:
    error: ApiError


@dataclass(frozen=True)
class Unknown:
    """A line the bridge does not use: ``kind`` names it (``h``, ``2:video``, ``unframed``) for logging once."""

    line: str
    kind: str
    reason: str = "a line the bridge does not know"


Event = TextDelta | Reasoning | Images | Citations | RoutedModel | Finish | UpstreamFailure | Unknown

_LOOSE_LIMIT = 20_000
_PENDING_LIMIT = 500_000


@dataclass
class _Tool:
    text: list[str] = field(default_factory=list)
    size: int = 0


class StreamParser:
    """Incremental parser of the answer: ``feed()`` raw chunks as the tab forwards them, ``close()`` at the end.

    ``legacy``: the 2025 retry path, whose failures read differently (see ``classify_failure``).
    """

    def __init__(self, position: Position = "a", *, legacy: bool = False) -> None:
        if position not in POSITIONS:
            raise ValueError(f"position must be 'a' or 'b', got {position!r}")
        self.position = position
        self.legacy = legacy
        self.answered = False  # text or images came for our side
        self.finished = False  # our side's finish line came
        self.stopped = False
        self._pending = ""  # an unfinished last line
        self._loose: list[str] = []  # lines outside the line format: maybe an error body over several lines
        self._other_text = False
        self._tools: dict[str, _Tool] = {}
        self._cited: set[str] = set()

    def feed(self, text: str) -> list[Event]:
        if self.stopped or not text:
            return []
        lines = (self._pending + text).split("\n")
        self._pending = lines.pop()
        events = self._lines(lines)
        # A Cloudflare page need not end in a newline: look at the unfinished line now, not at the end.
        pending = self._pending
        if not self.stopped and not site.LINE.match(pending) and len(pending) < _PENDING_LIMIT \
                and (is_challenge(pending) or is_block_page(pending)):
            events.append(self._fail(classify_failure(None, pending, legacy=self.legacy)))
        elif len(pending) >= _PENDING_LIMIT and not self.stopped:
            events.append(self._fail(LMArenaError("arena.ai sent a line of more than 500,000 characters: not an "
                                                  "answer the bridge can read.")))
        return events

    def close(self) -> list[Event]:
        """The stream ended: parse what is left and report what only the whole stream shows."""
        events = self._lines([self._pending])
        self._pending = ""
        if not self.stopped and self._loose and not self.answered:
            text = "\n".join(self._loose)
            obj = _error_object(text) if len(self._loose) > 1 else None
            events.append(self._fail(self._object_failure(obj) if obj else unexpected_answer("", text)))
        elif not self.stopped and not self.answered and not self.finished and not self._other_text:
            events.append(self._fail(LMArenaError("arena.ai ended the stream without an answer or a finish line; "
                                                  "retry the request.")))
        elif not self.stopped and not self.answered and self._other_text:
            events.append(self._fail(self._other_side_only()))
        self.stopped = True
        return events

    def _other_side_only(self) -> ApiError:
        """Only the other side answered: in legacy mode the captured ids are of another mode."""
        ours, other = self.position.upper(), "B" if self.position == "a" else "A"
        if self.legacy:
            return WrongPosition(
                f"arena.ai answered as side {other}, but this request reads side {ours}: the captured ids come "
                "from a conversation in another mode. Set id_updater_last_mode / id_updater_battle_target (or the "
                "map entry's mode / battle_target) to match, or capture the ids again with `arenahub bridge "
                "capture-ids --config config.jsonc --mode ... --target ...`.")
        # A conversation the bridge started: no ids to blame, the model on our side sent nothing.
        return LMArenaError(f"arena.ai answered only on side {other}; side {ours}, the answer this request returns, "
                            "stayed empty. Retry the request.")

    def _object_failure(self, obj: dict[str, Any]) -> ApiError:
        """A JSON error body in place of the stream, with its own status when it gives one."""
        status = obj.get("status", obj.get("statusCode"))
        known = status if isinstance(status, int) and not isinstance(status, bool) else None
        return classify_failure(known, json.dumps(obj), legacy=self.legacy)

    def _lines(self, lines: list[str]) -> list[Event]:
        events: list[Event] = []
        for raw in lines:
            if self.stopped:
                break
            line = raw.rstrip("\r")
            if line.startswith("data:"):  # the same lines framed as server-sent events
                line = line[5:].lstrip()
            elif line.startswith(":"):  # a server-sent-events comment (a keep-alive): nothing to read
                continue
            if line.strip():
                events.extend(self._line(line))
        return events

    def _fail(self, error: ApiError) -> UpstreamFailure:
        self.stopped = True
        return UpstreamFailure(error)

    def _line(self, line: str) -> list[Event]:
        m = site.LINE.fullmatch(line)
        if not m:
            return self._unframed(line)
        side, kind, rest = m.groups()
        try:
            value = json.loads(rest)
        except ValueError:
            return [Unknown(line[:2000], f"{kind}:unparsed", "not JSON after its prefix")]
        if side and side != self.position:
            if kind == site.KIND_TEXT and value:
                self._other_text = True
            return [Unknown(line[:2000], f"other-side:{kind}", f"side {side}: this request follows {self.position}")]
        if kind == site.KIND_ERROR:
            body = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
            return [self._fail(classify_failure(None, body, legacy=self.legacy))]
        if kind in (site.KIND_TEXT, site.KIND_REASONING) and isinstance(value, str):
            if kind == site.KIND_TEXT and value == site.ARENA_ERROR_TEXT:
                return [self._fail(LMArenaError("arena.ai failed in the middle of the answer (hasArenaError); "
                                                "retry the request."))]
            if not value:
                return []
            if kind == site.KIND_TEXT:
                self.answered = True
                return [TextDelta(value)]
            return [Reasoning(value)]
        if kind == site.KIND_DATA and isinstance(value, list):
            return self._data(line, value)
        if kind == site.KIND_TOOL_DELTA and isinstance(value, dict):
            return self._tool_delta(value)
        if kind == site.KIND_FINISH and isinstance(value, dict):
            reason = str(value.get("finishReason") or "stop")
            if reason == site.FINISH_ERROR:
                return [self._fail(LMArenaError("arena.ai ended the answer with an error (finishReason \"error\"); "
                                                "retry the request."))]
            self.finished = True
            return [Finish(reason, _usage(value.get("usage")))]
        if kind in (site.KIND_START, site.KIND_STEP_END):
            return []
        return [Unknown(line[:2000], kind)]

    def _unframed(self, line: str) -> list[Event]:
        """A line outside the line format: a Cloudflare page, a JSON error body, or something new."""
        if is_challenge(line) or is_block_page(line):
            return [self._fail(classify_failure(None, line, legacy=self.legacy))]
        if sum(map(len, self._loose)) < _LOOSE_LIMIT:
            self._loose.append(line)
        obj = _error_object(line)
        if obj is not None:
            return [self._fail(self._object_failure(obj))]
        return [Unknown(line[:2000], "unframed")]

    def _data(self, line: str, items: list[Any]) -> list[Event]:
        urls: list[str] = []
        events: list[Event] = []
        for item in items:
            kind = item.get("type") if isinstance(item, dict) else None
            if kind == site.DATA_IMAGE and isinstance(item.get("image"), str) and item["image"]:
                urls.append(item["image"])
            elif kind == site.DATA_ROUTED_MODEL:
                name = next((item[k] for k in ("publicName", "displayName", "name", "model")
                             if isinstance(item.get(k), str) and item[k]), None)
                if name:
                    events.append(RoutedModel(name[:200]))
            elif kind != site.DATA_HEARTBEAT:
                events.append(Unknown(line[:2000], f"2:{str(kind)[:40]}", "a data item the bridge does not use"))
        if urls:
            self.answered = True
            events.insert(0, Images(urls))
        return events

    def _tool_delta(self, value: dict[str, Any]) -> list[Event]:
        """``ac:`` pieces of a tool call's JSON arguments; a complete one with ``source`` is a citation list."""
        call_id, delta = str(value.get("toolCallId") or ""), value.get("argsTextDelta")
        if not isinstance(delta, str):
            return []
        tool = self._tools.setdefault(call_id, _Tool())
        if tool.size + len(delta) > 200_000:
            return []
        tool.text.append(delta)
        tool.size += len(delta)
        try:
            args = json.loads("".join(tool.text))
        except ValueError:
            return []  # more pieces to come
        del self._tools[call_id]
        source = args.get("source") if isinstance(args, dict) else None
        items = source if isinstance(source, list) else [source] if isinstance(source, dict) else []
        found = []
        for item in items:
            url = item.get("url") if isinstance(item, dict) else None
            if isinstance(url, str) and url.startswith(("http://", "https://")) and url not in self._cited:
                self._cited.add(url)
                title = item.get("title")
                found.append({"url": url[:2000], "title": title[:500] if isinstance(title, str) else ""})
        return [Citations(found)] if found else []


def _usage(value: Any) -> dict[str, int] | None:
    if not isinstance(value, dict):
        return None
    prompt, completion = value.get("promptTokens"), value.get("completionTokens")
    if not (isinstance(prompt, int) and isinstance(completion, int)) or prompt < 0 or completion < 0:
        return None
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _error_object(text: str) -> dict[str, Any] | None:
    """The innermost JSON object in ``text`` that has an ``"error"`` key, if there is one."""
    at = text.find('"error"')
    while at >= 0:
        obj = enclosing_object(text, at, "error", tries=20)
        if obj is not None:
            return obj
        at = text.find('"error"', at + 1)
    return None
