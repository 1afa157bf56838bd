"""classify_failure: every upstream failure becomes a named error that says how to fix it."""

import json

import pytest

from arenahub.bridge.lmarena import (
    AttachmentTooLarge,
    ContentRejected,
    InvalidSession,
    LMArenaError,
    NeedsVerification,
    UpstreamApiChanged,
    UpstreamRateLimited,
    UpstreamStreamTimeout,
    classify_failure,
    is_challenge,
    stream_timeout,
)
from arenahub.protocol.errors import (
    ApiError,
    RequestTooLarge,
    UpstreamError,
    UpstreamTimeout,
)
from arenahub.protocol.openai import error_body

SESSION_401 = '{"error":"User 6f0e does not have access to evaluation session cebc557a"}'
CF_PAGE = ('<!DOCTYPE html><html><head><title>Just a moment...</title></head><body>'
           'Enable JavaScript and cookies to continue</body></html>')


@pytest.mark.parametrize("status, body, kind, words", [
    (401, SESSION_401, InvalidSession, ["does not have access", "arenahub bridge capture-ids", "Retry"]),
    (401, "", InvalidSession, ["capture-ids", "no details"]),
    (403, SESSION_401, InvalidSession, ["capture-ids"]),
    (None, "User x does not have access to evaluation session y", InvalidSession, ["capture-ids"]),
    (None, "网络响应不正常。状态: 401. 内容: {}", InvalidSession, ["capture-ids"]),  # the old userscript's words
    (401, "<html><head><title>Unauthorized</title></head></html>", InvalidSession, ["an HTML page (Unauthorized)"]),
    (413, "", AttachmentTooLarge, ["5 MB", "resize"]),
    (None, "Payload Too Large", AttachmentTooLarge, ["5 MB"]),
    (400, '{"error":"File exceeds the maximum size"}', AttachmentTooLarge, ["maximum size"]),
    (None, "状态: 413", AttachmentTooLarge, ["5 MB"]),
    (422, '{"error":"Request rejected: Content violates our terms of use"}', ContentRejected,
     ["Content violates our terms of use", "Rephrase"]),
    (None, '{"error":{"message":"blocked","code":"moderation_blocked"}}', ContentRejected, ["blocked"]),
    (429, '{"error":"Too many requests"}', UpstreamRateLimited, ["Too many requests", "in a minute"]),
    (None, "You've reached a rate limit. Please try again in a moment.", UpstreamRateLimited, ["rate limit"]),
    (429, "does not have access to evaluation session", UpstreamRateLimited, []),  # the status decides first
    (503, CF_PAGE, NeedsVerification, ["Cloudflare", "reload"]),
    (200, "<p>enable javascript and cookies to continue</p>", NeedsVerification, ["Cloudflare"]),
    (403, '{"error":"recaptcha validation failed"}', NeedsVerification, ["reCAPTCHA", "reload"]),
    (404, "Not Found", UpstreamApiChanged, ["404", "changed its private API", "arenahub userscript"]),
    (405, "", UpstreamApiChanged, ["405"]),
    (500, "Internal Server Error", LMArenaError, ["answered 500", "Internal Server Error"]),
    (400, '{"error":"Invalid request body"}', LMArenaError, ["answered 400", "Invalid request body"]),
    (None, "TypeError: Failed to fetch", LMArenaError, ["could not reach", "network"]),
    (None, "NetworkError when attempting to fetch resource.", LMArenaError, ["could not reach"]),
    (None, "", LMArenaError, ["reported an error", "no details"]),
    (None, '{"message":"bad thing"}', LMArenaError, ["bad thing"]),
])
def test_classification(status, body, kind, words):
    error = classify_failure(status, body)
    assert type(error) is kind
    for word in words:
        assert word in error.message


@pytest.mark.parametrize("error, status, type_, code, base", [
    (classify_failure(401, SESSION_401), 503, "service_unavailable_error", "lmarena_session_invalid", ApiError),
    (classify_failure(422, ""), 400, "invalid_request_error", "content_policy_violation", ApiError),
    (classify_failure(413, ""), 413, "invalid_request_error", "attachment_too_large", RequestTooLarge),
    (classify_failure(429, ""), 429, "rate_limit_error", "upstream_rate_limited", ApiError),
    (classify_failure(503, CF_PAGE), 503, "service_unavailable_error", "needs_verification", ApiError),
    (classify_failure(404, ""), 502, "upstream_error", "upstream_api_changed", UpstreamError),
    (classify_failure(500, ""), 502, "upstream_error", "lmarena_error", UpstreamError),
    (stream_timeout(360), 504, "timeout_error", "upstream_stream_timeout", UpstreamTimeout),
])
def test_openai_envelopes(error, status, type_, code, base):
    assert isinstance(error, base)
    assert error.status == status
    body = json.loads(error_body(error))["error"]
    assert (body["type"], body["code"]) == (type_, code)
    assert body["message"] == error.message


@pytest.mark.parametrize("body, seconds, header", [
    ("try again in 20 seconds", 20, "20"),
    ("Retry after 2 minutes", 120, "120"),
    ("retry in 1.5s", 1.5, "2"),
    ("please retry after 500ms", 0.5, "1"),
    ("try again in 3 min", 180, "180"),
    ("Too many requests", None, None),
    ("try again in a moment", None, None),
    ("Please try again in a moment. Code 1234", None, None),
    ("retry-after: 7", None, None),
])
def test_rate_limit_retry_after(body, seconds, header):
    error = classify_failure(429, body)
    assert isinstance(error, UpstreamRateLimited)
    assert error.retry_after == seconds
    assert error.headers.get("Retry-After") == header
    assert (f"in {seconds:g} s" if seconds else "in a minute") in error.message


def test_long_bodies_are_cut():
    error = classify_failure(500, "x" * 5000)
    assert "x" * 300 + "..." in error.message
    assert len(error.message) < 400


def test_detail_is_one_line():
    assert "a b c" in classify_failure(500, "a\n  b\n\tc").message


def test_stream_timeout_names_the_setting():
    error = stream_timeout(12.5)
    assert isinstance(error, UpstreamStreamTimeout)
    assert "12.5 s" in error.message and "stream_response_timeout_seconds" in error.message


@pytest.mark.parametrize("text, expected", [
    (CF_PAGE, True), ("<TITLE>JUST A MOMENT...</TITLE>", True), ("window._cf_chl_opt = {}", True),
    ("just a moment", False), ('a0:"hello"', False), ("", False),
])
def test_is_challenge(text, expected):
    assert is_challenge(text) is expected
