"""SessionState: failures and tab checks -> the state, the flags routing reads, and what a person should do."""

import json
import time
from types import SimpleNamespace

import pytest

from arenahub.bridge import status as status_module
from arenahub.bridge.diagnosis import TabView, check_tab
from arenahub.bridge.lmarena import classify_failure, unexpected_answer
from arenahub.bridge.lmarena import failures as f
from arenahub.bridge.status import ACTIONS, SessionState
from arenahub.protocol import tab
from arenahub.protocol.errors import UpstreamError
from arenahub.protocol.frames import SESSION_STATES

GOOD = tab.PageFacts(origin="https://arena.ai", page="arena", title="Arena", auth_cookies=["arena-auth-prod-v1.0"],
                     sitekey_found=True, sitekey_hint="6Lc", grecaptcha=True, upload_actions=True)


def checks(needs_sign_in=True, protocol=tab.TAB_PROTOCOL_VERSION, models=3, **facts):
    fields = {name: getattr(GOOD, name) for name in GOOD.__struct_fields__} | facts
    view = TabView(protocol=protocol, script_version="0.2.0", facts=tab.PageFacts(**fields), models_in_page=models)
    return check_tab(view, needs_sign_in=needs_sign_in)


def zod(*path):
    return json.dumps({"issues": [{"path": list(path), "message": "bad"}]})


# One error for each condition, as the bridge meets them.
ERRORS = {
    "verification_required": classify_failure(403, "recaptcha validation failed"),
    "cloudflare_challenge": classify_failure(403, "<title>Just a moment...</title>"),
    "blocked": classify_failure(403, "<title>Attention Required! | Cloudflare</title>"),
    "signed_out": classify_failure(401, "User not found"),
    "clock_skew": classify_failure(400, "seems spoofed, offset too big"),
    "session_invalid": classify_failure(401, "does not have access to evaluation session", legacy=True),
    "site_changed": classify_failure(404, ""),
}


@pytest.mark.parametrize("condition", list(ERRORS))
def test_each_failure_sets_its_condition(condition):
    state = SessionState()
    state.failed(ERRORS[condition])
    assert state.state(1) == condition
    assert state.last_error == ERRORS[condition].message and state.last_error_at is not None
    assert state.action(condition) == ACTIONS[condition]


@pytest.mark.parametrize("error", [
    classify_failure(400, "Message already has feedback", legacy=True),
    unexpected_answer("text/html", "<html><title>x</title></html>"),
    f.RecaptchaUnavailable("no token"),
    classify_failure(400, zod("userMessage", "metadata")),
])
def test_more_failures_that_set_a_condition(error):
    state = SessionState()
    state.failed(error)
    assert state.state(1) in ("session_invalid", "site_changed")


@pytest.mark.parametrize("error", [
    classify_failure(400, zod("userMessage", "content")),
    classify_failure(400, zod("userMessage", "experimental_attachments", 0)),
    classify_failure(422, "moderation"),
    classify_failure(413, "too large"),
    classify_failure(500, "oops"),
    f.stream_timeout(5),
    UpstreamError("tab error"),
])
def test_failures_of_one_request_leave_the_session_alone(error):
    state = SessionState()
    state.failed(error)
    assert state.conditions == {} and state.state(1) == "unknown"
    assert state.last_error == error.message


def test_rate_limited_for_its_time(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(status_module, "time", SimpleNamespace(time=lambda: now[0]))
    state = SessionState()
    state.failed(classify_failure(429, "", retry_after="30"))
    assert state.state(1) == "rate_limited" and state.to_status(1).rate_limited_until == 1030.0
    now[0] = 1029.0
    assert state.rate_limited()
    now[0] = 1030.5
    assert not state.rate_limited() and state.state(1) == "unknown"
    assert state.to_status(1).rate_limited_until is None


def test_rate_limited_without_a_time_waits_a_minute():
    state = SessionState()
    state.failed(classify_failure(429, ""))
    assert 59 < state.rate_limited_until - time.time() <= 60


def test_a_success_ends_every_condition():
    state = SessionState()
    for error in ERRORS.values():
        state.failed(error)
    state.failed(classify_failure(429, ""))
    state.succeeded()
    assert state.conditions == {} and state.rate_limited_until is None
    assert state.state(1) == "ready" and state.last_ok_at is not None


def test_verification_is_not_ended_by_a_tab_that_reconnects():
    state = SessionState()
    state.failed(ERRORS["verification_required"])
    state.tab_reported(checks())
    assert state.state(1) == "verification_required"


@pytest.mark.parametrize("condition", ["cloudflare_challenge", "blocked"])
def test_a_tab_on_a_normal_page_ends_cloudflare_conditions(condition):
    state = SessionState()
    state.failed(ERRORS[condition])
    state.tab_reported(checks(page="challenge"))
    assert condition in state.conditions
    state.tab_reported(checks())
    assert state.conditions == {} and state.state(1) == "ready"


def test_a_tab_with_the_auth_cookie_ends_signed_out():
    state = SessionState()
    state.failed(ERRORS["signed_out"])
    state.tab_reported(checks(auth_cookies=[]))
    assert state.state(1) == "signed_out"
    state.tab_reported(checks())
    assert state.state(1) == "ready"


def test_new_ids_end_session_invalid():
    state = SessionState()
    state.failed(ERRORS["session_invalid"])
    state.failed(ERRORS["clock_skew"])
    state.ids_changed()
    assert list(state.conditions) == ["clock_skew"] and state.last_error is None


@pytest.mark.parametrize("tab_checks, state_name", [
    (checks(protocol=1), "userscript_outdated"),
    (checks(page="block"), "blocked"),
    (checks(page="challenge"), "cloudflare_challenge"),
    (checks(page="other"), "site_changed"),
    (checks(auth_cookies=[]), "signed_out"),
    (checks(auth_cookies=[], needs_sign_in=False), "ready"),
    (checks(grecaptcha=False), "site_changed"),
    (checks(models=0, upload_actions=False), "ready"),
    (check_tab(None, needs_sign_in=True), "no_tab"),
])
def test_state_from_the_tab(tab_checks, state_name):
    state = SessionState()
    state.tab_reported(tab_checks)
    assert state.state(1) == state_name


def test_priorities():
    state = SessionState()
    assert state.state(0) == "no_tab" and state.state(1) == "unknown"
    state.failed(classify_failure(429, ""))
    assert state.state(1) == "rate_limited"
    state.failed(ERRORS["session_invalid"])
    assert state.state(1) == "session_invalid"  # a condition before a rate limit
    for condition in ["site_changed", "clock_skew", "signed_out", "verification_required", "cloudflare_challenge",
                      "blocked"]:
        state.failed(ERRORS[condition])
        assert state.state(1) == condition  # each before the ones set earlier
    state.tab_reported(checks(protocol=1))
    assert state.state(1) == "userscript_outdated"  # what the tab shows now comes first
    # With no tab at all: a tab reloading for Cloudflare's interstitial is away only a moment.
    assert state.state(0) == "cloudflare_challenge"
    state.tab_reported(checks())
    assert state.state(0) == "no_tab"


def test_a_condition_comes_before_a_failing_check_that_is_not_about_the_page():
    state = SessionState()
    state.tab_reported(checks(auth_cookies=[]))
    state.failed(ERRORS["verification_required"])
    assert state.state(1) == "verification_required"


def test_action_for_a_failing_check_is_its_own_advice():
    state = SessionState()
    state.tab_reported(checks(page="other"))
    assert state.action(state.state(1)) == "Open https://arena.ai in that tab."
    state.tab_reported(checks(grecaptcha=False))
    assert state.action("site_changed").startswith("Reload the tab; if it stays, arena.ai has changed")


def test_action_for_a_site_change_seen_in_a_request_is_the_general_one():
    state = SessionState()
    state.tab_reported(checks(auth_cookies=[]))  # failing, fatal, but not what the state says
    state.failed(ERRORS["site_changed"])
    assert state.state(1) == "site_changed" and state.action("site_changed") == ACTIONS["site_changed"]


def test_every_state_has_a_known_name_and_an_action():
    assert set(ACTIONS) <= set(SESSION_STATES)
    assert set(SESSION_STATES) - set(ACTIONS) == {"ready", "unknown", "bridge_unreachable"}
    assert SessionState().action("ready") is None


@pytest.mark.parametrize("condition, valid, verify", [
    ("verification_required", None, True), ("cloudflare_challenge", None, True), ("blocked", None, True),
    ("signed_out", False, False), ("clock_skew", False, False), ("site_changed", False, False),
    ("session_invalid", False, False),
])
def test_flags_routing_reads(condition, valid, verify):
    state = SessionState()
    state.failed(ERRORS[condition])
    status = state.to_status(2)
    assert (status.state, status.session_valid, status.needs_verification) == (condition, valid, verify)
    assert status.action == ACTIONS[condition] and status.last_error == ERRORS[condition].message
    assert status.bridge_reachable and status.browser_connected


def test_flags_of_a_working_session():
    state = SessionState()
    status = state.to_status(0)
    assert (status.state, status.browser_connected, status.session_valid, status.needs_verification) == \
        ("no_tab", False, None, False)
    state.tab_reported(checks())
    state.succeeded()
    status = state.to_status(1)
    assert (status.state, status.session_valid, status.needs_verification, status.action) == \
        ("ready", True, False, None)
    assert [c.name for c in status.checks] == ["tab", "userscript", "page", "signed_in", "recaptcha", "models",
                                               "uploads"]
    state.tab_reported(checks(protocol=1))
    assert state.to_status(1).session_valid is False
