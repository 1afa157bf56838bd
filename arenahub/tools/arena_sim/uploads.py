"""How the page uploads an image: Next.js server actions, then S3-style presigned storage URLs.

``POST <any page path>`` with ``next-action: <id>`` calls an action of the current build; its body is
the JSON array of arguments and its answer is RSC text (``0:`` the envelope naming the build,
``1:`` the result). ``generateUploadUrl`` hands out a presigned ``PUT`` URL, ``getSignedUrl`` a
presigned ``GET`` URL, and only the latter is accepted as an attachment URL by the stream API.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from arenahub.tools.arena_sim.auth import valid_session
from arenahub.tools.arena_sim.log import RequestRecord, open_record
from arenahub.tools.arena_sim.state import SimState, sim_of
from arenahub.tools.arena_sim.storage import ALLOWED_TYPES, StorageError, read_url, upload_url

_encode = msgspec.json.Encoder().encode


def _rsc(build_id: str, result: object) -> Response:
    envelope = _encode({"a": "$@1", "f": "", "b": build_id}).decode()
    return Response(f"0:{envelope}\n1:{_encode(result).decode()}\n", media_type="text/x-component")


def _origin(request: Request) -> str:
    return f"{request.url.scheme}://{request.url.netloc}"


async def server_action(request: Request) -> Response:
    sim = sim_of(request)
    record = sim.record(open_record(request, "action", sim.now()))
    action_id = request.headers["next-action"]
    record.action = sim.build.action_named(action_id)
    if record.action is None:
        record.status, record.error = 404, f"action: unknown action id {action_id}"
        return PlainTextResponse("Server action not found.", status_code=404)
    try:
        args = msgspec.json.decode(await request.body())
    except msgspec.DecodeError:
        args = None
    record.set_body(args)
    record.status = 200
    if not isinstance(args, list):
        result: dict[str, Any] = {"success": False, "error": "Invalid arguments"}
    elif valid_session(request, sim.session) is None:
        result = {"success": False, "error": "Unauthorized"}
    else:
        result = _call(sim, record.action, args, _origin(request))
    if not result["success"]:
        record.error = f"action: {result['error']}"
    return _rsc(sim.build.build_id, result)


def _call(sim: SimState, name: str, args: list[Any], origin: str) -> dict[str, Any]:
    if name == "generateUploadUrl":
        if len(args) != 2 or not all(isinstance(a, str) and a for a in args):
            return {"success": False, "error": "Invalid arguments"}
        file_name, content_type = args
        if content_type not in ALLOWED_TYPES:
            return {"success": False, "error": "Unsupported file type"}
        obj = sim.storage.issue_upload(file_name, content_type, sim.now())
        return {"success": True, "data": {"uploadUrl": upload_url(origin, obj), "key": obj.key}}
    if name == "getSignedUrl":
        if len(args) != 1 or not isinstance(args[0], str):
            return {"success": False, "error": "Invalid arguments"}
        signature = sim.storage.sign_read(args[0], sim.now())
        if signature is None:
            return {"success": False, "error": "File not found"}
        return {"success": True, "data": {"url": read_url(origin, args[0], signature)}}
    return {"success": True}


def _storage_error(record: RequestRecord, error: StorageError) -> Response:
    record.status, record.error = error.status, f"storage: {error.code}: {error.message}"
    return Response(error.xml(), status_code=error.status, media_type="application/xml")


async def storage_put(request: Request) -> Response:
    sim = sim_of(request)
    record = sim.record(open_record(request, "storage", sim.now()))
    data = await request.body()
    try:
        sim.storage.put(request.path_params["key"], request.query_params.get("X-Amz-Signature"),
                        request.headers.get("content-type"), data, sim.now())
    except StorageError as error:
        return _storage_error(record, error)
    record.status = 200
    return Response(b"", headers={"etag": f'"{hashlib.md5(data, usedforsecurity=False).hexdigest()}"'})


async def storage_get(request: Request) -> Response:
    sim = sim_of(request)
    record = sim.record(open_record(request, "storage", sim.now()))
    try:
        obj = sim.storage.read(request.path_params["key"], request.query_params.get("X-Amz-Signature"), sim.now())
    except StorageError as error:
        return _storage_error(record, error)
    record.status = 200
    return Response(obj.data or b"", media_type=obj.content_type)
