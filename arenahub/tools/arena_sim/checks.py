"""What the site checks in a call body: a small Zod-like validator, the three body schemas, UUIDv7 ids.

The real site validates with Zod, so a refused body answers 400 ``{"error": "Invalid request body",
"issues": [...]}`` with Zod's issue shapes (``invalid_type``, ``invalid_enum_value``,
``invalid_string``, ``too_small``, ``custom``), every issue at once. Like Zod, unknown keys are
stripped (ignored), and refinements (rules across fields) run only once the plain shape is valid.
Everything here is pure: values in, issues or a ``Refused`` out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

Path = tuple[str | int, ...]
Issue = dict[str, Any]

MODES = ("direct", "direct-battle", "side-by-side", "battle")
BATTLE_MODES = ("direct-battle", "side-by-side", "battle")
MODALITY_OPTIONS = ("chat", "image", "search", "webdev", "video")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.IGNORECASE)


class Refused(Exception):
    """The site refuses a call: the status and JSON body it answers, and the specific reason for the log."""

    def __init__(self, status: int, body: Mapping[str, Any], reason: str, headers: Mapping[str, str] | None = None):
        super().__init__(reason)
        self.status = status
        self.body = dict(body)
        self.reason = reason
        self.headers = dict(headers or {})


# --- ids ---------------------------------------------------------------------------------------

def is_uuid(value: object) -> bool:
    return isinstance(value, str) and bool(_UUID.match(value))


def is_uuid7(value: object) -> bool:
    """Version nibble 7 and the RFC 4122 variant (10xx)."""
    return is_uuid(value) and str(value)[14] == "7" and str(value)[19].lower() in "89ab"


def uuid7_ms(value: str) -> int:
    """The timestamp of a UUIDv7: its first 48 bits, milliseconds since the epoch."""
    return int(value.replace("-", "")[:12], 16)


def require_uuid7(body: Mapping[str, Any], fields: Sequence[str]) -> None:
    for name in fields:
        if name in body and body[name] is not None and not is_uuid7(body[name]):
            raise Refused(400, {"error": "Invalid ID: expected a UUIDv7", "path": [name]},
                          f"ids: {name} is not a UUIDv7 ({body[name]})")


def require_recent(value: str, now: float, what: str, error: str) -> None:
    offset = abs(uuid7_ms(value) / 1000 - now)
    if offset > 3600:
        raise Refused(400, {"error": error}, f"ids: the timestamp in {what} is {offset:.0f} s from now")


# --- a small Zod ----------------------------------------------------------------------------------

def type_name(value: object) -> str:
    """Zod's name for the type of a JSON value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object" if isinstance(value, dict) else "unknown"


def _invalid_type(expected: str, value: object, path: Path, missing: bool = False) -> Issue:
    received = "undefined" if missing else type_name(value)
    message = "Required" if missing else f"Expected {expected}, received {received}"
    return {"code": "invalid_type", "expected": expected, "received": received, "path": list(path), "message": message}


def custom(path: Path, message: str) -> Issue:
    return {"code": "custom", "path": list(path), "message": message}


class Schema:
    expected = "unknown"

    def check(self, value: object, path: Path, issues: list[Issue]) -> None:
        raise NotImplementedError


@dataclass(frozen=True)
class Str(Schema):
    min_length: int = 0
    uuid: bool = False
    datetime: bool = False
    expected = "string"

    def check(self, value: object, path: Path, issues: list[Issue]) -> None:
        if not isinstance(value, str):
            issues.append(_invalid_type("string", value, path))
            return
        if len(value) < self.min_length:
            issues.append({"code": "too_small", "minimum": self.min_length, "type": "string", "inclusive": True,
                           "exact": False, "path": list(path),
                           "message": f"String must contain at least {self.min_length} character(s)"})
        if self.uuid and not is_uuid(value):
            issues.append({"code": "invalid_string", "validation": "uuid", "path": list(path),
                           "message": "Invalid uuid"})
        if self.datetime and not _is_iso_datetime(value):
            issues.append({"code": "invalid_string", "validation": "datetime", "path": list(path),
                           "message": "Invalid datetime"})


def _is_iso_datetime(value: str) -> bool:
    if "T" not in value:
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class OneOf(Schema):
    options: tuple[str, ...]

    @property
    def expected(self) -> str:  # type: ignore[override]
        return " | ".join(f"'{o}'" for o in self.options)

    def check(self, value: object, path: Path, issues: list[Issue]) -> None:
        if not isinstance(value, str):
            issues.append(_invalid_type(self.expected, value, path))
        elif value not in self.options:
            issues.append({"code": "invalid_enum_value", "received": value, "options": list(self.options),
                           "path": list(path),
                           "message": f"Invalid enum value. Expected {self.expected}, received '{value}'"})


@dataclass(frozen=True)
class IsNull(Schema):
    expected = "null"

    def check(self, value: object, path: Path, issues: list[Issue]) -> None:
        if value is not None:
            issues.append(_invalid_type("null", value, path))


@dataclass(frozen=True)
class AnyObject(Schema):
    """``z.record(z.any())``: any JSON object; null and arrays are refused."""

    expected = "object"

    def check(self, value: object, path: Path, issues: list[Issue]) -> None:
        if not isinstance(value, dict):
            issues.append(_invalid_type("object", value, path))


@dataclass(frozen=True)
class ListOf(Schema):
    item: Schema
    min_length: int = 0
    expected = "array"

    def check(self, value: object, path: Path, issues: list[Issue]) -> None:
        if not isinstance(value, list):
            issues.append(_invalid_type("array", value, path))
            return
        if len(value) < self.min_length:
            issues.append({"code": "too_small", "minimum": self.min_length, "type": "array", "inclusive": True,
                           "exact": False, "path": list(path),
                           "message": f"Array must contain at least {self.min_length} element(s)"})
        for i, item in enumerate(value):
            self.item.check(item, (*path, i), issues)


@dataclass(frozen=True)
class Field:
    schema: Schema
    optional: bool = False
    nullable: bool = False


@dataclass(frozen=True)
class Shape(Schema):
    fields: Mapping[str, Field] = field(default_factory=dict)
    expected = "object"

    def check(self, value: object, path: Path, issues: list[Issue]) -> None:
        if not isinstance(value, dict):
            issues.append(_invalid_type("object", value, path))
            return
        for name, f in self.fields.items():
            if name not in value:
                if not f.optional:
                    issues.append(_invalid_type(f.schema.expected, None, (*path, name), missing=True))
            elif not (value[name] is None and f.nullable):
                f.schema.check(value[name], (*path, name), issues)


def validate(schema: Schema, value: object) -> list[Issue]:
    issues: list[Issue] = []
    schema.check(value, (), issues)
    return issues


def schema_refusal(issues: list[Issue]) -> Refused:
    """The one 400 body for schema failures; the log reason names every issue as ``path: message``."""
    reason = "; ".join(f"{'.'.join(str(p) for p in i['path']) or '(body)'}: {i['message']}" for i in issues)
    return Refused(400, {"error": "Invalid request body", "issues": issues}, f"schema: {reason}")


def raise_issues(issues: list[Issue]) -> None:
    if issues:
        raise schema_refusal(issues)


# --- the body schemas -------------------------------------------------------------------------------

UUID = Str(uuid=True)
ATTACHMENT = Shape({"name": Field(Str()), "contentType": Field(Str()), "url": Field(Str())})
USER_MESSAGE = Shape({"content": Field(Str(min_length=1)), "experimental_attachments": Field(ListOf(ATTACHMENT)),
                      "metadata": Field(AnyObject())})
_TOKENS = {"recaptchaV3Token": Field(Str(), optional=True),
           "recaptchaV2Token": Field(Str(), optional=True, nullable=True)}
_TURN = {"userMessageId": Field(UUID), "modelAMessageId": Field(UUID), "modelBMessageId": Field(UUID, optional=True),
         "userMessage": Field(USER_MESSAGE), "modality": Field(OneOf(MODALITY_OPTIONS)), **_TOKENS}

CREATE = Shape({"id": Field(UUID), "mode": Field(OneOf(MODES)), "modelAId": Field(UUID, optional=True, nullable=True),
                "modelBId": Field(UUID, optional=True, nullable=True), **_TURN})
FOLLOW_UP = Shape({"id": Field(UUID, optional=True), "mode": Field(OneOf(MODES), optional=True),
                   "modelAId": Field(UUID, optional=True, nullable=True),
                   "modelBId": Field(UUID, optional=True, nullable=True), **_TURN})
RETRY_MESSAGE = Shape({
    "role": Field(OneOf(("user", "assistant", "system"))), "content": Field(Str()), "id": Field(UUID),
    "evaluationId": Field(IsNull()), "evaluationSessionId": Field(UUID), "parentMessageIds": Field(ListOf(UUID)),
    "experimental_attachments": Field(ListOf(ATTACHMENT)), "failureReason": Field(IsNull()),
    "metadata": Field(AnyObject()), "participantPosition": Field(OneOf(("a", "b"))),
    "createdAt": Field(Str(datetime=True)), "updatedAt": Field(Str(datetime=True)),
    "status": Field(OneOf(("pending", "success"))),
})
RETRY = Shape({"messages": Field(ListOf(RETRY_MESSAGE, min_length=1)), "modelId": Field(UUID, nullable=True),
               "recaptchaV3Token": Field(Str(), optional=True)})


def check_create(body: object) -> dict[str, Any]:
    """The create-evaluation body, or Refused: the shape, then the rules that depend on ``mode``."""
    raise_issues(validate(CREATE, body))
    assert isinstance(body, dict)
    mode, issues = body["mode"], []
    if mode != "battle" and body.get("modelAId") is None:
        issues.append(custom(("modelAId",), f"modelAId is required for mode {mode}"))
    if mode == "battle" and body.get("modelAId") is not None:
        issues.append(custom(("modelAId",), "modelAId must be empty for mode battle"))
    if mode == "side-by-side" and body.get("modelBId") is None:
        issues.append(custom(("modelBId",), "modelBId is required for mode side-by-side"))
    if mode != "side-by-side" and body.get("modelBId") is not None:
        issues.append(custom(("modelBId",), f"modelBId must be empty for mode {mode}"))
    if mode in BATTLE_MODES and "modelBMessageId" not in body:
        issues.append(custom(("modelBMessageId",), f"modelBMessageId is required for mode {mode}"))
    raise_issues(issues)
    return body


def check_follow_up(body: object, session_id: str, mode: str, model_a: str | None,
                    model_b: str | None) -> dict[str, Any]:
    """The post-to-evaluation body, or Refused: what it repeats must match the evaluation in the path."""
    raise_issues(validate(FOLLOW_UP, body))
    assert isinstance(body, dict)
    issues = []
    if "id" in body and body["id"].lower() != session_id:
        issues.append(custom(("id",), "id does not match the evaluation session in the path"))
    if "mode" in body and body["mode"] != mode:
        issues.append(custom(("mode",), f"mode does not match the evaluation session's mode ({mode})"))
    for name, expected in (("modelAId", model_a), ("modelBId", model_b)):
        if body.get(name) is not None and body[name].lower() != expected:
            issues.append(custom((name,), f"{name} does not match the evaluation session's model"))
    if mode in BATTLE_MODES and "modelBMessageId" not in body:
        issues.append(custom(("modelBMessageId",), f"modelBMessageId is required for mode {mode}"))
    raise_issues(issues)
    return body


def check_retry(body: object, session_id: str) -> dict[str, Any]:
    """The legacy retry body, or Refused: one linear chain of messages of this session, the last pending."""
    raise_issues(validate(RETRY, body))
    assert isinstance(body, dict)
    messages, issues = body["messages"], []
    for i, message in enumerate(messages):
        at: Path = ("messages", i)
        if message["evaluationSessionId"].lower() != session_id:
            issues.append(custom((*at, "evaluationSessionId"), "evaluationSessionId must be the session in the path"))
        parents = [messages[i - 1]["id"]] if i else []
        if message["parentMessageIds"] != parents:
            issues.append(custom((*at, "parentMessageIds"), f"parentMessageIds must be {parents}"))
        status = "pending" if i == len(messages) - 1 else "success"
        if message["status"] != status:
            issues.append(custom((*at, "status"), f"status must be '{status}'"))
    raise_issues(issues)
    return body
