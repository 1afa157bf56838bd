"""``RemoteAdmin``: the admin operations (``operations.AdminOperations``) through a running platform's
admin API (``/api/admin``, ``api.ROUTES``), with the admin token, so that the operator never needs to
know where the platform's database is. Changes apply at once, as from the dashboard. aiohttp, the
programs' HTTP client (httpx is only the tests').

Every failure is one line (``AdminError``): the platform cannot be reached, refuses the token (401),
finds nothing (404: None or False where the operation says so), or refuses the change (400, 409, ...),
with the API's own error code and message.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

from arenahub.platform.admin import package_keys
from arenahub.platform.admin.operations import AdminError, not_over_api
from arenahub.platform.billing import Price, format_usd

TIMEOUT = aiohttp.ClientTimeout(total=30.0, connect=10.0)
PACKAGE_TIMEOUT = aiohttp.ClientTimeout(total=300.0, connect=10.0)  # the platform may build the wheel first


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Mapping[str, str]  # aiohttp's: names in any case
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def _id(value: str) -> str:
    return quote(value, safe="")  # an id is one path segment, whatever was typed


def _key_fields(values: dict[str, Any]) -> dict[str, Any]:
    """Stored field names (``accounts.update_key``) as the API names them."""
    names = {"allowed_models": "models"}
    return {names.get(k, k): v.isoformat() if isinstance(v, dt.datetime) else v for k, v in values.items()}


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


class RemoteAdmin:
    def __init__(self, url: str, token: str) -> None:
        self.url = url  # the platform's address, without /api
        self._api = url + "/api/admin"
        # trust_env: HTTP(S)_PROXY and NO_PROXY apply, as they do for curl.
        self._http = aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}, timeout=TIMEOUT,
                                           trust_env=True)

    async def aclose(self) -> None:
        await self._http.close()

    async def _send(self, method: str, path: str, *, missing: tuple[str, ...] = (),
                    timeout: aiohttp.ClientTimeout = TIMEOUT, **kw: Any) -> Answer | None:
        """The answer when it is a success; None for a 404 whose error code is in ``missing``."""
        try:
            async with self._http.request(method, self._api + path, timeout=timeout, allow_redirects=False,
                                          **kw) as r:
                answer = Answer(r.status, r.headers, await r.read())
        except TimeoutError:
            raise AdminError(f"the platform at {self.url} did not answer in time") from None
        except aiohttp.ClientConnectorError as exc:  # its own text adds "ssl:default", even for http
            cause = exc.os_error
            reason = os.strerror(cause.errno) if cause.errno else str(cause) or type(cause).__name__
            raise AdminError(f"cannot reach the platform at {self.url}: {_one_line(reason)}") from None
        except aiohttp.ClientError as exc:
            raise AdminError(f"cannot reach the platform at {self.url}: {_one_line(str(exc)) or type(exc).__name__}"
                             ) from None
        if 200 <= answer.status < 300:
            return answer
        error = _error_of(answer)
        if answer.status == 404 and error is not None and error.get("code") in missing:
            return None
        raise AdminError(self._refusal(method, path, answer, error))

    def _refusal(self, method: str, path: str, r: Answer, error: dict[str, Any] | None) -> str:
        where = f"{method} /api/admin{path}"
        if 300 <= r.status < 400:
            return (f"the platform at {self.url} redirects {where} to {r.headers.get('location', '?')}: give that "
                    "address as the platform URL")
        if error is None:
            return (f"{self.url} answered {r.status} to {where}, not as an arenahub platform does (is the "
                    "platform URL right?)")
        said = f"{r.status} {error.get('code') or error.get('type')}: {_one_line(str(error.get('message')))}"
        if r.status == 401:
            return f"the platform at {self.url} refused the admin token ({said}); check ARENAHUB_ADMIN_TOKEN"
        if r.status == 429 and "retry-after" in r.headers:
            said += f" (retry after {r.headers['retry-after']} s)"
        return f"the platform refused {where}: {said}"

    async def _json(self, method: str, path: str, *, missing: tuple[str, ...] = (), **kw: Any) -> Any:
        r = await self._send(method, path, missing=missing, **kw)
        if r is None:
            return None
        try:
            return r.json()
        except ValueError:
            raise AdminError(f"{self.url} answered {method} /api/admin{path} with something other than JSON (is the "
                             "platform URL right?)") from None

    async def status(self) -> dict[str, Any]:
        """``GET /api/admin/status``: that the platform is there and takes the token."""
        found = await self._json("GET", "/status")
        if not isinstance(found, dict) or "version" not in found:
            raise AdminError(f"{self.url} answered GET /api/admin/status, but not as an arenahub platform does")
        return found

    # -- consumer keys

    async def create_key(self, name: str, settings: dict[str, Any], credit: int | None) -> dict[str, Any]:
        body = {"name": name, **_key_fields(settings)}
        if credit is not None:
            body["credit"] = format_usd(credit)
        made = await self._json("POST", "/keys", json=body)
        return {"key": made["key"], "key_id": made["id"]}

    async def list_keys(self) -> list[dict[str, Any]]:
        return list((await self._json("GET", "/keys"))["data"])

    async def show_key(self, key_id: str) -> dict[str, Any] | None:
        return await self._json("GET", f"/keys/{_id(key_id)}", missing=("key_not_found",))

    async def update_key(self, key_id: str, changes: dict[str, Any]) -> dict[str, Any] | None:
        if not changes:
            return await self.show_key(key_id)
        return await self._json("PATCH", f"/keys/{_id(key_id)}", json=_key_fields(changes),
                                missing=("key_not_found",))

    async def rotate_key(self, key_id: str) -> str | None:
        rotated = await self._json("POST", f"/keys/{_id(key_id)}/rotate", missing=("key_not_found",))
        return None if rotated is None else str(rotated["key"])

    async def delete_key(self, key_id: str) -> bool:
        return await self._send("DELETE", f"/keys/{_id(key_id)}", missing=("key_not_found",)) is not None

    async def top_up(self, key_id: str, micros: int, note: str | None) -> dict[str, Any] | None:
        return await self._json("POST", f"/keys/{_id(key_id)}/top-ups", json={"amount": format_usd(micros),
                                "note": note}, missing=("key_not_found",))

    # -- prices and usage

    async def set_price(self, model: str, price: Price) -> None:
        await self._send("PUT", f"/prices/{quote(model, safe='/')}", json={
            "prompt": format_usd(price.prompt_per_1m), "completion": format_usd(price.completion_per_1m),
            "image": format_usd(price.per_image)})

    async def usage(self, key: str | None, client: str | None, since: dt.datetime | None,
                    until: dt.datetime | None) -> dict[str, Any]:
        asked = {"key": key, "client": client, "since": since.isoformat() if since else None,
                 "until": until.isoformat() if until else None}
        return dict(await self._json("GET", "/usage", params={k: v for k, v in asked.items() if v is not None}))

    # -- clients

    async def create_client(self, name: str, email: str | None, bridge_url: str, rpm: int | None,
                            max_concurrent: int) -> tuple[str, str]:
        made = await self._json("POST", "/clients", json={"name": name, "email": email, "bridge_url": bridge_url,
                                                          "rpm": rpm, "max_concurrent": max_concurrent})
        return made["client_id"], made["api_key"]

    async def list_clients(self) -> list[dict[str, Any]]:
        return list((await self._json("GET", "/clients"))["data"])

    async def show_client(self, client_id: str) -> dict[str, Any] | None:
        return await self._json("GET", f"/clients/{_id(client_id)}", missing=("client_not_found",))

    async def update_client(self, client_id: str, changes: dict[str, Any]) -> dict[str, Any] | None:
        if not changes:
            return await self.show_client(client_id)
        return await self._json("PATCH", f"/clients/{_id(client_id)}", json=changes, missing=("client_not_found",))

    async def set_draining(self, client_id: str, draining: bool) -> dict[str, Any] | None:
        return await self._json("POST", f"/clients/{_id(client_id)}/{'drain' if draining else 'undrain'}",
                                missing=("client_not_found",))

    async def clear_maintenance(self, client_id: str) -> dict[str, Any] | None:
        return await self._json("POST", f"/clients/{_id(client_id)}/clear-maintenance", missing=("client_not_found",))

    async def delete_client(self, client_id: str) -> bool:
        return await self._send("DELETE", f"/clients/{_id(client_id)}", missing=("client_not_found",)) is not None

    async def client_package(self, client_id: str, platform_url: str, target: Path) -> str | None:
        """The platform makes the package and stores the new key before it answers; it is written beside
        ``target`` and then moved there."""
        r = await self._send("POST", f"/clients/{_id(client_id)}/package", params={"platform_url": platform_url},
                             missing=("client_not_found",), timeout=PACKAGE_TIMEOUT)
        if r is None:
            return None
        written = package_keys.write_beside(target, r.body)
        try:
            os.replace(written, target)
        finally:
            written.unlink(missing_ok=True)
        return client_id

    # -- the model catalogue

    async def catalogue(self) -> dict[str, Any]:
        return dict(await self._json("GET", "/catalogue"))

    async def list_model(self, model: str, any_client: bool) -> bool:
        return bool((await self._json("PUT", "/catalogue/models", json={"model": model, "any_client": any_client}))
                    ["created"])

    async def unlist_model(self, model: str) -> bool:
        return await self._send("DELETE", "/catalogue/models", params={"model": model},
                                missing=("model_not_listed",)) is not None

    async def decide(self, model: str, client_id: str, approved: bool) -> bool:
        return await self._send("PUT", "/catalogue/decisions", json={
            "model": model, "client_id": client_id, "approved": approved}, missing=("client_not_found",)) is not None

    async def forget(self, model: str, client_id: str) -> bool:
        return await self._send("DELETE", "/catalogue/decisions", params={"model": model, "client_id": client_id},
                                missing=("decision_not_found",)) is not None

    # -- the admin's own credentials

    async def set_dashboard_password(self, password: str | None) -> None:
        if password is None:
            raise not_over_api("set-dashboard-password --clear")
        await self._send("PUT", "/dashboard-password", json={"new_password": password})

    async def reset_admin_token(self) -> str:
        raise not_over_api("reset-admin-token")


def _error_of(r: Answer) -> dict[str, Any] | None:
    """The OpenAI error envelope's ``error`` object, if the answer is one."""
    try:
        body = r.json()
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else None
