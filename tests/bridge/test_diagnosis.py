"""check_tab: what a connected tab found in its page, item by item, each with what to do."""

import pytest

from arenahub.bridge.diagnosis import TabView, check_tab, fatal, on_site
from arenahub.protocol import frames, tab
from arenahub.protocol.tab import PageFacts

GOOD = PageFacts(origin="https://arena.ai", page="arena", title="Arena | Chat", auth_cookies=["arena-auth-prod-v1.0"],
                 sitekey_found=True, sitekey_hint="6Lc9x", grecaptcha=True, upload_actions=True)


def view(protocol=tab.TAB_PROTOCOL_VERSION, models=42, **facts):
    fields = {f: getattr(GOOD, f) for f in GOOD.__struct_fields__} | facts
    return TabView(protocol=protocol, script_version="0.2.0", facts=PageFacts(**fields), models_in_page=models)


def by_name(checks):
    return {c.name: c for c in checks}


def test_a_tab_that_works():
    checks = check_tab(view(), needs_sign_in=True)
    assert [c.name for c in checks] == ["tab", "userscript", "page", "signed_in", "recaptcha", "models", "uploads"]
    assert all(c.ok for c in checks) and fatal(checks) is None
    named = by_name(checks)
    assert "https://arena.ai" in named["tab"].detail
    assert "arena-auth-prod-v1.0" in named["signed_in"].detail
    assert "6Lc9x" in named["recaptcha"].detail
    assert "42 models" in named["models"].detail


def test_no_tab():
    (check,) = check_tab(None, needs_sign_in=False)
    assert (check.name, check.ok, check.fatal, check.state) == ("tab", False, True, "no_tab")
    assert "open https://arena.ai" in check.advice and "userscript" in check.advice


@pytest.mark.parametrize("protocol", [1, 3])
def test_another_protocol_stops_the_checks(protocol):
    checks = check_tab(view(protocol=protocol), needs_sign_in=True)
    assert [c.name for c in checks] == ["tab", "userscript"]
    blocking = fatal(checks)
    assert blocking.name == "userscript" and blocking.state == "userscript_outdated"
    assert f"protocol {protocol}" in blocking.detail and "arenahub userscript" in blocking.advice


@pytest.mark.parametrize("page, state, detail, advice", [
    ("block", "blocked", "block page", "another network"),
    ("challenge", "cloudflare_challenge", "Just a moment", "wait a few seconds"),
    ("other", "site_changed", "not on an arena.ai chat page (https://arena.ai)", "open https://arena.ai in that tab"),
])
def test_pages_the_bridge_cannot_use(page, state, detail, advice):
    checks = check_tab(view(page=page), needs_sign_in=False)
    assert [c.name for c in checks] == ["tab", "userscript", "page"]
    blocking = fatal(checks)
    assert (blocking.name, blocking.ok, blocking.state) == ("page", False, state)
    assert detail in blocking.detail and advice in blocking.advice


def test_an_other_page_with_no_origin():
    assert "an unknown page" in fatal(check_tab(view(page="other", origin=""), needs_sign_in=False)).detail


@pytest.mark.parametrize("needs_sign_in, ok, is_fatal, advice", [
    (True, False, True, "sign in at arena.ai in that tab"),
    (False, None, False, "(battle modes work without an account)"),
])
def test_signed_out(needs_sign_in, ok, is_fatal, advice):
    checks = check_tab(view(auth_cookies=[]), needs_sign_in=needs_sign_in)
    signed = by_name(checks)["signed_in"]
    assert (signed.ok, signed.fatal, signed.state) == (ok, is_fatal, "signed_out")
    assert advice in signed.advice
    assert (fatal(checks) is signed) is is_fatal
    assert len(checks) == 7  # the other checks still run


@pytest.mark.parametrize("sitekey, grecaptcha, missing", [
    (False, True, "the site key not found"),
    (True, False, "grecaptcha.enterprise not found"),
    (False, False, "the site key and grecaptcha.enterprise not found"),
])
def test_recaptcha_missing(sitekey, grecaptcha, missing):
    checks = check_tab(view(sitekey_found=sitekey, grecaptcha=grecaptcha), needs_sign_in=False)
    blocking = fatal(checks)
    assert (blocking.name, blocking.state) == ("recaptcha", "site_changed")
    assert missing in blocking.detail and "update arenahub" in blocking.advice


@pytest.mark.parametrize("models, ok, words", [(None, None, "not read yet"), (0, False, "no initialModels"),
                                               (1, True, "1 models")])
def test_models_count(models, ok, words):
    checks = check_tab(view(models=models), needs_sign_in=True)
    check = by_name(checks)["models"]
    assert check.ok is ok and words in check.detail and not check.fatal
    assert fatal(checks) is None


@pytest.mark.parametrize("found, problem, uses_images, ok, words", [
    (None, "", True, None, "not looked for yet"),
    (True, "", True, True, "generateUploadUrl"),
    (False, "no chunk names generateUploadUrl", True, False, "(no chunk names generateUploadUrl)"),
    (False, "", False, None, "(no reason given)"),
])
def test_uploads(found, problem, uses_images, ok, words):
    checks = check_tab(view(upload_actions=found, upload_problem=problem), needs_sign_in=True, uses_images=uses_images)
    check = by_name(checks)["uploads"]
    assert check.ok is ok and words in check.detail and not check.fatal
    if ok is False:
        assert "requests with images fail" in check.advice


def test_fatal_is_the_first_failing_fatal_check():
    checks = check_tab(view(auth_cookies=[], grecaptcha=False), needs_sign_in=True)
    assert fatal(checks).name == "signed_in"
    assert fatal([c for c in checks if c.name != "signed_in"]).name == "recaptcha"


def test_checks_as_frames_are_bounded():
    (check,) = check_tab(None, needs_sign_in=True)
    frame = check.to_frame()
    assert isinstance(frame, frames.SessionCheck)
    assert (frame.name, frame.ok, frame.detail) == ("tab", False, check.detail)
    long = check_tab(view(page="other", origin="https://x.example/" + "p" * 400), needs_sign_in=True)[-1]
    assert len(long.to_frame().detail) == 300


@pytest.mark.parametrize("origin, ok", [
    ("https://arena.ai", True), ("https://arena.ai/c/123?x=1", True), ("https://www.arena.ai", True),
    ("https://lmarena.ai", True), ("https://beta.lmarena.ai", True), ("http://ARENA.AI:443", True),
    ("https://evilarena.ai", False), ("https://arena.ai.example.com", False), ("http://127.0.0.1:5000", False),
    ("", False), ("not a url", False),
])
def test_on_site(origin, ok):
    assert on_site(origin) is ok
