"""Reading an admin request's path parameters, query string and JSON body into the msgspec types its
route declares (``api.ROUTES``), with a 400 that names the field (``error.param``) when one does not
fit. The router reads them before the handler runs; ``json_body`` and ``query`` hand the handler what
it read. Shared by every module of the admin API.

Values are read as JSON Schema reads them, so that the OpenAPI document is exactly what is accepted:
a number without a fraction is an integer (``4.0`` is ``4``); in a query string a boolean is ``true``
or ``false``, an integer is a JSON integer, and nothing is null (``until=null`` is refused).
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
import msgspec.inspect as mi
from starlette.requests import Request

from arenahub.asgi import read_body
from arenahub.platform.admin import fields
from arenahub.protocol.errors import InvalidRequest

MAX_BODY_BYTES = 256 * 1024
MAX_DEPTH = 32  # objects and arrays in a body nest at most this deep (metadata is free JSON)
_BODY = "admin_body"  # request.state: (type, value) the router read
_QUERY = "admin_query"


def invalid(what: str, exc: msgspec.ValidationError, kind: Any = None, value: Any = None) -> InvalidRequest:
    """A 400 naming the field msgspec named. A field whose type has a rule says it as the CLI does
    (``fields.explain``: "rpm must be a whole number from 1 to 100000, got 0"); ``value`` is what was read."""
    message = str(exc)
    at = message.rpartition(" - at `$.")[2].rstrip("`") if " - at `$." in message else None
    param = at or _unknown_or_missing(message)
    field = re.match(r"\w+", at or "")
    info = next((f.type for f in _struct_fields(kind) if field and f.name == field.group()), None) if kind else None
    if at and field and info is not None:
        name = field.group()
        if message.startswith("Invalid enum value"):
            choices = _choices(info)
            if choices:
                message = message.replace(" - at ", f" (one of: {', '.join(repr(c) for c in choices)}) - at ", 1)
        elif isinstance(value, dict):
            why = fields.explain(info, value.get(name), at[field.end():])
            if why is not None:
                message = f"{name} {why} - at `$.{at}`"
    return InvalidRequest(f"Invalid {what}: {message}", param=param)


def _choices(kind: Any) -> list[Any]:
    """The values a Literal field (or a union holding one) takes."""
    if isinstance(kind, mi.LiteralType):
        return list(kind.values)
    if isinstance(kind, mi.UnionType):
        return [v for t in kind.types for v in _choices(t)]
    return []


def _unknown_or_missing(message: str) -> str | None:
    for marker in ("missing required field `", "unknown field `"):
        if marker in message:
            return message.rpartition(marker)[2].rstrip("`")
    return None


def _struct_fields(kind: Any) -> tuple[mi.Field, ...]:
    info = mi.type_info(kind)
    return info.fields if isinstance(info, mi.StructType) else ()


# -- bodies ---------------------------------------------------------------------------------------------

async def read_json_body(request: Request, kind: type[Any], *, required: bool = True) -> Any:
    """The body as ``kind``; an empty body is ``{}`` unless ``required``."""
    raw = await read_body(request, MAX_BODY_BYTES)
    if not raw.strip():
        if required:
            raise InvalidRequest("This route needs a JSON object as its body.", code="invalid_json")
        raw = b"{}"
    try:
        value = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        text = str(exc)
        at = text.rpartition(" - at `$.")[2].rstrip("`").split("[")[0].split(".")[0] if " - at `$." in text else None
        raise InvalidRequest(f"The body is not valid JSON ({exc}).", code="invalid_json", param=at or None) from None
    except RecursionError:  # msgspec's own guard, hundreds of levels down
        raise _too_deep() from None
    _as_json_schema_reads(value)
    try:
        return msgspec.convert(value, kind)
    except msgspec.ValidationError as exc:
        raise invalid("body", exc, kind, value) from None


def _too_deep() -> InvalidRequest:
    return InvalidRequest(f"The body nests objects and arrays more than {MAX_DEPTH} deep.", code="invalid_json")


def _as_json_schema_reads(value: Any) -> None:
    """Integral floats become ints, in place (JSON Schema's integer includes 4.0); refuses deep nesting."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise _too_deep()
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, item in items:
            if isinstance(item, float) and item.is_integer():
                node[key] = int(item)
            elif isinstance(item, dict | list):
                stack.append((item, depth + 1))


async def json_body(request: Request, kind: type[Any]) -> Any:
    """The body as ``kind``: what the router read for this route, or read now (outside the admin API)."""
    read = getattr(request.state, _BODY, None)
    if read is not None:
        assert read[0] is kind, f"the route declares {read[0].__name__}, the handler reads {kind.__name__}"
        return read[1]
    return await read_json_body(request, kind)


# -- query strings and path parameters ---------------------------------------------------------------

def read_query(request: Request, kind: type[Any]) -> Any:
    """The query string as ``kind`` (a Struct, a parameter per field), each parameter at most once."""
    types = {f.name: f.type for f in _struct_fields(kind)}
    values: dict[str, Any] = {}
    for name, value in request.query_params.multi_items():
        if name in values:
            raise InvalidRequest(f"Query parameter {name!r} is given more than once.", param=name)
        values[name] = fields.from_text(types[name], value) if name in types else value
    try:
        return msgspec.convert(values, kind)
    except msgspec.ValidationError as exc:
        raise invalid("query", exc, kind, values) from None


def query(request: Request, kind: type[Any]) -> Any:
    """The query string as ``kind``: what the router read for this route, or read now."""
    read = getattr(request.state, _QUERY, None)
    if read is not None:
        assert read[0] is kind, f"the route declares {read[0].__name__}, the handler reads {kind.__name__}"
        return read[1]
    return read_query(request, kind)


def check_path(request: Request, kinds: dict[str, Any]) -> None:
    """Each path parameter with a type in ``kinds`` fits it, else a 400 naming it."""
    for name, value in request.path_params.items():
        if name in kinds:
            try:
                msgspec.convert(value, kinds[name])
            except msgspec.ValidationError:
                raise InvalidRequest(f"Invalid path: {name} {fields.refusal(kinds[name], value)}.",
                                     param=name) from None


async def read_inputs(request: Request, body: type[Any] | None, query_kind: type[Any] | None,
                      body_optional: bool) -> None:
    """Read what a route declares, before its handler runs (which then gets it from the two above)."""
    if query_kind is not None:
        setattr(request.state, _QUERY, (query_kind, read_query(request, query_kind)))
    if body is not None:
        setattr(request.state, _BODY, (body, await read_json_body(request, body, required=not body_optional)))
