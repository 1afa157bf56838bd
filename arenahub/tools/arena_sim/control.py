"""The control API under ``/__sim/`` (JSON; never challenged): how tests and the demo script the site.

Every request body is a msgspec struct with unknown fields refused, so a misspelt control call is a
400 naming the problem rather than a silent no-op.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from typing import Annotated, Literal, TypeVar

import msgspec
from msgspec import UNSET, Meta, UnsetType
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from arenahub.tools.arena_sim.build import Build
from arenahub.tools.arena_sim.catalog import decode_models
from arenahub.tools.arena_sim.outcomes import decode_script
from arenahub.tools.arena_sim.state import CloudflareMode, SignIn, sim_of

T = TypeVar("T")


class _Body(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class AuthControl(_Body):
    auto_sign_in: SignIn | UnsetType = UNSET
    revoke: bool = False


class CloudflareControl(_Body):
    mode: CloudflareMode
    clears_after_ms: Annotated[int, Meta(ge=0, le=60_000)] = 300  # how long the interstitial takes


class RecaptchaControl(_Body):
    token_ttl_seconds: Annotated[float, Meta(gt=0)] | UnsetType = UNSET
    rotate_site_key: bool = False
    fail_next: Annotated[int, Meta(ge=0)] | UnsetType = UNSET


class ExecuteRequest(msgspec.Struct):
    siteKey: str
    action: str = ""


class BuildControl(_Body):
    rotate: bool = False
    actions: Literal["present", "missing"] | UnsetType = UNSET


class FeedbackControl(_Body):
    session_id: str
    message_id: str
    has_feedback: bool = True


class ModelsControl(_Body):
    models: list[dict[str, object]]


class BadControl(Exception):
    pass


async def _decode(request: Request, kind: type[T]) -> T:
    try:
        return msgspec.json.decode(await request.body(), type=kind)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise BadControl(str(exc)) from None


def _bad(what: str, exc: Exception) -> Response:
    return JSONResponse({"error": f"bad {what}: {exc}"}, status_code=400)


async def state(request: Request) -> Response:
    return JSONResponse(sim_of(request).describe())


async def script(request: Request) -> Response:
    sim = sim_of(request)
    try:
        outcomes = decode_script(await request.body())
    except (TypeError, ValueError) as exc:
        return _bad("script", exc)
    sim.script.extend(outcomes)
    return JSONResponse({"queued": len(sim.script)})


async def models(request: Request) -> Response:
    sim = sim_of(request)
    try:
        sim.models = decode_models((await _decode(request, ModelsControl)).models)
    except (BadControl, TypeError, ValueError) as exc:
        return _bad("models", exc)
    return JSONResponse({"models": len(sim.models)})


async def auth(request: Request) -> Response:
    sim = sim_of(request)
    try:
        body = await _decode(request, AuthControl)
    except BadControl as exc:
        return _bad("auth", exc)
    if not isinstance(body.auto_sign_in, UnsetType):
        sim.auto_sign_in = body.auto_sign_in
    if body.revoke:
        sim.revoke()
    return JSONResponse(sim.describe()["auth"])


async def cloudflare(request: Request) -> Response:
    sim = sim_of(request)
    try:
        body = await _decode(request, CloudflareControl)
        sim.set_cloudflare(body.mode, body.clears_after_ms)
    except BadControl as exc:
        return _bad("cloudflare", exc)
    return JSONResponse({"mode": sim.cloudflare})


async def recaptcha(request: Request) -> Response:
    sim = sim_of(request)
    try:
        body = await _decode(request, RecaptchaControl)
    except BadControl as exc:
        return _bad("recaptcha", exc)
    if not isinstance(body.token_ttl_seconds, UnsetType):
        sim.token_ttl_seconds = body.token_ttl_seconds
    if not isinstance(body.fail_next, UnsetType):
        sim.fail_next = body.fail_next
    if body.rotate_site_key:
        sim.rotate_site_key()
    return JSONResponse({"site_key": sim.site_key, "token_ttl_seconds": sim.token_ttl_seconds,
                         "fail_next": sim.fail_next})


async def execute(request: Request) -> Response:
    """What the reCAPTCHA stand-in calls: a token for the current site key, or 400."""
    sim = sim_of(request)
    try:
        body = await _decode(request, ExecuteRequest)
    except BadControl as exc:
        return _bad("execute request", exc)
    if body.siteKey != sim.site_key:
        return JSONResponse({"error": "Invalid site key"}, status_code=400)
    return JSONResponse({"token": sim.tokens.issue(body.siteKey, body.action, sim.now())})


async def build(request: Request) -> Response:
    sim = sim_of(request)
    try:
        body = await _decode(request, BuildControl)
    except BadControl as exc:
        return _bad("build", exc)
    present = sim.build.actions_present if isinstance(body.actions, UnsetType) else body.actions == "present"
    sim.build = Build.new(present) if body.rotate else sim.build.with_actions(present)
    return JSONResponse(sim.describe()["build"])


async def feedback(request: Request) -> Response:
    sim = sim_of(request)
    try:
        body = await _decode(request, FeedbackControl)
    except BadControl as exc:
        return _bad("feedback", exc)
    evaluation = sim.evaluations.get(body.session_id.lower())
    message = evaluation.messages.get(body.message_id.lower()) if evaluation else None
    if message is None:
        return JSONResponse({"error": "bad feedback: no such session and message"}, status_code=404)
    message.has_feedback = body.has_feedback
    return JSONResponse({"session_id": body.session_id, "message_id": body.message_id,
                         "has_feedback": message.has_feedback})


async def requests(request: Request) -> Response:
    return JSONResponse([record.to_json() for record in sim_of(request).log])


async def reset(request: Request) -> Response:
    sim = sim_of(request)
    sim.reset()
    return JSONResponse(sim.describe())


async def image(request: Request) -> Response:
    name = request.path_params["name"]
    if not name.endswith(".png"):
        return PlainTextResponse("Not Found", status_code=404)
    return Response(png(name), media_type="image/png")


def png(name: str, size: int = 16) -> bytes:
    """A real PNG: one colour (from the name) ``size`` pixels square."""
    rgb = hashlib.sha256(name.encode()).digest()[:3]
    pixels = (b"\x00" + rgb * size) * size

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(pixels)) + chunk(b"IEND", b"")


ROUTES = [
    Route("/__sim/state", state),
    Route("/__sim/script", script, methods=["POST"]),
    Route("/__sim/models", models, methods=["POST"]),
    Route("/__sim/auth", auth, methods=["POST"]),
    Route("/__sim/cloudflare", cloudflare, methods=["POST"]),
    Route("/__sim/recaptcha", recaptcha, methods=["POST"]),
    Route("/__sim/recaptcha/execute", execute, methods=["POST"]),
    Route("/__sim/build", build, methods=["POST"]),
    Route("/__sim/feedback", feedback, methods=["POST"]),
    Route("/__sim/requests", requests),
    Route("/__sim/reset", reset, methods=["POST"]),
    Route("/__sim/images/{name:str}", image),
]
