"""The arena.ai simulator's page, account, hosts, JS chunks and reCAPTCHA stand-in (see arena_sim's docstring)."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import httpx
import pytest

from arenahub.tools import arena_sim
from arenahub.tools.arena_sim import control, create_app
from arenahub.tools.arena_sim.catalog import default_models
from tests.tools.arena_support import GPT, open_site


@pytest.fixture
async def site():
    async with open_site() as s:
        yield s


def flight_strings(page: str) -> list[str]:
    """The JS strings pushed as ``[1, "..."]``, unescaped the way a browser does (they are JSON string literals)."""
    found = re.findall(r'<script>self\.__next_f\.push\(\[1,("(?:[^"\\]|\\.)*")\]\)</script>', page)
    return [json.loads(s) for s in found]


def flight_props(page: str) -> dict[str, Any]:
    text = "".join(flight_strings(page))
    line = next(line for line in text.split("\n") if '"initialModels"' in line)
    number, _, payload = line.partition(":")
    assert number.isdigit()
    element = json.loads(payload)
    assert element[:3] == ["$", "$L9", None]
    props: dict[str, Any] = element[3]
    return props


# --- The page --------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/", "/text/direct", "/text/battle", "/text/side-by-side",
                                  "/c/0198f3a1-0000-7000-8000-000000000001", "/image/direct", "/image/battle"])
async def test_every_page_path_serves_the_page(site, path):
    response = await site.client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert "<title>Arena AI (simulated)</title>" in response.text


async def test_unknown_paths_are_404(site):
    assert (await site.client.get("/leaderboard")).status_code == 404


async def test_the_site_key_is_only_in_the_recaptcha_loader(site):
    page = (await site.client.get("/")).text
    key = site.sim.site_key
    assert re.fullmatch(r"6L[A-Za-z0-9_-]{38}", key)
    assert f'<script src="/recaptcha/enterprise.js?render={key}" async defer></script>' in page
    assert page.count(key) == 1


async def test_the_site_key_can_be_given(site):
    key = "6L" + "a" * 38
    app = create_app(site_key=key)
    assert app.state.sim.site_key == key
    with pytest.raises(ValueError, match="site_key"):
        create_app(site_key="6Lshort")


async def test_flight_data_is_two_pushes_cut_in_the_model_list(site):
    page = (await site.client.get("/")).text
    assert "<script>(self.__next_f=self.__next_f||[]).push([0])</script>" in page
    first, second = flight_strings(page)
    assert '"initialModels":[' in first and '"initialModelAId"' in second
    with pytest.raises(json.JSONDecodeError):
        json.loads(first.split("8:", 1)[1])


async def test_flight_data_holds_the_models_in_the_sites_shape(site):
    props = flight_props((await site.client.get("/")).text)
    assert list(props) == ["initialModels", "initialModelAId", "initialModelBId", "userState"]
    assert props["initialModelAId"] == GPT and props["initialModelBId"] is None
    assert props["userState"] == {"id": site.sim.user_id, "isAnonymous": False}
    models = props["initialModels"]
    assert [m["name"] for m in models] == ["gpt-5-high", "claude-opus-4-1", "gemini-2.5-pro",
                                           "gemini-2.5-pro-grounding", "imagen-4.0-generate", "veo-3",
                                           "internal-test-model"]
    assert list(models[0]) == ["id", "name", "publicName", "displayName", "organization", "provider",
                               "userSelectable", "capabilities", "rankByModality"]
    by_name = {m["name"]: m for m in models}
    assert by_name["gpt-5-high"]["displayName"] == "GPT-5 (high)" != by_name["gpt-5-high"]["publicName"]
    assert by_name["claude-opus-4-1"]["capabilities"]["inputCapabilities"] == {"text": True, "image": True}
    assert by_name["gemini-2.5-pro-grounding"]["capabilities"]["outputCapabilities"] == {"text": True, "search": True}
    assert by_name["imagen-4.0-generate"]["capabilities"]["outputCapabilities"] == {"image": {"aspectRatios": ["1:1"]}}
    assert set(by_name["veo-3"]["capabilities"]["outputCapabilities"]) == {"video"}
    assert by_name["veo-3"]["userSelectable"] and not by_name["internal-test-model"]["userSelectable"]
    for m in models:
        assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", m["id"])


def test_default_model_ids_are_stable_across_runs():
    assert [m.id for m in default_models()] == [m.id for m in default_models()]
    assert default_models()[0].id == "0198628c-0400-7f4d-a956-ca6f9953418a"


async def test_flight_text_cannot_end_the_script_tag(site):
    evil = {"id": GPT, "publicName": "</script><b>x", "capabilities": {"outputCapabilities": {"text": True}}}
    assert (await site.client.post("/__sim/models", json={"models": [evil]})).status_code == 200
    page = (await site.client.get("/")).text
    assert "</script><b>" not in page
    assert flight_props(page)["initialModels"][0]["publicName"] == "</script><b>x"


async def test_the_page_has_a_chat_ui_that_makes_the_sites_own_calls(site):
    page = (await site.client.get("/")).text
    state = await site.state()
    assert f'<main id="chat" data-session-id="{state["page"]["session_id"]}"' in page
    assert f'data-message-id="{state["page"]["message_id"]}"' in page
    for marker in ['id="prompt"', 'id="send"', 'id="retry"', 'id="sign-in"', 'id="answer" data-state="idle"',
                   "grecaptcha.enterprise.execute(siteKey(), {action: action})", 'recaptchaToken("chat_submit")',
                   'recaptchaToken("chat_retry")', "window.fetch(url", '"/nextjs-api/stream/create-evaluation"',
                   '"/nextjs-api/stream/retry-evaluation-session-message/"', "crypto.getRandomValues(b)",
                   "Date.now()", "metadata: {}", '"/nextjs-api/sign-in/email"', 'answer.dataset.state = "done"',
                   'answer.dataset.state = "failed"', 'answer.dataset.state = "streaming"']:
        assert marker in page, marker


async def test_page_calls_carry_no_site_key_literal(site):
    # The page's own script reads the key from the loader tag, as a client must.
    page = (await site.client.get("/")).text
    assert 'document.querySelector(\'script[src*="/recaptcha/enterprise.js"]\')' in page


# --- JS chunks -------------------------------------------------------------------------------------

ACTION_REF = re.compile(r'\(0,n\.createServerReference\)\("([0-9a-f]{42})",n\.callServer,void 0,'
                        r'n\.findSourceMapURL,"(\w+)"\)')


async def chunk_sources(site) -> list[str]:
    page = (await site.client.get("/")).text
    urls = re.findall(r'<script src="(/_next/static/chunks/[^"]+)" async></script>', page)
    assert len(urls) == 3 and any("/app/page-" in url for url in urls)
    sources = []
    for url in urls:
        response = await site.client.get(url)
        assert response.status_code == 200 and response.headers["content-type"].startswith("application/javascript")
        sources.append(response.text)
    return sources


async def test_exactly_one_chunk_references_the_server_actions(site):
    sources = await chunk_sources(site)
    with_refs = [s for s in sources if ACTION_REF.search(s)]
    assert len(with_refs) == 1
    found = {name: action_id for action_id, name in ACTION_REF.findall(with_refs[0])}
    assert set(found) >= {"generateUploadUrl", "getSignedUrl", "updateTouConsent"}
    assert found == site.sim.build.action_ids
    assert f"/{site.sim.build.build_id}/" in site.sim.build.chunk_urls()[0]


async def test_unknown_chunks_are_404(site):
    assert (await site.client.get("/_next/static/chunks/nope/app/page-1.js")).status_code == 404


# --- reCAPTCHA stand-in ----------------------------------------------------------------------------

async def test_the_recaptcha_script_defines_grecaptcha_enterprise_late(site):
    response = await site.client.get(f"/recaptcha/enterprise.js?render={site.sim.site_key}")
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/javascript")
    script = response.text
    for marker in ["window.grecaptcha = {enterprise: {", "ready: function (callback)", "execute: execute",
                   "render: function () { return 0; }", '"/__sim/recaptcha/execute"',
                   "50 + Math.floor(Math.random() * 100)", "reject(new Error("]:
        assert marker in script, marker
    assert "fetch(" not in script  # XMLHttpRequest: a page's fetch wrapper does not see it


async def test_execute_issues_long_tokens_for_the_current_key_only(site):
    token = await site.token()
    assert len(token) >= 390 and re.fullmatch(r"[A-Za-z0-9_-]+", token)
    old = site.sim.site_key
    await site.client.post("/__sim/recaptcha", json={"rotate_site_key": True})
    refused = await site.client.post("/__sim/recaptcha/execute", json={"siteKey": old, "action": "chat_submit"})
    assert refused.status_code == 400 and refused.json() == {"error": "Invalid site key"}
    assert site.sim.site_key != old and site.sim.site_key in (await site.client.get("/")).text


# --- Account and cookies ---------------------------------------------------------------------------

def cookie_headers(response: httpx.Response) -> dict[str, str]:
    return {h.split("=", 1)[0]: h for h in response.headers.get_list("set-cookie")}


async def test_the_page_sets_the_split_auth_cookie():
    async with open_site(visit=False) as site:
        response = await site.client.get("/")
        headers = cookie_headers(response)
        assert set(headers) == {"arena-auth-prod-v1.0", "arena-auth-prod-v1.1"}
        for header in headers.values():
            assert "Path=/" in header and "SameSite=lax" in header and "Secure" in header
        value = response.cookies["arena-auth-prod-v1.0"] + response.cookies["arena-auth-prod-v1.1"]
        assert value.startswith("base64-")
        data = value[len("base64-"):]
        session = json.loads(base64.urlsafe_b64decode(data + "=" * (-len(data) % 4)))
        assert set(session) == {"access_token", "refresh_token", "expires_at", "user"}
        assert session["user"] == {"id": site.sim.user_id, "is_anonymous": False}
        assert (await site.client.get("/api/me")).json() == {"id": site.sim.user_id, "isAnonymous": False}
        assert "set-cookie" not in (await site.client.get("/")).headers  # a valid session: nothing to set


async def test_cookies_are_not_secure_over_http():
    async with open_site(base_url="http://127.0.0.1:5180", visit=False) as site:
        for header in cookie_headers(await site.client.get("/")).values():
            assert "Secure" not in header


async def test_one_unsplit_cookie_is_accepted_too(site):
    value = "".join(site.sim.session.cookies().values())
    site.client.cookies.clear()
    site.client.cookies.set("arena-auth-prod-v1", value)
    assert (await site.client.get("/api/me")).status_code == 200
    site.client.cookies.clear()
    site.client.cookies.set("arena-auth-prod-v1.0", value[:10])
    assert (await site.client.get("/api/me")).status_code == 401


async def test_a_second_visitor_shares_the_session_and_does_not_log_the_first_out(site):
    transport = httpx.ASGITransport(app=site.app)
    async with httpx.AsyncClient(transport=transport, base_url="https://arena.ai") as other:
        await other.get("/")
        assert (await other.get("/api/me")).status_code == 200
    assert (await site.client.get("/api/me")).status_code == 200


async def test_guest_and_no_auto_sign_in():
    async with open_site(auto_sign_in="guest") as site:
        assert (await site.client.get("/api/me")).json() == {"id": site.sim.user_id, "isAnonymous": True}
        assert flight_props((await site.client.get("/")).text)["userState"]["isAnonymous"] is True
    async with open_site(auto_sign_in="none", visit=False) as site:
        response = await site.client.get("/")
        assert "set-cookie" not in response.headers and flight_props(response.text)["userState"] is None
        me = await site.client.get("/api/me")
        assert me.status_code == 401 and me.json() == {"error": "User not found"}


async def test_sign_in_by_email_makes_a_user_session():
    async with open_site(auto_sign_in="guest") as site:
        response = await site.client.post("/nextjs-api/sign-in/email", json={"email": "a@b.c"})
        assert response.status_code == 200 and response.json() == {"ok": True}
        assert set(cookie_headers(response)) == {"arena-auth-prod-v1.0", "arena-auth-prod-v1.1"}
        assert (await site.client.get("/api/me")).json()["isAnonymous"] is False
        assert (await site.client.post("/nextjs-api/sign-in/email", content=b"{nope")).status_code == 400


async def test_revoking_ends_the_session_until_a_new_sign_in(site):
    response = await site.client.post("/__sim/auth", json={"revoke": True})
    assert response.json()["state"] == "none"
    assert (await site.client.get("/api/me")).status_code == 401
    await site.client.get("/")  # auto_sign_in "user": a new session
    assert (await site.client.get("/api/me")).status_code == 200


# --- Hosts ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("base", ["http://lmarena.ai", "https://lmarena.ai", "https://www.lmarena.ai:8443"])
async def test_lmarena_hosts_redirect_to_arena_ai(site, base):
    response = await site.client.get(f"{base}/text/direct?mode=x&y=1")
    assert response.status_code == 301 and response.headers["location"] == "https://arena.ai/text/direct?mode=x&y=1"
    assert (await site.client.post(f"{base}/nextjs-api/stream/create-evaluation")).status_code == 301


@pytest.mark.parametrize("base", ["https://arena.ai", "http://127.0.0.1:5180", "http://localhost"])
async def test_other_hosts_are_served(site, base):
    assert (await site.client.get(f"{base}/")).status_code == 200


# --- The documentation is the contract -------------------------------------------------------------

def test_the_docstring_documents_every_control_route_and_outcome_kind():
    doc = arena_sim.__doc__ or ""
    for route in control.ROUTES:
        assert route.path.split("{")[0] in doc, route.path
    for kind in ["text", "image", "error", "challenge", "block", "status", "schema", "html", "raw", "hang"]:
        assert f"``{kind}``" in doc, kind


def test_public_names():
    assert arena_sim.__all__ == ["create_app", "run"]
