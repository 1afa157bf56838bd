"""Cloudflare modes, the control API's validation and reset, the CLI, and serving over TLS."""

from __future__ import annotations

import argparse
import socket
import ssl
import threading
import time

import httpx
import pytest
import uvicorn

from arenahub.cli import build_parser
from arenahub.tools.arena_sim import create_app, run
from tests.tools.arena_support import GPT, create_body, open_site


@pytest.fixture
async def site():
    async with open_site() as s:
        yield s


# --- Cloudflare ----------------------------------------------------------------------------------

async def test_challenge_mode_until_the_browser_clears_it(site):
    assert (await site.client.post("/__sim/cloudflare", json={"mode": "challenge"})).json() == {"mode": "challenge"}
    for path in ("/", "/_next/static/chunks/x.js", "/api/me"):
        response = await site.client.get(path)
        assert response.status_code == 403 and response.headers["cf-mitigated"] == "challenge", path
        assert response.headers["server"] == "cloudflare" and response.headers["content-type"].startswith("text/html")
        assert "<title>Just a moment...</title>" in response.text
        assert "Enable JavaScript and cookies to continue" in response.text
        assert '"/cdn-cgi/challenge-platform/clear"' in response.text and "location.reload()" in response.text
    call = await site.create()
    assert call.status_code == 403 and (await site.last())["error"] == "cloudflare: challenge"
    assert (await site.client.get("/__sim/state")).status_code == 200
    cleared = await site.client.get("/cdn-cgi/challenge-platform/clear")
    assert cleared.status_code == 200 and "cf_clearance=" in cleared.headers["set-cookie"]
    assert (await site.client.get("/")).status_code == 200 and (await site.create()).status_code == 200
    await site.client.post("/__sim/cloudflare", json={"mode": "challenge"})  # set again: clearances forgotten
    assert (await site.client.get("/")).status_code == 403


async def test_the_challenge_takes_as_long_as_it_is_told(site):
    await site.client.post("/__sim/cloudflare", json={"mode": "challenge", "clears_after_ms": 4000})
    page = (await site.client.get("/")).text
    assert "}, 4000);" in page and "}, 300);" not in page


async def test_block_mode_until_turned_off(site):
    await site.client.post("/__sim/cloudflare", json={"mode": "block"})
    for path in ("/", "/cdn-cgi/challenge-platform/clear", "/_next/static/chunks/x.js"):
        response = await site.client.get(path)
        assert response.status_code == 403 and "<title>Attention Required! | Cloudflare</title>" in response.text
        assert "Sorry, you have been blocked" in response.text and 'id="cf-error-details"' in response.text
        assert "cf-mitigated" not in response.headers
    assert (await site.create()).status_code == 403 and (await site.last())["error"] == "cloudflare: block"
    assert (await site.client.get("/__sim/state")).status_code == 200
    await site.client.post("/__sim/cloudflare", json={"mode": "off"})
    assert (await site.client.get("/")).status_code == 200


async def test_actions_and_storage_are_challenged_and_logged(site):
    await site.client.post("/__sim/cloudflare", json={"mode": "challenge"})
    response = await site.client.post("/", content=b"[]", headers={"next-action": "a" * 42})
    assert response.status_code == 403
    assert (await site.last())["kind"] == "action"


# --- Control API validation ------------------------------------------------------------------------

@pytest.mark.parametrize("path, payload, fragment", [
    ("/__sim/script", [{"kind": "poem"}], "outcome 0: Invalid value 'poem'"),
    ("/__sim/script", [{"kind": "text"}, {"kind": "text", "colour": 1}], "outcome 1: Object contains unknown field"),
    ("/__sim/script", [{"kind": "text", "delay_ms": "slow"}], "Expected `int`, got `str`"),
    ("/__sim/script", [{"kind": "text", "text": "a", "words": 2}], "give text or words, not both"),
    ("/__sim/script", [{"kind": "status"}], "missing required field `status`"),
    ("/__sim/script", [{"kind": "status", "status": 200}], "Expected `int` >= 400"),
    ("/__sim/script", [{"kind": "text", "finish": "done"}], "Invalid enum value 'done'"),
    ("/__sim/script", {"outcome": []}, "a script is a list of outcomes"),
    ("/__sim/models", {"model": []}, "bad models"),
    ("/__sim/models", {"models": [{"id": "x", "publicName": "m", "capabilities": {"outputCapabilities": {}}}]},
     "model id must be a uuid"),
    ("/__sim/models", {"models": [{"id": GPT, "capabilities": {"outputCapabilities": {}}}]},
     "missing required field `publicName`"),
    ("/__sim/auth", {"auto_sign_in": "admin"}, "bad auth"),
    ("/__sim/auth", {"revoked": True}, "unknown field `revoked`"),
    ("/__sim/cloudflare", {"mode": "on"}, "bad cloudflare"),
    ("/__sim/cloudflare", {"mode": "challenge", "clears_after_ms": 60_001}, "Expected `int` <= 60000"),
    ("/__sim/recaptcha", {"token_ttl_seconds": 0}, "Expected `float` > 0.0"),
    ("/__sim/recaptcha", {"fail_next": -1}, "Expected `int` >= 0"),
    ("/__sim/build", {"actions": "gone"}, "bad build"),
    ("/__sim/feedback", {"session_id": "x"}, "missing required field `message_id`"),
])
async def test_bad_control_calls_are_400_naming_the_problem(site, path, payload, fragment):
    response = await site.client.post(path, json=payload)
    assert response.status_code == 400 and fragment in response.json()["error"], response.text


async def test_a_bad_script_queues_nothing(site):
    await site.client.post("/__sim/script", json=[{"kind": "text"}, {"kind": "nope"}])
    assert (await site.state())["script_pending"] == 0


async def test_feedback_for_an_unknown_message_is_404(site):
    response = await site.client.post("/__sim/feedback", json={"session_id": GPT, "message_id": GPT})
    assert response.status_code == 404


async def test_models_can_be_replaced(site):
    model = {"id": "0198f3a1-0000-7000-8000-0000000000aa", "publicName": "new-model",
             "capabilities": {"outputCapabilities": {"text": True}}}
    assert (await site.client.post("/__sim/models", json={"models": [model]})).json() == {"models": 1}
    assert (await site.create(create_body(modelAId=model["id"]))).status_code == 200
    assert (await site.create(create_body())).json() == {"error": "Model not found", "path": ["modelAId"]}


async def test_state_describes_the_site(site):
    state = await site.state()
    assert set(state) == {"user_id", "auth", "site_key", "build", "models", "evaluations", "page", "script_pending",
                          "cloudflare", "token_ttl_seconds", "fail_next", "requests"}
    assert state["auth"]["state"] == "user" and set(state["auth"]["cookies"]) == {"arena-auth-prod-v1.0",
                                                                                  "arena-auth-prod-v1.1"}
    assert state["build"]["actions"] == "present" and len(state["build"]["chunks"]) == 3
    assert [e["id"] for e in state["evaluations"]] == [state["page"]["session_id"]]
    assert (state["cloudflare"], state["token_ttl_seconds"], state["script_pending"]) == ("off", 120, 0)


async def test_reset_goes_back_to_the_start_but_keeps_what_open_pages_need(site):
    before = await site.state()
    page = before["page"]
    await site.create()
    await site.script({"kind": "hang"})
    await site.client.post("/__sim/feedback", json={"session_id": page["session_id"],
                                                    "message_id": page["message_id"]})
    await site.client.post("/__sim/recaptcha", json={"fail_next": 3, "token_ttl_seconds": 1})
    await site.client.post("/__sim/build", json={"actions": "missing"})
    await site.client.post("/__sim/auth", json={"auto_sign_in": "none"})
    await site.client.post("/__sim/models", json={"models": []})
    await site.client.post("/__sim/cloudflare", json={"mode": "block"})
    after = (await site.client.post("/__sim/reset")).json()
    assert after == {**before, "requests": 0}
    assert (await site.client.get("/api/me")).status_code == 200  # the cookie still counts
    assert (await site.create()).status_code == 200


# --- The CLI -----------------------------------------------------------------------------------

def test_cli_defaults_and_flags():
    args = build_parser().parse_args(["simulate-lmarena"])
    assert (args.protocol, args.host, args.port, args.tls, args.tls_cert, args.tls_key, args.models) == (
        "2026", "127.0.0.1", 5180, False, None, None, None)
    args = build_parser().parse_args(["simulate-lmarena", "--protocol", "2025", "--tls", "--port", "5999",
                                      "--host", "0.0.0.0", "--models", "m.json"])
    assert (args.protocol, args.tls, args.port, args.host, args.models) == ("2025", True, 5999, "0.0.0.0", "m.json")
    assert callable(args.run)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["simulate-lmarena", "--protocol", "2024"])


def _args(**kw: object) -> argparse.Namespace:
    base: dict[str, object] = {"protocol": "2026", "host": "127.0.0.1", "port": 5180, "tls": False, "tls_cert": None,
                               "tls_key": None, "models": None}
    return argparse.Namespace(**{**base, **kw})


def test_run_refuses_half_a_certificate_and_a_bad_model_file(tmp_path, capsys):
    assert run(_args(tls_cert=str(tmp_path / "c.pem"))) == 2
    assert "--tls-cert and --tls-key go together" in capsys.readouterr().err
    bad = tmp_path / "models.json"
    bad.write_text('[{"id": "nope"}]')
    assert run(_args(models=str(bad))) == 2
    assert run(_args(models=str(tmp_path / "missing.json"))) == 2


def test_create_app_refuses_impossible_options():
    for options in ({"auto_sign_in": "admin"}, {"page_session_id": "x"}, {"token_ttl_seconds": 0}):
        with pytest.raises(ValueError):
            create_app(**options)


# --- TLS ---------------------------------------------------------------------------------------

def test_self_signed_certificate_names_the_sites_hosts(tmp_path):
    from cryptography import x509

    from arenahub.tools.arena_sim.tls import self_signed

    cert_path, key_path = self_signed(tmp_path)
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {"arena.ai", "lmarena.ai", "www.lmarena.ai", "localhost"}
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days == 31
    assert key_path.stat().st_mode & 0o777 == 0o600


def test_serves_https_on_a_real_socket(tmp_path):
    from arenahub.tools.arena_sim.tls import self_signed

    cert, key = self_signed(tmp_path)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(create_app(), log_level="warning", ssl_certfile=str(cert), ssl_keyfile=str(key),
                            lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
            time.sleep(0.02)
        response = httpx.get(f"https://127.0.0.1:{port}/", verify=False)
        assert response.status_code == 200 and "<title>Arena AI (simulated)</title>" in response.text
        assert "Secure" in response.headers["set-cookie"]
        context = ssl.create_default_context(cafile=str(cert))
        context.check_hostname = False  # the certificate names arena.ai, reached here as 127.0.0.1 ...
        assert httpx.get(f"https://127.0.0.1:{port}/api/me", verify=context).status_code == 401  # ... and it verifies
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()



async def test_the_control_api_describes_itself_for_a_person():
    from arenahub.tools.arena_sim import create_app

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app()), base_url="https://arena.ai") as sim:
        for path in ("/__sim/", "/__sim"):
            text = (await sim.get(path)).text
            assert "Control API" in text and "POST /__sim/script" in text and "fail_next" in text
