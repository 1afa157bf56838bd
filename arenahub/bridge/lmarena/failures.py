"""LMArena's failures as named errors, each with a message that names its fix."""

from __future__ import annotations

import json
import re
from typing import Any

from arenahub.protocol.errors import (
    ApiError,
    RequestTooLarge,
    UpstreamError,
    UpstreamTimeout,
)

CAPTURE_HINT = "`arenahub bridge capture-ids --config config.jsonc`"


class InvalidSession(ApiError):
    """LMArena refused the ids (401): they belong to another account or have expired.

    503 and not 401: the caller's key is fine; another client (or re-captured ids) can serve it.
    """

    status = 503
    type = "service_unavailable_error"
    code = "lmarena_session_invalid"


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


class NeedsVerification(ApiError):
    """A Cloudflare (or reCAPTCHA) check: the tab is asked to reload; answered 503 until it is back."""

    status = 503
    type = "service_unavailable_error"
    code = "needs_verification"


class UpstreamStreamTimeout(UpstreamTimeout):
    code = "upstream_stream_timeout"


class UpstreamApiChanged(UpstreamError):
    """The upstream path answered 404/405: LMArena has most likely moved its private API."""

    code = "upstream_api_changed"


class LMArenaError(UpstreamError):
    code = "lmarena_error"


class WrongPosition(LMArenaError):
    code = "wrong_participant_position"


class ModelListNotFound(UpstreamError):
    code = "model_list_not_found"


CHALLENGE_MARKERS = ("<title>just a moment...</title>", "enable javascript and cookies to continue",
                     "window._cf_chl_opt")


def is_challenge(text: str) -> bool:
    low = text.lower()
    return any(marker in low for marker in CHALLENGE_MARKERS)


def stream_timeout(seconds: float) -> UpstreamStreamTimeout:
    return UpstreamStreamTimeout(
        f"No data from the LMArena tab for {seconds:g} s. The model may be slow or the tab stalled: retry, "
        "or raise stream_response_timeout_seconds in config.jsonc.")


# (kind, upstream statuses, text that means the same when no status is known)
_RULES = (
    ("session", (401,), re.compile(r"(?i)does not have access to evaluation session|session (?:has )?expired")),
    ("too_large", (413,), re.compile(r"(?i)too large|exceeds? the maximum (?:file |upload )?size")),
    ("rejected", (422,), re.compile(r"(?i)violates? our terms|request rejected|moderation")),
    ("rate", (429,), re.compile(r"(?i)rate.?limit|too many requests")),
    ("recaptcha", (), re.compile(r"(?i)recaptcha")),
)
_BARE_STATUS = re.compile(r"\b(401|413|422|429)\b")
_RETRY_AFTER = re.compile(
    r"(?i)(?:retry|try again)(?:\s+(?:after|in))?\s+(\d+(?:\.\d+)?)\s*(ms|s|sec|seconds?|m|min|minutes?)?\b")


def _detail(body: str) -> str:
    """The upstream's own words: the ``error``/``message`` of a JSON body, a page title, or the text."""
    text = body.strip()
    if text.startswith(("{", "[")):
        try:
            text = _message_of(json.loads(text))
        except ValueError:
            pass
    elif text[:200].lstrip().lower().startswith(("<!doctype", "<html")):
        title = re.search(r"<title>(.*?)</title>", text, re.IGNORECASE | re.DOTALL)
        text = f"an HTML page ({title.group(1).strip()})" if title else "an HTML page"
    text = " ".join(text.split())
    return text[:300] + ("..." if len(text) > 300 else "") if text else "no details"


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


def _retry_after(body: str) -> float | None:
    m = _RETRY_AFTER.search(body)
    if not m:
        return None
    unit = (m.group(2) or "s").lower()
    return float(m.group(1)) * (60 if unit.startswith("m") and unit != "ms" else 0.001 if unit == "ms" else 1)


def classify_failure(status: int | None, body: str) -> ApiError:
    """Turn an upstream failure (HTTP status if known, the first part of the body) into a named error."""
    body = body or ""
    detail = _detail(body)
    if is_challenge(body):
        return NeedsVerification("LMArena is showing a Cloudflare check (needs verification). The bridge asks the "
                                 "tab to reload; if a check shows in the tab, complete it there, then retry.")
    kind = next((k for k, statuses, _ in _RULES if status in statuses), None)
    kind = kind or next((k for k, _, pattern in _RULES if pattern.search(body)), None)
    if kind is None and status is None and (bare := _BARE_STATUS.search(body)):
        kind = next(k for k, statuses, _ in _RULES if int(bare.group(1)) in statuses)
    if kind == "session":
        return InvalidSession(f"LMArena refused the session ({detail}): the session_id/message_id belong to another "
                              f"account or have expired. Capture them again with {CAPTURE_HINT} and click Retry on "
                              "an answer in the LMArena tab (or fix the entry in model_endpoint_map.json).")
    if kind == "too_large":
        return AttachmentTooLarge(f"LMArena refused the attachment as too large ({detail}). It accepts about 5 MB: "
                                  "resize or compress the image, or send a smaller one.")
    if kind == "rejected":
        return ContentRejected(f"LMArena rejected the request's content ({detail}). Rephrase it; retrying the same "
                               "text will be rejected again.")
    if kind == "rate":
        wait = _retry_after(body)
        when = f"in {wait:g} s" if wait else "in a minute"
        return UpstreamRateLimited(f"LMArena is rate limiting this account ({detail}). Retry {when}, or spread "
                                   "requests over more accounts.", retry_after=wait)
    if kind == "recaptcha":
        return NeedsVerification(f"LMArena's reCAPTCHA check failed ({detail}). The bridge asks the tab to reload; "
                                 "use the LMArena page once by hand if it keeps failing, then retry.")
    if status in (404, 405):
        return UpstreamApiChanged(f"LMArena answered {status} for the bridge's upstream call ({detail}): the site "
                                  "has most likely changed its private API. Update arenahub and reinstall the "
                                  "userscript (`arenahub userscript`).")
    if status is None and re.search(r"failed to fetch|networkerror|network error", body, re.IGNORECASE):
        return LMArenaError(f"The LMArena tab could not reach the site ({detail}). Check the tab's network "
                            "connection and that lmarena.ai opens in it.")
    where = f"answered {status}" if status else "reported an error"
    return LMArenaError(f"LMArena {where}: {detail}")
