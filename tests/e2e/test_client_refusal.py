"""A key regenerated from the admin API (a new client package): the running client is disconnected and
refused with the reason, both the dashboard's client view and the client's own status say why, and
no key appears in either. (test_client_link.py covers the same through `arenahub admin client-package`
from the client's side only.)"""

from __future__ import annotations

import datetime as dt
import io
import re
import zipfile
from collections.abc import Callable

import httpx
import pytest

import arenahub

from .harness import Client, Platform, wait_until

ADMIN_TOKEN = "adm-e2e-client-refusal"


@pytest.fixture
def platform_env() -> dict[str, str]:
    return {"ARENAHUB_RECORD_FLUSH_SECONDS": "0.2", "ARENAHUB_ADMIN_TOKEN": ADMIN_TOKEN}


def admin(platform: Platform, method: str, path: str) -> httpx.Response:
    return httpx.request(method, platform.url + "/api/admin" + path, timeout=30,
                         headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})


def test_a_key_regenerated_in_the_admin_api_disconnects_the_client_and_says_why(
        platform: Platform, start_client: Callable[..., Client]) -> None:
    client = start_client()
    view = admin(platform, "GET", f"/clients/{client.client_id}").json()
    assert (view["connected"], view["last_refusal"]) == (True, None)
    assert (view["version"], view["current_version"], view["outdated"]) == (arenahub.__version__,) * 2 + (False,)

    package = admin(platform, "POST", f"/clients/{client.client_id}/package")
    assert package.status_code == 200, package.text
    config = zipfile.ZipFile(io.BytesIO(package.content)).read("config.jsonc").decode()
    new_key = re.search(r'"api_key":\s*"([^"]+)"', config).group(1)
    assert new_key != client.api_key

    # The client is told why, and stops: a refusal marked final is not retried.
    status = client.wait_state("refused", timeout=15)
    assert status["refused"]["code"] == "invalid_credentials"
    assert "regenerated" in status["refused"]["message"]

    def out() -> dict | None:
        shown = admin(platform, "GET", f"/clients/{client.client_id}").json()
        return shown if not shown["connected"] and shown["last_refusal"] else None
    view = wait_until(out, 10, "the client view showing the disconnect and its reason")
    closed = view["last_refusal"]
    assert closed["code"] == "invalid_credentials" and "regenerated" in closed["message"]
    assert view["live"] is None
    status_now = admin(platform, "GET", "/status").json()
    assert status_now["connected_clients"] == 0 and status_now["version"] == arenahub.__version__

    # Told to connect again, it offers the old key and is refused at the door, with the reason.
    resp = httpx.post(client.url + "/platform/register", timeout=15)
    assert resp.status_code == 502 and resp.json()["state"] == "refused"
    assert "regenerated" in client.status()["refused"]["message"]

    def refused_again() -> dict | None:
        last = admin(platform, "GET", f"/clients/{client.client_id}").json()["last_refusal"]
        return last if dt.datetime.fromisoformat(last["at"]) > dt.datetime.fromisoformat(closed["at"]) else None
    again = wait_until(refused_again, 10, "the refusal at reconnect in the client view")
    assert again["code"] == "invalid_credentials" and "regenerated" in again["message"]

    # The package README's steps, as an owner follows them: a config.jsonc that does not parse is refused
    # with the reason and changes nothing; the new api_key line pasted in, register connects with it at
    # once, without a restart.
    original = client.config_path.read_text()
    client.config_path.write_text(original.replace(f'"api_key": "{client.api_key}"', '"api_key": 42'))
    bad = httpx.post(client.url + "/platform/register", timeout=15)
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_config", bad.text
    assert "platform_integration.api_key: must be str, got int 42" in bad.json()["error"]
    assert client.status()["state"] == "refused"
    client.config_path.write_text(original.replace(client.api_key, new_key))
    registered = httpx.post(client.url + "/platform/register", timeout=15)
    assert registered.status_code == 200, registered.text
    assert registered.json()["registered"] is True and registered.json()["config"]["changed"] == ["api_key"]
    assert admin(platform, "GET", f"/clients/{client.client_id}").json()["connected"] is True

    # No key text anywhere the admin or the client's owner looks.
    shown = admin(platform, "GET", "/clients").text + repr(client.status()) + registered.text + bad.text
    for key in (client.api_key, new_key):
        assert key not in shown and key not in platform.log()
