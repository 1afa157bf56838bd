"""arena.ai's failures as named errors, each with a message that says what the person should do.

``classify_failure`` turns what the tab saw (an HTTP status, the start of the body, the
Retry-After header) into one of the errors below. Most are 503: this client cannot serve now,
but another may (the platform retries elsewhere); the ones that are the request's own fault are
4xx. Upstream words are quoted with ids blanked out: session and user ids are secrets.
"""

from __future__ import annotations

import json
import re
from typing import Any

from arenahub.bridge.lmarena import site
from arenahub.protocol.errors import (
    ApiError,
    RequestTooLarge,
    UpstreamError,
    UpstreamTimeout,
)

CAPTURE_HINT = "`arenahub bridge capture-ids --config config.jsonc`"
DOCTOR_HINT = "`arenahub bridge doctor --config config.jsonc`"
UPDATE_HINT = ("update arenahub (download a new client package from the platform: its start_client.sh installs the "
               "new version) and install the userscript again")


class _Unavailable(ApiError):
    """This client cannot serve now; another one may (try again in 30 s, unless the error says otherwise)."""

    status = 503
    type = "service_unavailable_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None, status: int | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message, param=param, code=code, status=status, headers=headers or {"Retry-After": "30"})


class InvalidSession(_Unavailable):
    """Legacy mode: arena.ai refused the captured ids (401): another account's, or expired."""

    code = "lmarena_session_invalid"


class SignedOut(_Unavailable):
    code = "arena_signed_out"


class VerificationRequired(_Unavailable):
    """reCAPTCHA refused the call: only a person at the tab can get past the check that follows."""

    code = "verification_required"


class NeedsVerification(_Unavailable):
    """Cloudflare's interstitial ("Just a moment..."): the browser clears it by itself."""

    code = "needs_verification"


class CloudflareBlocked(_Unavailable):
    """Cloudflare's block page ("Attention Required!"): a person must act."""

    code = "cloudflare_blocked"


class MessageHasFeedback(_Unavailable):
    code = "message_has_feedback"


class ClockSkew(_Unavailable):
    code = "clock_skew"


class RecaptchaUnavailable(_Unavailable):
    code = "recaptcha_unavailable"


class ContentRejected(ApiError):
    status = 400
    type = "invalid_request_error"
    code = "content_policy_violation"


class AttachmentTooLarge(RequestTooLarge):
    code = "attachment_too_large"


class UpstreamRateLimited(ApiError):
    status = 429
    type = "rate_limit_error"
    code = "upstream_rate_limited"

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        headers = {"Retry-After": str(max(1, round(retry_after)))} if retry_after else None
        super().__init__(message, headers=headers)
        self.retry_after = retry_after


class UpstreamStreamTimeout(UpstreamTimeout):
    code = "upstream_stream_timeout"


class UpstreamApiChanged(UpstreamError):
    """The site answered 404/405 or refused the shape of the call: it has most likely changed."""

    code = "upstream_api_changed"


class UpstreamSchemaError(UpstreamError):
    """The site refused the call's shape (a zod-style 400), naming the field."""

    code = "upstream_schema_error"

    def __init__(self, message: str, *, field: str = "") -> None:
        super().__init__(message)
        self.field = field


class RequestFieldRefused(UpstreamSchemaError):
    """The site refused a field the consumer controls (``site.CONSUMER_FIELDS``): the request's fault."""

    status = 400
    type = "invalid_request_error"
    code = "upstream_refused_request"


class UnexpectedAnswer(UpstreamError):
    """A web page or something else that is not the answer stream came back."""

    code = "unexpected_upstream_answer"


class UploadUnavailable(UpstreamError):
    code = "upload_unavailable"


class LMArenaError(UpstreamError):
    code = "lmarena_error"


class WrongPosition(LMArenaError):
    code = "wrong_participant_position"


class ModelListNotFound(UpstreamError):
    code = "model_list_not_found"


def is_challenge(text: str) -> bool:
    low = text.lower()
    return any(marker in low for marker in site.CHALLENGE_MARKERS)


def is_block_page(text: str) -> bool:
    low = text.lower()
    return any(marker in low for marker in site.BLOCK_MARKERS)


def stream_timeout(seconds: float) -> UpstreamStreamTimeout:
    return UpstreamStreamTimeout(
        f"No data from the arena.ai tab for {seconds:g} s. The model may be slow or the tab stalled: retry, "
        "or raise stream_response_timeout_seconds in config.jsonc.")


# --- Reading an upstream body ------------------------------------------------------------------

_UUID = re.compile(r"(?i)\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")
_BARE_STATUS = re.compile(r"\b(401|413|422|429)\b")
_RETRY_AFTER = re.compile(
    r"(?i)(?:retry|try again)(?:\s+(?:after|in))?\s+(\d+(?:\.\d+)?)\s*(ms|s|sec|seconds?|m|min|minutes?)?\b")


def _json(body: str) -> Any:
    text = body.strip()
    if not text.startswith(("{", "[")):
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def _message_of(value: Any) -> str:
    if isinstance(value, dict):
        for key in ("error", "message", "detail", "msg"):
            if key in value and value[key] not in (None, ""):
                return _message_of(value[key])
    if isinstance(value, str):
        nested = value.strip()
        if nested.startswith("{"):  # a3 lines carry a provider's JSON error inside a string
            try:
                return _message_of(json.loads(nested))
            except ValueError:
                pass
        return value
    return json.dumps(value, ensure_ascii=False)


def detail(body: str) -> str:
    """The upstream's own words, short, with ids blanked: a JSON ``error``, a page title, or the text."""
    text = body.strip()
    data = _json(text)
    if data is not None:
        text = _message_of(data)
    elif text[:300].lstrip().lower().startswith(("<!doctype", "<html")):
        title = re.search(r"<title>(.*?)</title>", text, re.IGNORECASE | re.DOTALL)
        text = f"an HTML page ({title.group(1).strip()})" if title else "an HTML page"
    return _short(text, 300) or "no details"


def schema_field(body: str) -> tuple[str, str] | None:
    """``(field, what is wrong)`` of the first issue in a zod-style 400 (``{"issues": [{"path", "message"}]}``),
    short and with ids blanked: both are quoted in messages."""
    data = _json(body)
    if not isinstance(data, dict):
        return None
    issues = [issue for key in site.SCHEMA_ISSUE_KEYS if isinstance(data.get(key), list) for issue in data[key]
              if isinstance(issue, dict) and isinstance(issue.get("path"), list)]
    if issues:
        path, what = issues[0]["path"], str(issues[0].get("message") or "invalid")
    elif isinstance(data.get("path"), list):  # a single refusal naming its field
        path, what = data["path"], _message_of(data)
    else:
        return None
    name = ".".join(str(p) for p in path) or "(the body)"
    return _short(name, 200), _short(what, 200)


def _short(text: str, limit: int) -> str:
    text = _UUID.sub("<id>", " ".join(text.split()))
    return text[:limit] + ("..." if len(text) > limit else "")


def is_consumer_field(name: str) -> bool:
    """A refusal at ``name`` is about what the consumer sent (text, images), not the shape the bridge builds."""
    return any(name == f or name.startswith((f + ".", f + "[")) for f in site.CONSUMER_FIELDS)


def _retry_after(header: str | float | None, body: str) -> float | None:
    if isinstance(header, int | float):
        return float(header) if header > 0 else None
    if isinstance(header, str) and header.strip():
        try:
            return max(0.0, float(header.strip()))
        except ValueError:
            pass  # an HTTP date: fall back to the body
    m = _RETRY_AFTER.search(body)
    if not m:
        return None
    unit = (m.group(2) or "s").lower()
    return float(m.group(1)) * (60 if unit.startswith("m") and unit != "ms" else 0.001 if unit == "ms" else 1)


# --- The named errors, with what to do ---------------------------------------------------------

def signed_out(words: str) -> SignedOut:
    return SignedOut(f"arena.ai says this tab is not signed in ({words}). Sign in at arena.ai in that tab "
                     "(the bridge picks it up when the page reloads), or set arena_mode to \"direct-battle\" "
                     "or \"battle\", which work without an account.")


def verification_required(words: str) -> VerificationRequired:
    return VerificationRequired(
        f"arena.ai's reCAPTCHA check refused the request ({words}). A person has to look at the arena.ai tab: "
        "send one message there by hand and complete the \"Security Verification\" if it shows. The bridge "
        f"takes requests again as soon as that message goes through (or when {DOCTOR_HINT} succeeds). "
        "Reloading the page does not help.")


def challenge() -> NeedsVerification:
    return NeedsVerification("arena.ai is showing a Cloudflare check (\"Just a moment...\"). The browser "
                             "normally clears it by itself within seconds; the bridge reloads the tab once. If a "
                             "check stays on screen in the tab, complete it there.")


def blocked(words: str) -> CloudflareBlocked:
    return CloudflareBlocked(f"Cloudflare is blocking this browser from arena.ai ({words}). A person must act: "
                             "open arena.ai in that tab, and if it shows \"Sorry, you have been blocked\", use "
                             "another network (or turn a VPN off) and reload.")


def classify_failure(status: int | None, body: str, *, retry_after: str | float | None = None,
                     legacy: bool = False) -> ApiError:
    """Turn an upstream failure (HTTP status if known, the start of the body) into a named error.

    ``legacy``: the call was the 2025 retry path (its 401 means the captured ids, not the sign-in).
    """
    body = body or ""
    words = detail(body)
    if is_block_page(body):
        return blocked(words)
    if is_challenge(body):
        return challenge()
    if site.SPOOFED_ID.search(body) or (status == 400 and site.NOT_UUID7.search(body)):
        return ClockSkew(f"arena.ai refused the conversation ids as made at the wrong time ({words}). This "
                         "computer's clock is more than an hour off: set it right (enable automatic time), then "
                         "retry.")
    if site.HAS_FEEDBACK.search(body):
        return MessageHasFeedback(f"arena.ai will not retry the captured message: it already has a vote ({words}). "
                                  f"Capture fresh ids with {CAPTURE_HINT} and click Retry on an answer you have "
                                  "not voted on (or move to the default create-evaluation mode).")
    if status == 401 or (status is None and site.FOREIGN_SESSION.search(body)):
        if site.FOREIGN_SESSION.search(body):
            if legacy:
                return InvalidSession(f"arena.ai refused the captured session ({words}): the session_id/message_id "
                                      "belong to another account or have expired. Capture them again with "
                                      f"{CAPTURE_HINT} and click Retry on an answer in the arena.ai tab (or fix "
                                      "the entry in model_endpoint_map.json).")
            return InvalidSession(f"arena.ai refused the conversation ({words}): it belongs to another account or "
                                  "has expired. Retry: the bridge starts a new conversation.")
        return signed_out(words)
    if ((status == 403 and site.RECAPTCHA_FAILED.search(body))
            or (status is None and site.RECAPTCHA_REFUSED.search(body))):
        return verification_required(words)
    if status == 413 or (status is None and site.TOO_LARGE.search(body)):
        return AttachmentTooLarge(f"arena.ai refused an attachment as too large ({words}). It takes about 5 MB an "
                                  "image: resize or compress it.")
    # A 429 is a rate limit whatever its body says ("Request rejected" is no content verdict).
    if status != 429 and (status == 422 or site.CONTENT_REJECTED.search(body)):
        return ContentRejected(f"arena.ai rejected the request's content ({words}). Rephrase it; the same text "
                               "will be rejected again.")
    if status == 429 or (status is None and site.RATE_LIMITED.search(body)):
        wait = _retry_after(retry_after, body)
        when = f"in {wait:g} s" if wait else "in a minute"
        return UpstreamRateLimited(f"arena.ai is rate limiting this account ({words}). Retry {when}, or spread "
                                   "requests over more accounts.", retry_after=wait)
    if status == 400 and (field := schema_field(body)):
        name, what = field
        if is_consumer_field(name):
            part = "images" if "attachments" in name else "text"
            return RequestFieldRefused(f"arena.ai refused the request's {part} "
                                       f"at `{name}`: {what}. Change the request (shorter text, fewer or smaller "
                                       "images) and send it again.", field=name)
        return UpstreamSchemaError(f"arena.ai refused the shape of the request at `{name}`: {what}. The site has "
                                   f"most likely changed: {UPDATE_HINT}.", field=name)
    if status in (404, 405):
        return UpstreamApiChanged(f"arena.ai answered {status} for the bridge's call ({words}): the site has most "
                                  f"likely moved its private API. {UPDATE_HINT[0].upper()}{UPDATE_HINT[1:]}.")
    if status is None and re.search(r"failed to fetch|networkerror|network error|load failed", body, re.IGNORECASE):
        return LMArenaError(f"The arena.ai tab could not reach the site ({words}). Check the tab's network "
                            "connection and that arena.ai opens in it.")
    if status is None and not legacy and (bare := _BARE_STATUS.search(body)):
        return classify_failure(int(bare.group(1)), body, retry_after=retry_after, legacy=legacy)
    where = f"answered {status}" if status else "reported an error"
    return LMArenaError(f"arena.ai {where}: {words}")


def unexpected_answer(content_type: str, body: str) -> ApiError:
    """A 2xx answer that is not the line stream: a web page, JSON, ..."""
    if is_block_page(body) or is_challenge(body):
        return classify_failure(None, body)
    kind = (content_type or "no content type").split(";")[0].strip()
    return UnexpectedAnswer(f"arena.ai answered with {detail(body)} ({kind}) where an answer stream was "
                            f"expected: the site has most likely changed. {UPDATE_HINT[0].upper()}{UPDATE_HINT[1:]}; "
                            f"{DOCTOR_HINT} shows what the tab sees.")
