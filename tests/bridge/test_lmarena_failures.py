"""classify_failure: every way arena.ai refuses a call, as a named error that says what to do."""

import json
import re

import pytest

from arenahub.bridge.lmarena import (
    AttachmentTooLarge,
    ClockSkew,
    CloudflareBlocked,
    ContentRejected,
    InvalidSession,
    LMArenaError,
    MessageHasFeedback,
    NeedsVerification,
    SignedOut,
    UnexpectedAnswer,
    UpstreamApiChanged,
    UpstreamRateLimited,
    UpstreamSchemaError,
    UpstreamStreamTimeout,
    VerificationRequired,
    classify_failure,
    is_block_page,
    is_challenge,
    stream_timeout,
    unexpected_answer,
)
from arenahub.bridge.lmarena import failures as f
from arenahub.bridge.lmarena.failures import (
    RequestFieldRefused,
    detail,
    is_consumer_field,
    schema_field,
)

SESSION = "0192f0a1-2b3c-7d4e-8f00-00000000a11c"
USER = "0192f0a1-2b3c-7d4e-8f00-0000000000b0"
UUID = re.compile(r"(?i)[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
CHALLENGE = "<!DOCTYPE html><html><head><title>Just a moment...</title></head><body>" + SESSION + "</body></html>"
BLOCK = ("<!DOCTYPE html><html><head><title>Attention Required! | Cloudflare</title></head><body>"
         "<div id='cf-error-details'>Sorry, you have been blocked</div>Ray ID " + SESSION + "</body></html>")


def zod(*path, message="Required"):
    return json.dumps({"issues": [{"code": "invalid_type", "path": list(path), "message": message}]})


# (status, body, legacy) -> (error class, HTTP status, code, words that name the fix)
CASES = [
    (401, f'{{"error": "User not found", "user": "{USER}"}}', False,
     SignedOut, 503, "arena_signed_out", "Sign in at arena.ai in that tab"),
    (401, f'{{"error": "User {USER} does not have access to evaluation session {SESSION}"}}', True,
     InvalidSession, 503, "lmarena_session_invalid", "capture-ids"),
    (401, f'{{"error": "User {USER} does not have access to evaluation session {SESSION}"}}', False,
     InvalidSession, 503, "lmarena_session_invalid", "the bridge starts a new conversation"),
    (None, f"Evaluation session has expired (user {USER})", True,
     InvalidSession, 503, "lmarena_session_invalid", "Capture them again"),
    (403, '{"error": "recaptcha validation failed"}', False,
     VerificationRequired, 503, "verification_required", "Security Verification"),
    (403, CHALLENGE, False, NeedsVerification, 503, "needs_verification", "complete it there"),
    (None, CHALLENGE, False, NeedsVerification, 503, "needs_verification", "clears it by itself"),
    (403, BLOCK, False, CloudflareBlocked, 503, "cloudflare_blocked", "use another network"),
    (200, BLOCK, True, CloudflareBlocked, 503, "cloudflare_blocked", "A person must act"),
    (400, f'{{"error": "Message {SESSION} already has feedback, cannot retry"}}', True,
     MessageHasFeedback, 503, "message_has_feedback", "Capture fresh ids"),
    (400, f'{{"error": "Evaluation session ID {SESSION} seems spoofed, offset too big"}}', False,
     ClockSkew, 503, "clock_skew", "automatic time"),
    (400, '{"error": "id must be a UUIDv7"}', False, ClockSkew, 503, "clock_skew", "set it right"),
    (413, "Request Entity Too Large", False, AttachmentTooLarge, 413, "attachment_too_large", "resize or compress"),
    (None, f"upload {SESSION} exceeds the maximum file size", False,
     AttachmentTooLarge, 413, "attachment_too_large", "resize"),
    (422, '{"error": "Unprocessable"}', False, ContentRejected, 400, "content_policy_violation", "Rephrase it"),
    (400, '{"error": "Your message violates our terms of use"}', False,
     ContentRejected, 400, "content_policy_violation", "Rephrase"),
    (429, '{"error": "Request rejected"}', False, UpstreamRateLimited, 429, "upstream_rate_limited", "Retry in"),
    (None, "Too Many Requests", False, UpstreamRateLimited, 429, "upstream_rate_limited", "more accounts"),
    (None, "upstream said 429", False, UpstreamRateLimited, 429, "upstream_rate_limited", "Retry"),
    (400, zod("modelAMessageId"), False, UpstreamSchemaError, 502, "upstream_schema_error", "`modelAMessageId`"),
    (400, zod("userMessage", "content", message="String must contain at most 100000 character(s)"), False,
     RequestFieldRefused, 400, "upstream_refused_request", "shorter text"),
    (404, "<!DOCTYPE html><html><head><title>404: Not Found</title></head></html>", False,
     UpstreamApiChanged, 502, "upstream_api_changed", "Update arenahub"),
    (405, "", True, UpstreamApiChanged, 502, "upstream_api_changed", "install the userscript again"),
    (None, "TypeError: Failed to fetch", False, LMArenaError, 502, "lmarena_error", "network connection"),
    (500, f'{{"error": "internal {SESSION}"}}', False, LMArenaError, 502, "lmarena_error", "answered 500"),
    (403, '{"error": "forbidden"}', False, LMArenaError, 502, "lmarena_error", "answered 403"),
]


@pytest.mark.parametrize("status, body, legacy, kind, http, code, fix", CASES)
def test_named_failures(status, body, legacy, kind, http, code, fix):
    error = classify_failure(status, body, legacy=legacy)
    assert type(error) is kind
    assert (error.status, error.code) == (http, code)
    assert fix in error.message


@pytest.mark.parametrize("status, body, legacy", [case[:3] for case in CASES])
def test_messages_never_carry_an_id(status, body, legacy):
    # Session and user ids are secrets: a message reaches the platform, its consumers and the logs.
    assert not UUID.search(classify_failure(status, body, legacy=legacy).message)


def test_schema_message_with_an_id_is_blanked():
    error = classify_failure(400, zod("id", message=f"Invalid uuid {SESSION}"))
    assert "<id>" in error.message and SESSION not in error.message


def test_signed_out_names_the_modes_that_need_no_account():
    assert '"direct-battle"' in classify_failure(401, "").message


def test_verification_says_reloading_does_not_help():
    assert "Reloading the page does not help" in classify_failure(403, "recaptcha validation failed").message


# --- Retry-After ---

@pytest.mark.parametrize("header, body, seconds", [
    ("30", "", 30), ("  45 ", "", 45), (12.5, "", 12.5), (7, "", 7),
    ("Wed, 21 Oct 2026 07:28:00 GMT", "try again in 2 minutes", 120),
    (None, '{"error": "Rate limit. Retry after 500ms"}', 0.5),
    (None, "please retry in 10 s", 10),
    (None, "Try again in 3 min", 180),
    (None, "Too many requests", None),
    (0, "", None), (-5, "", None), ("abc", "", None),
])
def test_retry_after_from_header_and_body(header, body, seconds):
    error = classify_failure(429, body, retry_after=header)
    assert isinstance(error, UpstreamRateLimited)
    assert error.retry_after == seconds
    if seconds:
        assert error.headers == {"Retry-After": str(max(1, round(seconds)))}
        assert f"in {seconds:g} s" in error.message
    else:
        assert error.headers == {} and "in a minute" in error.message


def test_zero_retry_after_header_sets_no_header():
    error = classify_failure(429, "", retry_after="0")
    assert "Retry-After" not in error.headers


# --- reading a body ---

@pytest.mark.parametrize("body, expected", [
    ('{"issues": [{"path": ["userMessage", "metadata"], "message": "Expected object, received null"}]}',
     ("userMessage.metadata", "Expected object, received null")),
    ('{"errors": [{"path": ["modelAId"], "message": "Invalid uuid"}, {"path": ["x"], "message": "y"}]}',
     ("modelAId", "Invalid uuid")),
    ('{"details": [{"path": ["userMessage", "experimental_attachments", 0, "url"]}]}',
     ("userMessage.experimental_attachments.0.url", "invalid")),
    ('{"issues": [{"path": [], "message": "Expected object"}]}', ("(the body)", "Expected object")),
    ('{"path": ["mode"], "error": "Invalid enum value"}', ("mode", "Invalid enum value")),
    ('{"issues": ["not an issue"]}', None),
    ('{"error": "no path here"}', None),
    ("Bad Request", None),
    ("[1, 2]", None),
])
def test_schema_field(body, expected):
    assert schema_field(body) == expected


@pytest.mark.parametrize("name, consumer", [
    ("userMessage.content", True), ("userMessage.experimental_attachments.0.url", True),
    ("userMessage.experimental_attachments", True), ("userMessage.contentType", False),
    ("userMessage.metadata", False), ("modelAId", False), ("", False),
])
def test_consumer_fields(name, consumer):
    assert is_consumer_field(name) is consumer


def test_schema_error_at_an_attachment_is_the_requests_fault():
    error = classify_failure(400, zod("userMessage", "experimental_attachments", 0, "contentType",
                                      message="Invalid enum value"))
    assert isinstance(error, RequestFieldRefused) and isinstance(error, UpstreamSchemaError)
    assert error.field == "userMessage.experimental_attachments.0.contentType"
    assert "images" in error.message and error.type == "invalid_request_error"


def test_schema_error_elsewhere_is_a_site_change():
    error = classify_failure(400, zod("userMessage", "metadata", message="Expected object, received null"))
    assert type(error) is UpstreamSchemaError and error.field == "userMessage.metadata"
    assert "`userMessage.metadata`: Expected object, received null" in error.message
    assert "update arenahub" in error.message


@pytest.mark.parametrize("body, words", [
    ('{"error": {"message": "nested words"}}', "nested words"),
    ('{"error": "{\\"message\\": \\"a provider error inside a string\\"}"}', "a provider error inside a string"),
    ('{"message": "  spread \\n over   lines "}', "spread over lines"),
    ('{"other": 1}', '{"other": 1}'),
    ("<!doctype html><html><head><title> Sign in </title></head></html>", "an HTML page (Sign in)"),
    ("<html><body>no title</body></html>", "an HTML page"),
    ("", "no details"),
    (f"id {SESSION} and {SESSION.upper()}", "id <id> and <id>"),
])
def test_detail(body, words):
    assert detail(body) == words


def test_detail_is_short():
    words = detail("x" * 1000)
    assert len(words) == 303 and words.endswith("...")


@pytest.mark.parametrize("text, challenge, block", [
    (CHALLENGE, True, False), ("<p>Enable JavaScript and cookies to continue</p>", True, False),
    ("<script>window._cf_chl_opt={}</script>", True, False), (BLOCK, False, True),
    ("Sorry, you have been blocked", False, True), ('a0:"just a moment"', False, False), ("", False, False),
])
def test_cloudflare_pages(text, challenge, block):
    assert (is_challenge(text), is_block_page(text)) == (challenge, block)


def test_unexpected_answer_names_the_page_and_the_doctor():
    error = unexpected_answer("text/html; charset=utf-8", "<html><head><title>Arena</title></head></html>")
    assert isinstance(error, UnexpectedAnswer) and error.status == 502
    assert "an HTML page (Arena) (text/html)" in error.message
    assert "arenahub bridge doctor" in error.message


def test_unexpected_answer_that_is_a_cloudflare_page():
    assert isinstance(unexpected_answer("text/html", CHALLENGE), NeedsVerification)
    assert isinstance(unexpected_answer("", BLOCK), CloudflareBlocked)
    assert "no content type" in unexpected_answer("", "hello").message


def test_stream_timeout():
    error = stream_timeout(12.5)
    assert isinstance(error, UpstreamStreamTimeout) and (error.status, error.code) == (504, "upstream_stream_timeout")
    assert "12.5 s" in error.message and "stream_response_timeout_seconds" in error.message


@pytest.mark.parametrize("kind, status, type_, code", [
    (f.InvalidSession, 503, "service_unavailable_error", "lmarena_session_invalid"),
    (f.SignedOut, 503, "service_unavailable_error", "arena_signed_out"),
    (f.VerificationRequired, 503, "service_unavailable_error", "verification_required"),
    (f.NeedsVerification, 503, "service_unavailable_error", "needs_verification"),
    (f.CloudflareBlocked, 503, "service_unavailable_error", "cloudflare_blocked"),
    (f.MessageHasFeedback, 503, "service_unavailable_error", "message_has_feedback"),
    (f.ClockSkew, 503, "service_unavailable_error", "clock_skew"),
    (f.RecaptchaUnavailable, 503, "service_unavailable_error", "recaptcha_unavailable"),
    (f.ContentRejected, 400, "invalid_request_error", "content_policy_violation"),
    (f.AttachmentTooLarge, 413, "invalid_request_error", "attachment_too_large"),
    (f.UpstreamRateLimited, 429, "rate_limit_error", "upstream_rate_limited"),
    (f.UpstreamStreamTimeout, 504, "timeout_error", "upstream_stream_timeout"),
    (f.UpstreamApiChanged, 502, "upstream_error", "upstream_api_changed"),
    (f.UpstreamSchemaError, 502, "upstream_error", "upstream_schema_error"),
    (f.RequestFieldRefused, 400, "invalid_request_error", "upstream_refused_request"),
    (f.UnexpectedAnswer, 502, "upstream_error", "unexpected_upstream_answer"),
    (f.UploadUnavailable, 502, "upstream_error", "upload_unavailable"),
    (f.LMArenaError, 502, "upstream_error", "lmarena_error"),
    (f.WrongPosition, 502, "upstream_error", "wrong_participant_position"),
    (f.ModelListNotFound, 502, "upstream_error", "model_list_not_found"),
])
def test_every_named_error_has_its_status_type_and_code(kind, status, type_, code):
    error = kind("words")
    assert (error.status, error.type, error.code, error.message) == (status, type_, code, "words")
