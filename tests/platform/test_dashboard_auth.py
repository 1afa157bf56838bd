"""Dashboard sign-in and access, in process: the sign-in page and its CSRF cookie, sessions (cookie
attributes, lifetime, sign-out, ending them all), the failed sign-in throttle, the admin API gate
(Bearer or cookie + CSRF + Origin), the password (API and CLI) and the security headers."""

import asyncio
import datetime as dt
import io
import json
import logging
import re

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from arenahub.cli import main
from arenahub.platform.accounting.credentials import hash_secret
from arenahub.platform.admin.token import SETTING as ADMIN_TOKEN_SETTING
from arenahub.platform.app import create_app
from arenahub.platform.dashboard.password import hash_password, verify_password
from arenahub.platform.dashboard.sessions import IDLE, hash_session_id
from arenahub.platform.settings import PlatformSettings
from arenahub.platform.storage.db import create_engine, migrate
from arenahub.platform.storage.schema import admin_sessions
from arenahub.platform.storage.settings_store import put_setting
from arenahub.platform.throttle import SignInThrottle, ThrottleRule
from tests.conftest import initialised
from tests.platform.support import call, eventually, platform_of

TOKEN = "adm-dashboard-test-token"
PASSWORD = "correct horse battery"
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


def browser(url, base_url="http://testserver", client=("203.0.113.7", 50000)):
    return TestClient(create_app(PlatformSettings(database_url=url, admin_token=TOKEN)), base_url=base_url,
                      client=client, follow_redirects=False)


@pytest.fixture
def sqlite_url(databases):
    return databases.new("sqlite")


@pytest.fixture
def web(sqlite_url):
    with browser(sqlite_url) as http:
        yield http


def login_csrf(http):
    page = http.get("/dashboard/login")
    assert page.status_code == 200
    return re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)


def sign_in(http, secret=TOKEN):
    r = http.post("/dashboard/login", data={"secret": secret, "csrf_token": login_csrf(http)})
    assert r.status_code == 303 and r.headers["location"] == "/dashboard", r.text
    return r


def shell_csrf(http):
    r = http.get("/dashboard")
    assert r.status_code == 200, r.text
    return re.search(r'<meta name="csrf-token" content="([^"]+)">', r.text).group(1)


def set_cookie_header(response, name):
    return next(h for h in response.headers.get_list("set-cookie") if h.startswith(name + "="))


# --- pages, the sign-in form and cookies ------------------------------------------------------------

def test_old_link_redirects_and_signed_out_visitors_get_the_sign_in_page(web):
    r = web.get("/dashboard.html")
    assert r.status_code == 308 and r.headers["location"] == "/dashboard"
    for path in ("/dashboard", "/dashboard/"):
        r = web.get(path)
        assert r.status_code == 303 and r.headers["location"] == "/dashboard/login"
    page = web.get("/dashboard/login")
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    assert "<title>arenahub \u2014 Sign in</title>" in page.text
    assert re.search(r'<label[^>]*for="secret"[^>]*>\s*<span[^>]*>Admin token or password</span>', page.text)
    assert 'type="password"' in page.text and ">Sign in</button>" in page.text
    assert 'href="/dashboard/static/style.css"' in page.text
    assert "<script" not in page.text and "<style" not in page.text and "style=" not in page.text
    assert not re.search(r"\son[a-z]+=", page.text)
    cookie = set_cookie_header(page, "arenahub_login_csrf")
    assert "HttpOnly" in cookie and "samesite=strict" in cookie.lower() and "Secure" not in cookie


def test_security_headers_on_every_dashboard_answer_only(web):
    sign_in(web)
    for path in ("/dashboard.html", "/dashboard", "/dashboard/login", "/dashboard/static/app.js",
                 "/dashboard/static/missing.js"):
        r = web.get(path)
        assert r.headers["content-security-policy"] == CSP, path
        assert (r.headers["x-content-type-options"], r.headers["referrer-policy"], r.headers["x-frame-options"]) == (
            "nosniff", "same-origin", "DENY"), path
    assert web.get("/dashboard/static/app.js").status_code == 200
    assert web.get("/dashboard/static/missing.js").status_code == 404
    assert "content-security-policy" not in web.get("/api/admin/keys").headers


def test_token_sign_in_sets_a_strict_http_only_cookie_and_the_shell_carries_the_csrf_token(web):
    r = sign_in(web)
    cookie = set_cookie_header(r, "arenahub_session")
    assert "HttpOnly" in cookie and "samesite=strict" in cookie.lower() and "Path=/;" in cookie + ";"
    assert "Secure" not in cookie  # plain HTTP here
    session_id = web.cookies["arenahub_session"]
    assert len(session_id) >= 43
    shell = web.get("/dashboard")
    assert shell.headers["cache-control"] == "no-store" and "__CSRF_TOKEN__" not in shell.text
    token = shell_csrf(web)
    row = call(web, _session_row, platform_of(web).engine, session_id)
    assert row.csrf_token == token and row.method == "token"
    assert row.expires_at.replace(tzinfo=None) - row.created_at.replace(tzinfo=None) == dt.timedelta(days=7)
    assert web.get("/dashboard/login").headers["location"] == "/dashboard"  # already signed in


def test_cookies_are_secure_over_https(sqlite_url):
    with browser(sqlite_url, base_url="https://dash.example.test") as http:
        page = http.get("/dashboard/login")
        assert "Secure" in set_cookie_header(page, "arenahub_login_csrf")
        r = sign_in(http)
        assert "Secure" in set_cookie_header(r, "arenahub_session")
        token = shell_csrf(http)
        r = http.post("/api/admin/keys", json={"name": "k"}, headers={
            "X-CSRF-Token": token, "Origin": "https://dash.example.test"})
        assert r.status_code == 201, r.text
        r = http.get("/api/admin/keys", headers={"Origin": "http://dash.example.test"})  # same host, other scheme
        assert r.status_code == 403 and r.json()["error"]["code"] == "csrf_failed"


def test_login_csrf_is_required(web):
    web.get("/dashboard/login")
    r = web.post("/dashboard/login", data={"secret": TOKEN})
    assert r.status_code == 403 and "expired" in r.text
    r = web.post("/dashboard/login", data={"secret": TOKEN, "csrf_token": "x" * 43})
    assert r.status_code == 403
    token = login_csrf(web)
    web.cookies.delete("arenahub_login_csrf")
    r = web.post("/dashboard/login", data={"secret": TOKEN, "csrf_token": token})
    assert r.status_code == 403 and "arenahub_session" not in web.cookies


def test_bad_sign_in_bodies_get_a_clear_4xx_page(web):
    token = login_csrf(web)
    form = {"content-type": "application/x-www-form-urlencoded"}
    cases = [
        (web.post("/dashboard/login", content=b"secret=" + b"a" * 20_000 + b"&csrf_token=" + token.encode(),
                  headers=form), 413, "too large"),
        (web.post("/dashboard/login", json={"secret": TOKEN, "csrf_token": token}), 415, "form must be sent"),
        (web.post("/dashboard/login", content=b"secret=\xff\xfe&csrf_token=" + token.encode(), headers=form), 400,
         "could not be read"),
        (web.post("/dashboard/login", content="&".join(f"f{i}=1" for i in range(50)), headers=form), 400,
         "could not be read"),
        (web.post("/dashboard/login", data={"csrf_token": token}), 400, "Enter the admin token"),
        (web.post("/dashboard/login", data={"secret": "", "csrf_token": token}), 400, "Enter the admin token"),
    ]
    for r, status, text in cases:
        assert r.status_code == status and text in r.text and 'name="secret"' in r.text, (status, r.text[:200])
        assert r.headers["content-security-policy"] == CSP
    r = web.post("/dashboard/logout", content=b"x" * 20_000, headers=form)  # not signed in: back to sign-in
    assert r.status_code == 303 and r.headers["location"] == "/dashboard/login"


# --- the failed sign-in throttle ---------------------------------------------------------------------

def test_failed_sign_ins_are_throttled_per_address(sqlite_url):
    with browser(sqlite_url) as http:
        token = login_csrf(http)
        for _ in range(5):
            r = http.post("/dashboard/login", data={"secret": "nope", "csrf_token": token})
            assert r.status_code == 401 and "Wrong admin token or password." in r.text
        for secret in ("nope", TOKEN):  # blocked now, even with the right secret
            r = http.post("/dashboard/login", data={"secret": secret, "csrf_token": token})
            assert r.status_code == 429 and "Too many failed sign-ins" in r.text
            assert 14 * 60 < int(r.headers["retry-after"]) <= 15 * 60
        assert "arenahub_session" not in http.cookies
        throttle = platform_of(http).dashboard.throttle
        call(http, throttle.failed, "198.51.100.9")  # unrelated: other addresses may try
        assert call(http, throttle.retry_after, "198.51.100.9") == 0
        assert 14 * 60 < call(http, throttle.retry_after, "203.0.113.7") <= 15 * 60


def test_throttle_arithmetic_per_address_and_overall():
    t = SignInThrottle(ThrottleRule(per_address=2, address_window=60, overall=3, overall_window=10))
    t.failed("a", 0)
    assert t.retry_after("a", 1) == 0
    t.failed("a", 1)
    assert t.retry_after("a", 2) == 58 and t.retry_after("b", 2) == 0
    assert t.retry_after("a", 59.5) == 1 and t.retry_after("a", 60) == 0  # sliding: the first failure left
    t.failed("b", 62)
    t.failed("c", 63)
    t.failed("d", 64)
    assert t.retry_after("e", 65) == 7  # three failures from three addresses in 10 s: everybody waits
    assert t.retry_after("e", 72) == 0
    # Memory stays bounded under spraying.
    for i in range(1000):
        t.failed(f"x{i}", 1000 + i * 0.001)
    assert len(t._all) <= 1000 and max(len(v) for v in t._by_address.values()) <= 2


# --- the admin API gate -------------------------------------------------------------------------------

def test_admin_api_with_the_session_cookie_needs_csrf_for_unsafe_methods(database_url):
    with browser(database_url) as http:
        sign_in(http)
        token = shell_csrf(http)
        assert http.get("/api/admin/keys").status_code == 200
        for headers in ({}, {"X-CSRF-Token": "wrong"}, {"X-CSRF-Token": ""}):
            r = http.post("/api/admin/keys", json={"name": "k"}, headers=headers)
            assert r.status_code == 403 and r.json()["error"]["code"] == "csrf_failed"
            assert token not in r.text
        r = http.post("/api/admin/keys", json={"name": "k"}, headers={"X-CSRF-Token": token})
        assert r.status_code == 201
        key_id = r.json()["id"]
        r = http.patch(f"/api/admin/keys/{key_id}", json={"rpm": 5})
        assert r.status_code == 403 and r.json()["error"]["code"] == "csrf_failed"
        assert http.patch(f"/api/admin/keys/{key_id}", json={"rpm": 5}, headers={"X-CSRF-Token": token}).json()[
            "rpm"] == 5
        # A plain HTML form POST carries the token as a field.
        assert http.post(f"/api/admin/keys/{key_id}/rotate", data={"csrf_token": "wrong"}).status_code == 403
        r = http.post(f"/api/admin/keys/{key_id}/rotate", data={"csrf_token": token})
        assert r.status_code == 200 and r.json()["key"].startswith("sk-")
        # Another site's page: refused even for reads, even with the token.
        for method in ("GET", "POST"):
            r = http.request(method, "/api/admin/keys", json={"name": "x"},
                             headers={"Origin": "https://evil.example", "X-CSRF-Token": token})
            assert r.status_code == 403 and r.json()["error"]["code"] == "csrf_failed", method
        assert http.get("/api/admin/keys", headers={"Origin": "http://testserver"}).status_code == 200
        # The Bearer token works as before (no CSRF needed), and a wrong one is not rescued by the cookie.
        r = http.post("/api/admin/keys", json={"name": "b"}, headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 201
        r = http.get("/api/admin/keys", headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_admin_token"
        # Signing out ends the session at once.
        assert http.post("/dashboard/logout", data={"csrf_token": "wrong"}).status_code == 403
        session_id = http.cookies["arenahub_session"]
        r = http.post("/dashboard/logout", data={"csrf_token": token})
        assert r.status_code == 303 and r.headers["location"] == "/dashboard/login?signed_out=1"
        assert "You are signed out." in http.get(r.headers["location"]).text
        http.cookies.set("arenahub_session", session_id)  # a copy of the cookie kept elsewhere
        r = http.get("/api/admin/keys")
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_admin_token"
        assert http.get("/dashboard").headers["location"] == "/dashboard/login"
        assert call(http, _session_row, platform_of(http).engine, session_id) is None


def test_no_cookie_and_no_token_is_401(web):
    r = web.get("/api/admin/keys")
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_admin_token"
    web.cookies.set("arenahub_session", "made-up")
    assert web.get("/api/admin/keys").status_code == 401


def test_expired_sessions_are_refused_and_removed(database_url):
    with browser(database_url) as http:
        sign_in(http)
        session_id = http.cookies["arenahub_session"]
        platform = platform_of(http)
        now = dt.datetime.now(dt.UTC)
        call(http, _set_session, platform.engine, session_id, last_seen_at=now - IDLE - dt.timedelta(minutes=1))
        platform.dashboard.sessions.forget_cached()
        assert http.get("/api/admin/keys").status_code == 401  # idle too long
        assert call(http, _session_row, platform.engine, session_id) is None
        sign_in(http)
        session_id = http.cookies["arenahub_session"]
        call(http, _set_session, platform.engine, session_id, expires_at=now - dt.timedelta(seconds=1))
        platform.dashboard.sessions.forget_cached()
        r = http.get("/dashboard")
        assert r.headers["location"] == "/dashboard/login"  # past the absolute limit
        assert "Max-Age=0" in set_cookie_header(r, "arenahub_session")  # and the browser forgets the cookie
        # Clean-up removes every expired row.
        sign_in(http)
        call(http, _set_session, platform.engine, http.cookies["arenahub_session"],
             expires_at=now - dt.timedelta(seconds=1))
        assert call(http, platform.dashboard.sessions.remove_expired) == 1


# --- the password and ending all sessions ---------------------------------------------------------------

def test_password_sign_in_and_changing_it_ends_every_session(web):
    assert web.put("/api/admin/dashboard-password", json={"new_password": "short"},
                   headers={"Authorization": f"Bearer {TOKEN}"}).json()["error"]["param"] == "new_password"
    r = web.put("/api/admin/dashboard-password", json={"new_password": PASSWORD},
                headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 204
    sign_in(web, PASSWORD)
    assert call(web, _session_row, platform_of(web).engine, web.cookies["arenahub_session"]).method == "password"
    token = shell_csrf(web)
    csrf = {"X-CSRF-Token": token}
    r = web.put("/api/admin/dashboard-password", json={"new_password": "another long password"}, headers=csrf)
    assert r.status_code == 400 and r.json()["error"]["code"] == "current_password_required"
    r = web.put("/api/admin/dashboard-password", json={"current_password": "wrong password!",
                                                        "new_password": "another long password"}, headers=csrf)
    assert r.status_code == 403 and r.json()["error"]["code"] == "wrong_password"
    r = web.put("/api/admin/dashboard-password", json={"current_password": PASSWORD,
                                                        "new_password": "another long password"}, headers=csrf)
    assert r.status_code == 204
    assert web.get("/api/admin/keys").status_code == 401  # this session too: at once
    r = web.post("/dashboard/login", data={"secret": PASSWORD, "csrf_token": login_csrf(web)})
    assert r.status_code == 401  # the old password is gone
    sign_in(web, "another long password")


def test_reset_admin_token_ends_sessions_and_the_old_token(sqlite_url, capsys):
    asyncio.run(_store_admin_token(sqlite_url, TOKEN))  # kept in the database, not ARENAHUB_ADMIN_TOKEN
    with TestClient(create_app(PlatformSettings(database_url=sqlite_url)), follow_redirects=False) as http:
        platform = platform_of(http)
        platform.dashboard.sessions.cache_seconds = 0.05  # as another process would see it, but quicker
        sign_in(http)
        assert http.get("/api/admin/keys").status_code == 200
        assert main(["admin", "reset-admin-token", "--database-url", sqlite_url, "--json"]) == 0
        new_token = json.loads(capsys.readouterr().out)["admin_token"]
        eventually(lambda: http.get("/api/admin/keys").status_code == 401, timeout=10.0, what="the session to end")
        platform.admin._fresh_until = 0  # skip the few seconds a running platform may keep the old token
        r = http.post("/dashboard/login", data={"secret": TOKEN, "csrf_token": login_csrf(http)})
        assert r.status_code == 401
        sign_in(http, new_token)


def test_set_dashboard_password_command(sqlite_url, capsys, monkeypatch):
    initialised(sqlite_url)
    def run(*argv, stdin=""):
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        code = main(["admin", "set-dashboard-password", *argv, "--database-url", sqlite_url, "--json"])
        out, err = capsys.readouterr()
        return code, out, err

    code, _, err = run("--password-stdin", stdin="too short\n")
    assert code == 2 and "at least 12 characters" in err
    code, _, err = run(stdin=PASSWORD + "\n")  # no terminal to ask on
    assert code == 2 and "--password-stdin" in err
    code, out, _ = run("--password-stdin", stdin=PASSWORD + "\n")
    assert code == 0 and json.loads(out) == {"password_set": True} and PASSWORD not in out
    with browser(sqlite_url) as http:
        sign_in(http, PASSWORD)
        http.app.state.platform.dashboard.sessions.cache_seconds = 0.05
        code, out, _ = run("--clear")
        assert code == 0 and json.loads(out) == {"password_set": False}
        eventually(lambda: http.get("/api/admin/keys").status_code == 401, timeout=10.0, what="the session to end")
        r = http.post("/dashboard/login", data={"secret": PASSWORD, "csrf_token": login_csrf(http)})
        assert r.status_code == 401


def test_password_hash_is_salted_scrypt():
    stored = hash_password(PASSWORD)
    assert stored.startswith("scrypt$32768$8$1$") and PASSWORD not in stored
    assert stored != hash_password(PASSWORD)  # salted
    assert verify_password(PASSWORD, stored) and not verify_password(PASSWORD + "x", stored)
    assert not verify_password(PASSWORD, "scrypt$bad") and not verify_password(PASSWORD, "md5$1$2$3$4$5")


# --- secrets stay out of logs and answers ------------------------------------------------------------------

def test_no_secret_in_logs_or_error_bodies(web, caplog):
    caplog.set_level(logging.INFO)  # (the database driver's DEBUG lines echo SQL parameters: not ours)
    caplog.set_level(logging.DEBUG, logger="arenahub")
    bodies = []
    r = web.put("/api/admin/dashboard-password", json={"new_password": PASSWORD},
                headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 204
    for secret in ("wrong-secret-1", PASSWORD + "x"):
        bodies.append(web.post("/dashboard/login", data={"secret": secret, "csrf_token": login_csrf(web)}).text)
    sign_in(web, PASSWORD)
    session_id = web.cookies["arenahub_session"]
    token = shell_csrf(web)
    bodies.append(web.post("/api/admin/keys", json={"name": "k"}, headers={"X-CSRF-Token": "no"}).text)
    bodies.append(web.put("/api/admin/dashboard-password", headers={"X-CSRF-Token": token}, json={
        "current_password": "wrong-secret-2", "new_password": "abc"}).text)
    bodies.append(web.put("/api/admin/dashboard-password", headers={"X-CSRF-Token": token}, json={
        "current_password": PASSWORD, "new_password": "tiny"}).text)
    bodies.append(web.post("/dashboard/logout", data={"csrf_token": "no"}).text)
    web.post("/dashboard/logout", data={"csrf_token": token})
    bodies.append(web.get("/api/admin/keys").text)
    assert "signed in with the password" in caplog.text and "failed sign-in" in caplog.text
    for secret in (TOKEN, PASSWORD, session_id, token, hash_session_id(session_id), "wrong-secret-1",
                   "wrong-secret-2", "tiny"):
        assert secret not in caplog.text, secret
        assert not any(secret in body for body in bodies), secret


# --- helpers -----------------------------------------------------------------------------------------------

async def _session_row(engine, session_id):
    async with engine.connect() as conn:
        return (await conn.execute(sa.select(admin_sessions).where(
            admin_sessions.c.id_hash == hash_session_id(session_id)))).first()


async def _set_session(engine, session_id, **values):
    async with engine.begin() as conn:
        await conn.execute(admin_sessions.update().where(admin_sessions.c.id_hash == hash_session_id(session_id))
                           .values(**values))


async def _store_admin_token(url, token):
    engine = create_engine(url)
    try:
        await migrate(engine)
        await put_setting(engine, ADMIN_TOKEN_SETTING, hash_secret(token))
    finally:
        await engine.dispose()
