"""Uploads: server actions found in the build's chunk, presigned storage, attachment URLs, build rotation."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest

from arenahub.tools.arena_sim.state import new_uuid7
from tests.tools.arena_support import create_body, open_site

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 100


@pytest.fixture
async def site():
    async with open_site(max_attachment_bytes=1000) as s:
        yield s


async def action(site, name_or_id: str, *args: Any, path: str = "/text/direct") -> httpx.Response:
    action_id = site.sim.build.action_ids.get(name_or_id, name_or_id)
    return await site.client.post(path, content=json.dumps(list(args)),
                                  headers={"next-action": action_id, "accept": "text/x-component"})


def result(response: httpx.Response, build_id: str) -> dict[str, Any]:
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/x-component")
    envelope, payload, rest = response.text.split("\n")
    assert rest == "" and envelope == f'0:{{"a":"$@1","f":"","b":"{build_id}"}}'
    assert payload.startswith("1:")
    parsed: dict[str, Any] = json.loads(payload[2:])
    return parsed


async def upload(site, data: bytes = PNG, content_type: str = "image/png") -> tuple[str, str]:
    """generateUploadUrl, PUT, getSignedUrl: the key and the signed URL."""
    made = result(await action(site, "generateUploadUrl", "cat.png", content_type), site.sim.build.build_id)
    assert made["success"] is True
    key, upload_url = made["data"]["key"], made["data"]["uploadUrl"]
    assert re.fullmatch(r"uploads/[0-9a-f-]{36}/cat\.png", key)
    assert upload_url.startswith(f"https://arena.ai/__storage/upload/{key}?X-Amz-Signature=")
    assert upload_url.endswith("&X-Amz-Expires=600")
    put = await site.client.put(upload_url, content=data, headers={"content-type": content_type})
    assert put.status_code == 200, put.text
    signed = result(await action(site, "getSignedUrl", key), site.sim.build.build_id)
    assert signed["success"] is True
    return key, signed["data"]["url"]


async def test_the_whole_upload_and_an_attachment_that_uses_it(site):
    key, url = await upload(site)
    assert url.startswith(f"https://arena.ai/__storage/{key}?X-Amz-Signature=") and url.endswith("X-Amz-Expires=3600")
    got = await site.client.get(url)
    assert got.content == PNG and got.headers["content-type"] == "image/png"
    body = create_body()
    body["userMessage"]["experimental_attachments"] = [{"name": "cat.png", "contentType": "image/png", "url": url}]
    assert (await site.create(body)).status_code == 200
    kinds = [(r["kind"], r["action"], r["status"]) for r in await site.log()]
    assert kinds == [("action", "generateUploadUrl", 200), ("storage", None, 200), ("action", "getSignedUrl", 200),
                     ("storage", None, 200), ("create", None, 200)]


async def test_any_page_path_takes_actions(site):
    made = result(await action(site, "updateTouConsent", True, path="/"), site.sim.build.build_id)
    assert made == {"success": True}


async def test_an_unknown_action_is_404(site):
    response = await action(site, "f" * 42, "cat.png", "image/png")
    assert response.status_code == 404 and response.text == "Server action not found."
    assert response.headers["content-type"].startswith("text/plain")
    assert (await site.last())["error"] == f"action: unknown action id {'f' * 42}"


async def test_actions_need_a_session(site):
    site.client.cookies.clear()
    made = result(await action(site, "generateUploadUrl", "cat.png", "image/png"), site.sim.build.build_id)
    assert made == {"success": False, "error": "Unauthorized"}


async def test_unsupported_file_types(site):
    made = result(await action(site, "generateUploadUrl", "x.bmp", "image/bmp"), site.sim.build.build_id)
    assert made == {"success": False, "error": "Unsupported file type"}
    for allowed in ("image/jpeg", "image/webp", "image/gif", "application/pdf"):
        assert result(await action(site, "generateUploadUrl", "f", allowed), site.sim.build.build_id)["success"]


async def test_the_upload_must_have_the_declared_type_size_and_signature(site):
    made = result(await action(site, "generateUploadUrl", "cat.png", "image/png"), site.sim.build.build_id)
    url = made["data"]["uploadUrl"]
    wrong_type = await site.client.put(url, content=PNG, headers={"content-type": "image/jpeg"})
    assert wrong_type.status_code == 403 and "<Code>SignatureDoesNotMatch</Code>" in wrong_type.text
    too_big = await site.client.put(url, content=b"x" * 1001, headers={"content-type": "image/png"})
    assert too_big.status_code == 413 and "<Code>EntityTooLarge</Code>" in too_big.text
    forged = re.sub(r"X-Amz-Signature=[0-9a-f]+", "X-Amz-Signature=" + "0" * 64, url)
    bad_sig = await site.client.put(forged, content=PNG, headers={"content-type": "image/png"})
    assert bad_sig.status_code == 403 and "SignatureDoesNotMatch" in bad_sig.text
    assert bad_sig.headers["content-type"].startswith("application/xml")
    assert (await site.last())["error"].startswith("storage: SignatureDoesNotMatch")


async def test_signed_urls_only_for_uploaded_keys(site):
    made = result(await action(site, "getSignedUrl", "uploads/nope/x.png"), site.sim.build.build_id)
    assert made == {"success": False, "error": "File not found"}
    _, url = await upload(site)
    forged = re.sub(r"X-Amz-Signature=[0-9a-f]+", "X-Amz-Signature=" + "0" * 64, url)
    assert (await site.client.get(forged)).status_code == 403


async def test_expired_signed_urls_are_refused_as_attachments(site):
    _, url = await upload(site)
    later = site.sim.now() + 3700
    site.sim.clock = lambda: later
    body = create_body(id=new_uuid7(later))  # an id of the moved clock's time
    body["userMessage"]["experimental_attachments"] = [{"name": "c", "contentType": "image/png", "url": url}]
    response = await site.create(body)
    assert response.status_code == 400 and response.json()["error"] == "Invalid attachment"
    assert (await site.client.get(url)).status_code == 403


async def test_the_upload_url_itself_is_not_an_attachment_url(site):
    made = result(await action(site, "generateUploadUrl", "cat.png", "image/png"), site.sim.build.build_id)
    body = create_body()
    body["userMessage"]["experimental_attachments"] = [{"name": "c", "contentType": "image/png",
                                                        "url": made["data"]["uploadUrl"]}]
    assert (await site.create(body)).status_code == 400


# --- Builds --------------------------------------------------------------------------------------

async def chunks(site) -> list[str]:
    page = (await site.client.get("/")).text
    urls = re.findall(r'<script src="(/_next/static/chunks/[^"]+)" async></script>', page)
    return [(await site.client.get(url)).text for url in urls]


async def test_a_new_build_retires_old_action_ids_and_chunks(site):
    old_ids, old_urls = dict(site.sim.build.action_ids), site.sim.build.chunk_urls()
    response = await site.client.post("/__sim/build", json={"rotate": True})
    assert response.status_code == 200 and response.json()["id"] != ""
    assert (await action(site, old_ids["generateUploadUrl"], "a.png", "image/png")).status_code == 404
    for url in old_urls:
        assert (await site.client.get(url)).status_code == 404
    new_ids = site.sim.build.action_ids
    assert set(new_ids.values()).isdisjoint(old_ids.values())
    assert any(f'"{new_ids["generateUploadUrl"]}"' in source for source in await chunks(site))
    made = result(await action(site, "generateUploadUrl", "a.png", "image/png"), site.sim.build.build_id)
    assert made["success"] is True


async def test_missing_actions_cannot_be_discovered_or_called(site):
    response = await site.client.post("/__sim/build", json={"actions": "missing"})
    assert response.json()["actions"] == "missing"
    sources = "".join(await chunks(site))
    assert '"generateUploadUrl")' not in sources and '"getSignedUrl")' not in sources
    assert '"updateTouConsent")' in sources
    assert (await action(site, "generateUploadUrl", "a.png", "image/png")).status_code == 404
    await site.client.post("/__sim/build", json={"actions": "present"})
    assert '"generateUploadUrl")' in "".join(await chunks(site))
