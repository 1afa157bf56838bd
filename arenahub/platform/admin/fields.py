"""The fields of the admin API and the ``arenahub admin`` flags, each defined once as a msgspec type
with its bounds and pattern: the API decodes with it, the OpenAPI document shows it, and the CLI
checks its flags with it (``flag``). Structs of bodies and queries are built from these. A value out of
bounds is refused in the same words by both (``explain``: "must be <rule>, got <value>").

A text field's pattern is JSON Schema's (ECMA 262) and Python's at once: ``text()`` anchors it, adds
the guard that keeps Python's ``$`` from also matching before a final newline (JSON Schema's does not),
and keeps the rule in words that error messages give (``rule``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import urlsplit

import msgspec
import msgspec.inspect as mi

_RULES: dict[str, str] = {}  # pattern -> what it allows, in words


def text(body: str, rule: str, *, min_length: int | None = None, max_length: int | None = None) -> msgspec.Meta:
    """The constraints of a string: ``body`` matches the whole string, the same way in JSON Schema and in
    Python; ``rule`` says it in words ("<param> is not <rule>") and describes the field in the OpenAPI."""
    full = rf"^(?!.*\n)(?:{body})$"
    _RULES[full] = rule
    return msgspec.Meta(min_length=min_length, max_length=max_length, pattern=full, description=rule)


_CONTROL = r"\x00-\x1f\x7f-\x9f"  # C0, DEL and C1
_EDGE = rf"[^ {_CONTROL}]"  # nor a space: a name does not start or end with one
_MAILBOX = rf"[^@ {_CONTROL}]+"

Name = Annotated[str, text(rf"{_EDGE}(?:[^{_CONTROL}]*{_EDGE})?", "a name of 1 to 200 characters, without "
                           "control characters, not starting or ending with a space", min_length=1, max_length=200)]
Email = Annotated[str, text(rf"{_MAILBOX}@{_MAILBOX}", "an email address: one @, no spaces or control characters, "
                            "at most 320 characters", max_length=320)]
Id = Annotated[str, text(r"[A-Za-z0-9_-]+", "an id the platform gave (letters, digits, _ and -, at most 64), e.g. "
                         "cl_0123456789abcdef", min_length=1, max_length=64)]
PositiveInt = Annotated[int, msgspec.Meta(ge=1, le=10_000_000)]
Note = Annotated[str, msgspec.Meta(max_length=500, description="why; kept with the entry")]
# A consumer key's models (its --models flag, a comma-separated list, in the CLI).
Models = Annotated[list[Name], msgspec.Meta(max_length=1000, description="the models the key may use (at most "
                                            "1000); null: every model")]

# -- a client's registration: the same rules on create and update, in the API and the CLI ---------------

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_PORT = r"[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]"
_PATH = r"[A-Za-z0-9._~:/?#\[\]@!&()*+,;=%-]"  # what the client package can put in a shell script
HttpUrl = Annotated[str, text(
    rf"https?://{_LABEL}(?:\.{_LABEL})*(?::(?:{_PORT}))?(?:/{_PATH}*)?", "an http:// or https:// URL: a host name or "
    "IPv4 address, an optional port (1 to 65535) and path; no spaces, quotes or control characters; at most 500 "
    "characters", max_length=500)]
BridgeUrl = HttpUrl  # where a client's bridge listens


def with_api_path(url: str) -> str:
    """A platform's URL as a client's ``platform_url``: one without a path gets /api, the platform's API base."""
    url = url.strip().rstrip("/")
    return url + "/api" if urlsplit(url).path in ("", "/") else url

MaxConcurrent = Annotated[int, msgspec.Meta(ge=1, le=10_000, description="requests at once")]
ClientRpm = Annotated[int, msgspec.Meta(ge=1, le=100_000, description="requests per minute this client accepts")]
Priority = Annotated[int, msgspec.Meta(ge=-1000, le=1000, description="higher is chosen first by the priority "
                                       "strategy (default 0)")]
Weight = Annotated[int, msgspec.Meta(ge=1, le=1000, description="share of requests among equals in the random and "
                                     "priority strategies (default 1)")]
DEFAULT_MAX_CONCURRENT = 4

# -- money and time -----------------------------------------------------------------------------------

# Money travels as decimal strings ("12.50"): floats never touch it. At most 999,999,999.999999 USD.
_AMOUNT = r"[0-9]{1,9}(?:\.[0-9]{1,6})?"
_ZERO = r"0*(?:\.0*)?$"
_DIGITS = "at most 9 digits before the point and 6 after, no $ or commas"
Usd = Annotated[str, text(_AMOUNT, f'a USD amount: a decimal string like "12.50", {_DIGITS}')]
PositiveUsd = Annotated[str, text(rf"(?!{_ZERO}){_AMOUNT}", 'a USD amount more than 0: a decimal string like '
                                  f'"12.50", {_DIGITS}')]
SignedUsd = Annotated[str, text(rf"(?!-?{_ZERO})-?{_AMOUNT}", "a signed USD amount, not 0: a decimal string like "
                                f'"-1.25", {_DIGITS}')]
ZONED = "an RFC 3339 date-time with a zone, e.g. 2026-05-01T00:00:00Z"
When = Annotated[dt.datetime, msgspec.Meta(tz=True, description=ZONED)]


def utc(t: dt.datetime) -> dt.datetime:
    """``t`` in UTC; a time the calendar cannot hold in UTC (year 1 at +05:00) is its nearest end."""
    try:
        return t.astimezone(dt.UTC)
    except OverflowError:
        return (dt.datetime.min if t.year == dt.MINYEAR else dt.datetime.max).replace(tzinfo=dt.UTC)


# -- one value, as the CLI and query strings give it: text -----------------------------------------------

_INTEGER = re.compile(r"-?(?:0|[1-9][0-9]*)")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")


def _scalars(info: mi.Type) -> list[mi.Type]:
    types = info.types if isinstance(info, mi.UnionType) else (info,)
    return [t.type if isinstance(t, mi.Metadata) else t for t in types]


def from_text(info: mi.Type, value: str) -> Any:
    """``value`` as the JSON value it stands for in a field of type ``info``: true/false for a boolean, a
    JSON integer or number for a number; anything else stays text (so "null" is never null)."""
    kinds = _scalars(info)
    if any(isinstance(k, mi.BoolType) for k in kinds) and value in ("true", "false"):
        return value == "true"
    if any(isinstance(k, mi.IntType) for k in kinds) and _INTEGER.fullmatch(value):
        return int(value)
    if any(isinstance(k, mi.FloatType) for k in kinds) and _NUMBER.fullmatch(value):
        return float(value)
    return value


# -- what a value must be, in words: the one message the API and the CLI refuse a value with ---------------

def _members(info: mi.Type) -> list[tuple[mi.Type, str | None]]:
    """The types a field of type ``info`` takes, but null, each with its description."""
    out = []
    for member in info.types if isinstance(info, mi.UnionType) else (info,):
        if isinstance(member, mi.Metadata):
            out.append((member.type, (member.extra_json_schema or {}).get("description")))
        elif not isinstance(member, mi.NoneType):
            out.append((member, None))
    return out


def _rule_of(info: mi.Type) -> str | None:
    """What a value of type ``info`` must be, in words; None when its type says nothing to add."""
    for base, description in _members(info):
        if isinstance(base, mi.StrType) and base.pattern is not None and base.pattern in _RULES:
            return _RULES[base.pattern]
        if isinstance(base, mi.IntType) and base.ge is not None:
            return (f"a whole number from {base.ge} to {base.le}" if base.le is not None
                    else f"a whole number, at least {base.ge}")
        if isinstance(base, mi.StrType) and base.max_length is not None:
            return (f"text of {base.min_length} to {base.max_length} characters" if base.min_length
                    else f"text of at most {base.max_length} characters")
        if isinstance(base, mi.ListType) and base.max_length is not None:
            return f"a list of at most {base.max_length} items"
        if isinstance(base, mi.DateTimeType):  # whatever a field's description says of it
            return ZONED if base.tz else "an RFC 3339 date-time, e.g. 2026-05-01T00:00:00Z"
        if isinstance(base, mi.FloatType) and description:
            return description
    return None


def rule(kind: Any) -> str:
    """What a value of ``kind`` must be, in words (for messages)."""
    return _rule_of(mi.type_info(kind)) or "valid"


def shown(value: Any, limit: int = 60) -> str:
    """A refused value as a message quotes it: as JSON (control characters escaped), cut at ``limit``."""
    text = json.dumps(value, default=str)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def explain(info: mi.Type, value: Any, at: str = "") -> str | None:
    """Why ``value`` does not fit a field of type ``info``: ``must be <rule>, got <value>``, the same
    words in the API's 400 and the CLI's refusal. ``at`` is where msgspec found the fault inside the value
    (``[2]``: a list's third item). None when the type has no rule to say."""
    index = re.match(r"\[(\d+)\]", at)
    if index is not None:
        items = next((base.item_type for base, _ in _members(info) if isinstance(base, mi.ListType)), None)
        i = int(index.group(1))
        if items is None or not isinstance(value, list) or i >= len(value):
            return None
        return explain(items, value[i], at[index.end():])
    if at:
        return None
    said = _rule_of(info)
    return None if said is None else f"must be {said}, got {shown(value)}"


def refusal(kind: Any, value: Any) -> str:
    """``explain`` for a Python type: ``must be <rule>, got <value>``."""
    return explain(mi.type_info(kind), value) or f"must be {rule(kind)}, got {shown(value)}"


def flag(kind: Any, *, split: str | None = None, then: Callable[[Any], Any] | None = None) -> Callable[[str], Any]:
    """An argparse ``type=`` that reads a flag's text as ``kind`` and checks it with ``kind``'s rules, saying
    what the admin API says of the same value. ``split``: a list given as text (``a,b``); ``then`` turns the
    checked value into what the command uses (``parse_usd``)."""
    info = mi.type_info(kind)

    def convert(text: str) -> Any:
        value = [p.strip() for p in text.split(split) if p.strip()] if split else from_text(info, text)
        try:
            checked = msgspec.convert(value, kind)
        except msgspec.ValidationError as exc:
            at = str(exc).rpartition(" - at `$")[2].rstrip("`") if " - at `$" in str(exc) else ""
            raise argparse.ArgumentTypeError(explain(info, value, at) or refusal(kind, value)) from None
        return checked if then is None else then(checked)
    return convert


def period_problem(since: dt.datetime | None, until: dt.datetime | None) -> str | None:
    """What is wrong with a period from ``since`` (included) to ``until`` (excluded), if anything: usage
    reports and analytics alike refuse one that ends before it starts, or is empty."""
    if since is not None and until is not None and since >= until:
        return f"since ({since.isoformat()}) must be earlier than until ({until.isoformat()})"
    return None
