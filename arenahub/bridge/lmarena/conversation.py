"""An OpenAI chat history as the one user message arena.ai takes, and follow-ups of known conversations.

arena.ai's ``create-evaluation`` takes ONE user message, so a history is flattened into it. The
format (documented in the README, "The bridge"):

- A single user message is sent as it is.
- Anything longer becomes a transcript: one line saying what it is, then every message as a
  block ``<role>...</role>`` in order (``system``, ``user``, ``assistant``, ``tool_result``;
  an assistant's tool calls as ``[called name(arguments)]`` lines). The line asks for a reply to
  the last user message; when the history ends with an assistant message (a prefill), it asks
  for that message to be continued instead.
- Images are attached in order and marked where they were: ``[image 1]``, ``[image 2]``...
- ``tavern_mode_enabled``: every system message, in order, becomes one system block at the top.

A follow-up: when a history is exactly one this bridge answered (every message, and its answer
as sent), plus new messages after it, only the new messages go to the same arena.ai conversation
(``post-to-evaluation``). ``Conversations`` remembers answered histories by a digest.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from arenahub.protocol.errors import InvalidRequest

ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant",
         "tool": "tool_result", "function": "tool_result"}
PREAMBLE = ("[The conversation so far, oldest first. Reply as the assistant to the last user message; "
            "do not write the tags.]")
PREAMBLE_TOOL = ("[The conversation so far, oldest first. Reply as the assistant, going on from the last tool "
                 "result; do not write the tags.]")
PREAMBLE_CONTINUE = ("[The conversation so far, oldest first. Continue the last assistant message from where "
                     "it stops; do not write the tags.]")
PREAMBLE_FOLLOW_UP = ("[New messages since your last reply, oldest first. Reply as the assistant to the last user "
                      "message; do not write the tags.]")
MAX_IMAGES = 10


@dataclass(frozen=True)
class ImageRef:
    """An image a message carried: a ``data:`` URL or an http(s) link (the bridge downloads links)."""

    url: str
    name: str | None
    where: str  # the request field, for errors


@dataclass(frozen=True)
class Turn:
    role: str  # one of ROLES' values
    text: str
    images: tuple[ImageRef, ...] = ()
    label: str = ""  # a tool result's tool name


@dataclass(frozen=True)
class Prompt:
    """What goes into ``userMessage``: the text and the images, in order."""

    content: str
    images: tuple[ImageRef, ...]


def read_turns(messages: Any) -> list[Turn]:
    """The request's ``messages`` as turns; InvalidRequest names the field that is wrong."""
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("`messages` must be a non-empty list of messages.", param="messages")
    # A tool result names its call by id; the call (in an earlier assistant message) names the tool.
    names: dict[str, str] = {}
    for m in messages:
        calls: list[Any] = m["tool_calls"] if isinstance(m, dict) and isinstance(m.get("tool_calls"), list) else []
        for call in calls:
            fn = call.get("function") if isinstance(call, dict) else None
            if isinstance(fn, dict) and isinstance(call.get("id"), str) and isinstance(fn.get("name"), str):
                names[call["id"]] = fn["name"]
    return [_turn(i, m, names) for i, m in enumerate(messages)]


def _turn(i: int, message: Any, tool_names: dict[str, str]) -> Turn:
    where = f"messages[{i}]"
    if not isinstance(message, dict):
        raise InvalidRequest(f"`{where}` must be an object with `role` and `content`.", param=where)
    role = message.get("role")
    if role not in ROLES:
        raise InvalidRequest(f"`{where}.role` is {role!r}: use system, developer, user, assistant or tool.",
                             param=f"{where}.role")
    text, images = _content(where, message.get("content"))
    if role == "assistant":
        text = "\n".join(filter(None, [text, *_tool_calls(message)]))
    label: Any = ""
    if role in ("tool", "function"):
        call_id = message.get("tool_call_id")
        label = message.get("name") or (tool_names.get(call_id) if isinstance(call_id, str) else None) or call_id
    return Turn(ROLES[role], text, tuple(images), label if isinstance(label, str) else "")


def _content(where: str, content: Any) -> tuple[str, list[ImageRef]]:
    if content is None:
        return "", []
    if isinstance(content, str):
        return content, []
    if not isinstance(content, list):
        raise InvalidRequest(f"`{where}.content` must be a string or a list of content parts.",
                             param=f"{where}.content")
    texts: list[str] = []
    images: list[ImageRef] = []
    for j, part in enumerate(content):
        at = f"{where}.content[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("text", "input_text") and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind in ("image_url", "input_image"):
            spec = part.get("image_url")
            url = spec.get("url") if isinstance(spec, dict) else spec
            name = (spec.get("name") or spec.get("filename")) if isinstance(spec, dict) else None
            if not isinstance(url, str) or not url.strip():
                raise InvalidRequest(f"`{at}.image_url.url` is missing: give a data: URI or an http(s) URL.",
                                     param=f"{at}.image_url.url")
            images.append(ImageRef(url.strip(), name if isinstance(name, str) else None, f"{at}.image_url.url"))
            texts.append("\x00image\x00")  # where it was; numbered once all images are known
        else:
            raise InvalidRequest(f"`{at}` is not a text or image_url part (type {kind!r}); arena.ai takes text and "
                                 "images only.", param=at)
    return "\n\n".join(texts), images


def _tool_calls(message: dict[str, Any]) -> list[str]:
    listed = message.get("tool_calls")
    calls: list[Any] = listed if isinstance(listed, list) else []
    if isinstance(message.get("function_call"), dict):
        calls = [*calls, {"function": message["function_call"]}]
    out = []
    for call in calls:
        fn = call.get("function") if isinstance(call, dict) else None
        if isinstance(fn, dict):
            out.append(f"[called {fn.get('name', '?')}({fn.get('arguments', '')})]")
    return out


def merge_systems(turns: list[Turn]) -> list[Turn]:
    """Tavern mode: every system message, in order, becomes one at the start (the rest keep their order)."""
    systems = [t for t in turns if t.role == "system"]
    if not systems:
        return turns
    merged = Turn("system", "\n\n".join(t.text for t in systems if t.text.strip()),
                  tuple(i for t in systems for i in t.images))
    return [merged, *(t for t in turns if t.role != "system")]


def flatten(turns: list[Turn], *, merge_system: bool = False, follow_up: bool = False) -> Prompt:
    """The one user message for ``turns`` (see the module docstring for the format); ``follow_up``: the
    turns are what came after a reply the conversation already has."""
    if merge_system:
        turns = merge_systems(turns)
    images = tuple(i for t in turns for i in t.images)
    if len(images) > MAX_IMAGES:
        raise InvalidRequest(f"The conversation carries {len(images)} images; arena.ai takes at most {MAX_IMAGES} "
                             "a message.", param="messages")
    if len(turns) == 1 and turns[0].role == "user":
        return Prompt(_number_images(turns[0].text, 1) or " ", images)
    last = turns[-1].role
    blocks = [PREAMBLE_CONTINUE if last == "assistant" else PREAMBLE_TOOL if last == "tool_result"
              else PREAMBLE_FOLLOW_UP if follow_up else PREAMBLE]
    n = 1
    for t in turns:
        text = _number_images(t.text, n)
        n += len(t.images)
        label = t.label.replace('"', "'").replace("\n", " ")[:100]
        attrs = f' name="{label}"' if t.role == "tool_result" and label else ""
        blocks.append(f"<{t.role}{attrs}>\n{text}\n</{t.role}>")
    return Prompt("\n\n".join(blocks), images)


def _number_images(text: str, first: int) -> str:
    parts = text.split("\x00image\x00")
    out = [parts[0]]
    for i, rest in enumerate(parts[1:]):
        out.append(f"[image {first + i}]{rest}")
    return "".join(out)


# --- Follow-ups --------------------------------------------------------------------------------

def digest(key: str, turns: list[Turn]) -> str:
    """A digest of ``turns`` (roles, texts, image URLs) under ``key`` (the model, mode and side)."""
    h = hashlib.sha256(key.encode())
    for t in turns:
        h.update(b"\x1e" + t.role.encode() + b"\x1f" + t.label.encode() + b"\x1f" + t.text.encode())
        for image in t.images:
            h.update(b"\x1f" + hashlib.sha256(image.url.encode()).digest())
    return h.hexdigest()


@dataclass
class Known:
    evaluation_id: str
    tab_id: str
    at: float = field(default_factory=time.monotonic)


class Conversations:
    """Histories this bridge answered, by digest (history + the answer as sent): bounded, and forgotten
    after ``ttl`` seconds. Holds no text, only digests and conversation ids."""

    def __init__(self, limit: int = 2_000, ttl: float = 6 * 3600) -> None:
        self._known: OrderedDict[str, Known] = OrderedDict()
        self.limit, self.ttl = limit, ttl

    def __len__(self) -> int:
        return len(self._known)

    def remember(self, key: str, turns: list[Turn], answer: str, evaluation_id: str, tab_id: str) -> None:
        """``turns`` and ``answer`` are now the whole of ``evaluation_id``. Its earlier states are forgotten: a
        history that branches off before this answer is not what the site's conversation holds."""
        self.forget(evaluation_id)
        d = digest(key, [*turns, Turn("assistant", answer)])
        self._known[d] = Known(evaluation_id, tab_id)
        self._known.move_to_end(d)
        while len(self._known) > self.limit:
            self._known.popitem(last=False)

    def find(self, key: str, turns: list[Turn]) -> tuple[Known, list[Turn]] | None:
        """The known conversation that ``turns`` continues, and the new turns after it; None if there is none."""
        last = max((i for i, t in enumerate(turns) if t.role == "assistant"), default=-1)
        if last < 0 or last == len(turns) - 1:
            return None
        known = self._known.get(digest(key, turns[:last + 1]))
        if known is None:
            return None
        if time.monotonic() - known.at > self.ttl:
            self.forget(known.evaluation_id)
            return None
        return known, turns[last + 1:]

    def forget(self, evaluation_id: str) -> None:
        for d in [d for d, k in self._known.items() if k.evaluation_id == evaluation_id]:
            del self._known[d]
