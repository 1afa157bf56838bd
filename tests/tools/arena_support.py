"""Helpers for the arena.ai simulator tests: a signed-in client and valid bodies for each call."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from arenahub.tools.arena_sim import create_app
from arenahub.tools.arena_sim.catalog import default_models
from arenahub.tools.arena_sim.state import SimState, new_uuid7

MODELS = {m.name: m.id for m in default_models()}
GPT, CLAUDE, GEMINI = MODELS["gpt-5-high"], MODELS["claude-opus-4-1"], MODELS["gemini-2.5-pro"]
GROUNDING, IMAGEN, VEO = MODELS["gemini-2.5-pro-grounding"], MODELS["imagen-4.0-generate"], MODELS["veo-3"]
INTERNAL = MODELS["internal-test-model"]
CREATE = "/nextjs-api/stream/create-evaluation"
PROMPT = "hello there  world"


def uuid7(offset_seconds: float = 0) -> str:
    return new_uuid7(time.time() + offset_seconds)


def follow_up_path(session_id: str) -> str:
    return f"/nextjs-api/stream/post-to-evaluation/{session_id}"


def retry_path(session_id: str, message_id: str) -> str:
    return f"/nextjs-api/stream/retry-evaluation-session-message/{session_id}/messages/{message_id}"


def lines(response: httpx.Response) -> list[str]:
    assert response.text.endswith("\n"), response.text
    return response.text[:-1].split("\n")


def text_of(response: httpx.Response, position: str = "a") -> str:
    return "".join(json.loads(line[3:]) for line in lines(response) if line.startswith(f"{position}0:"))


def create_body(mode: str = "direct", content: str = PROMPT, modality: str = "chat", **fields: Any) -> dict[str, Any]:
    """A valid create-evaluation body for ``mode`` (without a token)."""
    body: dict[str, Any] = {"id": uuid7(), "mode": mode, "userMessageId": uuid7(), "modelAMessageId": uuid7(),
                            "userMessage": {"content": content, "experimental_attachments": [], "metadata": {}},
                            "modality": modality}
    if mode != "battle":
        body["modelAId"] = GPT
    if mode == "side-by-side":
        body["modelBId"] = CLAUDE
    if mode != "direct":
        body["modelBMessageId"] = uuid7()
    body.update(fields)
    return body


def turn_body(content: str = PROMPT, battle: bool = False, **fields: Any) -> dict[str, Any]:
    """A valid post-to-evaluation body (without a token)."""
    body: dict[str, Any] = {"userMessageId": uuid7(), "modelAMessageId": uuid7(), "modality": "chat",
                            "userMessage": {"content": content, "experimental_attachments": [], "metadata": {}}}
    if battle:
        body["modelBMessageId"] = uuid7()
    body.update(fields)
    return body


def retry_body(session_id: str, message_id: str, *contents: tuple[str, str], **fields: Any) -> dict[str, Any]:
    """A valid legacy retry body: the ``(role, content)`` chain, then the retried message, pending."""
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    chain = [*(contents or (("user", PROMPT),)), ("assistant", "")]
    messages: list[dict[str, Any]] = []
    for i, (role, content) in enumerate(chain):
        last = i == len(chain) - 1
        messages.append({"role": role, "content": content, "id": message_id if last else uuid7(),
                         "evaluationId": None, "evaluationSessionId": session_id,
                         "parentMessageIds": [messages[-1]["id"]] if messages else [], "experimental_attachments": [],
                         "failureReason": None, "metadata": {}, "participantPosition": "a", "createdAt": now,
                         "updatedAt": now, "status": "pending" if last else "success"})
    return {"messages": messages, "modelId": None, **fields}


class Site:
    """A browser-like client of the simulated site: signed in by its first page visit."""

    def __init__(self, app: Any, client: httpx.AsyncClient) -> None:
        self.app, self.client = app, client

    @property
    def sim(self) -> SimState:
        state: SimState = self.app.state.sim
        return state

    async def token(self, action: str = "chat_submit", site_key: str | None = None) -> str:
        response = await self.client.post("/__sim/recaptcha/execute",
                                          json={"siteKey": site_key or self.sim.site_key, "action": action})
        assert response.status_code == 200, response.text
        token: str = response.json()["token"]
        return token

    async def send(self, path: str, body: Any, method: str = "POST", action: str | None = "chat_submit",
                   **kw: Any) -> httpx.Response:
        """The call as the page makes it (text/plain), with a fresh token unless the body has one or action is None."""
        if action is not None and isinstance(body, dict) and "recaptchaV3Token" not in body:
            body = {**body, "recaptchaV3Token": await self.token(action)}
        content = body if isinstance(body, str | bytes) else json.dumps(body)
        return await self.client.request(method, path, content=content,
                                         headers={"content-type": "text/plain;charset=UTF-8"}, **kw)

    async def create(self, body: Any = None, **kw: Any) -> httpx.Response:
        return await self.send(CREATE, create_body() if body is None else body, **kw)

    async def follow_up(self, session_id: str, body: Any = None, **kw: Any) -> httpx.Response:
        return await self.send(follow_up_path(session_id), turn_body() if body is None else body, **kw)

    async def retry(self, session_id: str, message_id: str, body: Any = None, **kw: Any) -> httpx.Response:
        kw.setdefault("action", "chat_retry")
        payload = retry_body(session_id, message_id) if body is None else body
        return await self.send(retry_path(session_id, message_id), payload, method="PUT", **kw)

    async def script(self, *outcomes: dict[str, Any]) -> None:
        response = await self.client.post("/__sim/script", json=list(outcomes))
        assert response.status_code == 200, response.text

    async def log(self) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = (await self.client.get("/__sim/requests")).json()
        return records

    async def last(self) -> dict[str, Any]:
        return (await self.log())[-1]

    async def state(self) -> dict[str, Any]:
        state: dict[str, Any] = (await self.client.get("/__sim/state")).json()
        return state


@asynccontextmanager
async def open_site(base_url: str = "https://arena.ai", visit: bool = True, **options: Any) -> AsyncIterator[Site]:
    app = create_app(**options)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url) as client:
        if visit:
            assert (await client.get("/")).status_code == 200
        yield Site(app, client)
