"""Reading an admin request's JSON body or query string into a msgspec type, with a 400 that names
the field (``error.param``) when it does not fit, and the field types several bodies share. Shared
by every module of the admin API."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Any

import msgspec
from starlette.requests import Request

from arenahub.asgi import read_body
from arenahub.protocol.errors import InvalidRequest

if TYPE_CHECKING:
    from arenahub.platform.runtime import Platform

MAX_BODY_BYTES = 256 * 1024

PositiveInt = Annotated[int, msgspec.Meta(ge=1, le=10_000_000)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Email = Annotated[str, msgspec.Meta(max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")]
# Money travels as decimal strings ("12.50"): floats never touch it. parse_usd says what is wrong.
Usd = Annotated[str, msgspec.Meta(max_length=40, description='USD as a decimal string, e.g. "12.50"')]

_AT = re.compile(r" - at `\$\.(.+)`$")
_FIELD = re.compile(r"(?:missing required|unknown) field `(.+)`$")


def platform_of(request: Request) -> Platform:
    return request.app.state.platform


def invalid(what: str, exc: msgspec.ValidationError) -> InvalidRequest:
    text = str(exc)
    m = _AT.search(text) or _FIELD.search(text)
    return InvalidRequest(f"Invalid {what}: {text}", param=m.group(1) if m else None)


async def json_body(request: Request, kind: type[Any]) -> Any:
    raw = await read_body(request, MAX_BODY_BYTES)
    try:
        return msgspec.json.decode(raw or b"{}", type=kind)
    except msgspec.ValidationError as exc:
        raise invalid("body", exc) from None
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"The body is not valid JSON ({exc}).", code="invalid_json") from None


def query(request: Request, kind: type[Any]) -> Any:
    """The query string as ``kind`` (a Struct): each parameter at most once; numbers and booleans
    ("true", "false", "1", "0") are read from their text."""
    values: dict[str, str] = {}
    for name, value in request.query_params.multi_items():
        if name in values:
            raise InvalidRequest(f"Query parameter {name!r} is given more than once.", param=name)
        values[name] = value
    try:
        return msgspec.convert(values, type=kind, strict=False)
    except msgspec.ValidationError as exc:
        raise invalid("query", exc) from None
