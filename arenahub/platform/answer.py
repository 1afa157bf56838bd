"""A client's answer as the platform relays it: only what a chat answer is made of, counted by the
platform itself, and cut at the completion limit (pure: no I/O).

Clients are run by strangers. What they send is relayed only as the fields of an OpenAI chat delta,
each of its type and bounded (``clean_choices``); anything else is dropped. The platform bills on its
own count of the text it relayed, never on a client's claim, and stops the answer itself at
``max_tokens`` (arena.ai ignores it) or at what the key's reservation covers: the last delta is cut
to fit and the answer ends with ``finish_reason: "length"``.
"""

from __future__ import annotations

from typing import Any

from arenahub.platform.billing.pricing import TOKENS_PER_PRICE_UNIT, Price
from arenahub.tokens import count_tokens, token_prefix

MAX_CHOICES = 8
FINISH_REASONS = frozenset({"stop", "length", "content_filter", "tool_calls", "function_call"})
TEXT_FIELDS = ("content", "reasoning_content", "refusal")
MAX_TOOL_CALLS = 32
MAX_ANNOTATIONS = 32


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _short(value: Any, n: int) -> str | None:
    return value[:n] if isinstance(value, str) else None


def _index(value: Any, limit: int) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < limit else None


def _tool_call(call: Any) -> dict[str, Any] | None:
    if not isinstance(call, dict):
        return None
    out: dict[str, Any] = {"index": _index(call.get("index"), MAX_TOOL_CALLS) or 0}
    if (ident := _short(call.get("id"), 128)) is not None:
        out["id"] = ident
    if call.get("type") == "function":
        out["type"] = "function"
    fn = call.get("function")
    if isinstance(fn, dict):
        function = {k: v for k, v in (("name", _short(fn.get("name"), 128)), ("arguments", _text(fn.get("arguments"))))
                    if v is not None}
        if function:
            out["function"] = function
    return out


def _annotation(item: Any) -> dict[str, Any] | None:
    cite = item.get("url_citation") if isinstance(item, dict) and item.get("type") == "url_citation" else None
    url = _short(cite.get("url"), 2000) if isinstance(cite, dict) else None
    if cite is None or url is None or not url.startswith(("https://", "http://")):
        return None
    out: dict[str, Any] = {"url": url, "title": _short(cite.get("title"), 500) or ""}
    for key in ("start_index", "end_index"):
        if (at := _index(cite.get(key), 1 << 31)) is not None:
            out[key] = at
    return {"type": "url_citation", "url_citation": out}


def clean_delta(delta: Any) -> dict[str, Any]:
    """The fields of an OpenAI chat delta, each of its type; everything else is dropped."""
    if type(delta) is dict and type(content := delta.get("content")) is str:
        # The delta of nearly every chunk, taken as it is (what the general case below would make of it).
        if len(delta) == 1:
            return {"content": content}
        if len(delta) == 2 and delta.get("role") == "assistant":
            return {"role": "assistant", "content": content}
    if not isinstance(delta, dict):
        return {}
    out: dict[str, Any] = {}
    if delta.get("role") == "assistant":
        out["role"] = "assistant"
    for key in TEXT_FIELDS:
        if (text := _text(delta.get(key))) is not None:
            out[key] = text
    calls = delta.get("tool_calls")
    if isinstance(calls, list):
        kept = [c for c in map(_tool_call, calls[:MAX_TOOL_CALLS]) if c is not None]
        if kept:
            out["tool_calls"] = kept
    notes = delta.get("annotations")
    if isinstance(notes, list):
        kept = [a for a in map(_annotation, notes[:MAX_ANNOTATIONS]) if a is not None]
        if kept:
            out["annotations"] = kept
    return out


def clean_choices(raw: Any) -> list[dict[str, Any]]:
    """A chunk's ``choices`` as the platform relays them (see the module docstring); never raises."""
    if not isinstance(raw, list):
        return []
    out = []
    for choice in raw[:MAX_CHOICES]:
        if not isinstance(choice, dict):
            continue
        finish = choice.get("finish_reason")
        out.append({"index": _index(choice.get("index"), MAX_CHOICES) or 0, "delta": clean_delta(choice.get("delta")),
                    "finish_reason": finish if finish in FINISH_REASONS else None})
    return out


def delta_texts(delta: dict[str, Any]) -> list[str]:
    """The generated text a (clean) delta carries: what is counted and billed."""
    texts = [delta[k] for k in TEXT_FIELDS if k in delta]
    for call in delta.get("tool_calls", ()):
        fn = call.get("function", {})
        texts.extend(v for v in (fn.get("name"), fn.get("arguments")) if v)
    return texts


def tokens_covered(price: Price, amount: int, prompt_tokens: int, images: int) -> int | None:
    """How many completion tokens ``amount`` micro-USD pays for after the prompt; None when completion is free."""
    if price.completion_per_1m <= 0:
        return None
    budget = (amount - images * price.per_image) * TOKENS_PER_PRICE_UNIT - prompt_tokens * price.prompt_per_1m
    return max(0, budget // price.completion_per_1m)


class AnswerMeter:
    """One answer's relayed text, counted against a completion ``limit`` (None: no limit).

    ``take`` cleans each chunk's choices; once the limit is reached the delta that crosses it is cut,
    its choice ends with ``finish_reason: "length"``, ``cut`` is set, and nothing more is taken.

    Far from the limit nothing is counted: a token is at least one UTF-8 byte, so text is only
    collected while its bytes keep within the limit. Near it, the collected text is counted once, and
    each delta after it by what it adds to the answer's last characters (``TAIL_CHARS``: a token never
    reaches further back than a word, so that is the whole answer's count but for rare long runs with
    no space). The bill is counted once at the end on everything delivered, and an answer cut here is
    billed at most ``limit`` completion tokens (``billable``).
    """

    TAIL_CHARS = 64

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.used = 0  # tokens counted so far (the collected text not included)
        self.cut = False
        self._collected: list[str] = []  # text not counted yet ...
        self._collected_bytes = 0  # ... and its bytes: at least its tokens
        self._tail = ""  # the counted text's last characters ...
        self._tail_tokens = 0  # ... and their count

    def billable(self, counted: int) -> int:
        """The completion tokens to bill, given the platform's count of the answer it delivered."""
        return min(counted, self.limit) if self.cut and self.limit is not None else counted

    def take(self, raw: Any) -> tuple[list[dict[str, Any]], list[str]]:
        """The clean choices to relay, and the texts they carry."""
        if self.cut:
            return [], []
        choices = clean_choices(raw)
        texts: list[str] = []
        for i, choice in enumerate(choices):
            delta = choice["delta"]
            if self.limit is not None and not self._fit(delta):
                choice["finish_reason"] = "length"
                texts.extend(delta_texts(delta))
                return choices[:i + 1], texts
            texts.extend(delta_texts(delta))
        return choices, texts

    def _fit(self, delta: dict[str, Any]) -> bool:
        """Count the delta's text against the limit; cut the field that crosses it. False once cut."""
        for key in TEXT_FIELDS:
            text = delta.get(key)
            if not text or self._counts(text):
                continue
            delta[key] = self._prefix(text)
            for later in TEXT_FIELDS[TEXT_FIELDS.index(key) + 1:]:
                delta.pop(later, None)
            delta.pop("tool_calls", None)
            return False
        for call in delta.get("tool_calls", ()):
            args = call.get("function", {}).get("arguments")
            if not args or self._counts(args):
                continue
            call["function"]["arguments"] = self._prefix(args)
            return False
        return True

    def _counts(self, text: str) -> bool:
        """Add ``text`` to the answer if it fits within the limit; False (nothing added) if it does not."""
        assert self.limit is not None
        size = len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
        if self.used + self._collected_bytes + size <= self.limit:
            self._collected.append(text)
            self._collected_bytes += size
            return True
        if self._collected:
            self._append("".join(self._collected))
            self._collected.clear()
            self._collected_bytes = 0
        if self.used + self._adds(text) > self.limit:
            return False
        self._append(text)
        return True

    def _adds(self, text: str) -> int:
        """The tokens ``text`` adds to the answer counted so far."""
        return count_tokens(self._tail + text) - self._tail_tokens

    def _append(self, text: str) -> None:
        self.used += self._adds(text)
        self._tail = (self._tail + text)[-self.TAIL_CHARS:]
        self._tail_tokens = count_tokens(self._tail)

    def _prefix(self, text: str) -> str:
        """The longest prefix of ``text`` the limit leaves room for, cut between tokens, added; the
        answer ends there."""
        assert self.limit is not None
        prefix = token_prefix(text, self.limit - self.used)
        while prefix and self.used + self._adds(prefix) > self.limit:  # the answer's end joined it differently
            prefix = token_prefix(prefix, count_tokens(prefix) - 1)
        self._append(prefix)
        self.cut = True
        return prefix
