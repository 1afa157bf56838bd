"""What the bridge knows about its arena.ai session, one owner for it: reported at ``/bridge/status``
and in every heartbeat, so that the platform routes around a client that cannot answer and the
dashboard says what its owner should do.

Failures set a condition; each condition ends its own way (a success ends all of them):
- verification_required: only when a call goes through again: the page's own call after a person
  solved the check, or ``arenahub bridge doctor``. Never by reloading the page.
- signed_out: a tab that (re)connects with the auth cookie.
- cloudflare_challenge / blocked: a tab that (re)connects on a normal arena.ai page.
- rate_limited: its time running out.
- site_changed, clock_skew, session_invalid: a success (or new ids, for session_invalid).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from arenahub.bridge.diagnosis import Check, fatal
from arenahub.bridge.lmarena import failures as f
from arenahub.protocol.errors import ApiError
from arenahub.protocol.frames import SessionStatus

ACTIONS = {
    "no_tab": "Open https://arena.ai in the browser where the arenahub userscript is installed.",
    "userscript_outdated": "Install the userscript again (`arenahub userscript` prints it) and reload the arena.ai "
                           "tab.",
    "blocked": "Cloudflare blocks this browser: open the arena.ai tab, use another network (or turn a VPN off) and "
               "reload.",
    "cloudflare_challenge": "Cloudflare is checking the browser: wait a few seconds; if a check shows in the arena.ai "
                            "tab, complete it.",
    "verification_required": "Open the arena.ai tab, send one message by hand and complete the \"Security "
                             "Verification\" if it shows; the bridge resumes when that message goes through (or run "
                             "`arenahub bridge doctor --config config.jsonc`).",
    "signed_out": "Sign in at arena.ai in the tab (or set arena_mode to \"direct-battle\" or \"battle\").",
    "clock_skew": "Set this computer's clock right (automatic time): arena.ai refuses ids made more than an hour off.",
    "site_changed": "arena.ai has changed: update arenahub and reinstall the userscript.",
    "session_invalid": "Capture the conversation ids again: `arenahub bridge capture-ids --config config.jsonc`.",
    "rate_limited": "arena.ai is rate limiting this account: wait, or add another account's tab.",
}
# Conditions set by failures, in the order they are reported (the first present is the state).
_CONDITIONS = ("blocked", "cloudflare_challenge", "verification_required", "signed_out", "clock_skew",
               "site_changed", "session_invalid")
_INVALID = {"signed_out", "clock_skew", "site_changed", "session_invalid", "userscript_outdated"}
_VERIFY = {"blocked", "cloudflare_challenge", "verification_required"}


@dataclass
class SessionState:
    conditions: dict[str, str] = field(default_factory=dict)  # condition -> the message that set it
    rate_limited_until: float | None = None
    last_ok_at: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    checks: list[Check] = field(default_factory=list)  # of the best tab, when it last reported

    # -- events -----------------------------------------------------------------------------
    def succeeded(self) -> None:
        self.conditions.clear()
        self.rate_limited_until = None
        self.last_ok_at = time.time()
        self.last_error = None  # kept with its time until then; a success means it no longer holds

    def failed(self, err: ApiError) -> None:
        """A request failed with ``err``: note the condition it shows, if any."""
        self.last_error, self.last_error_at = err.message, time.time()
        condition = {f.VerificationRequired: "verification_required", f.NeedsVerification: "cloudflare_challenge",
                     f.CloudflareBlocked: "blocked", f.SignedOut: "signed_out", f.ClockSkew: "clock_skew",
                     f.InvalidSession: "session_invalid", f.MessageHasFeedback: "session_invalid",
                     f.UpstreamApiChanged: "site_changed", f.UnexpectedAnswer: "site_changed",
                     f.RecaptchaUnavailable: "site_changed"}.get(type(err))
        if isinstance(err, f.UpstreamSchemaError) and not f.is_consumer_field(err.field):
            condition = "site_changed"
        if condition:
            self.conditions[condition] = err.message
        if isinstance(err, f.UpstreamRateLimited):
            self.rate_limited_until = time.time() + (err.retry_after or 60.0)

    def tab_reported(self, checks: list[Check]) -> None:
        """A tab (re)connected or was diagnosed: what the page shows now ends the page-bound conditions."""
        self.checks = checks
        names = {c.name: c for c in checks}
        page = names.get("page")
        if page is not None and page.ok:
            self.conditions.pop("cloudflare_challenge", None)
            self.conditions.pop("blocked", None)
        signed = names.get("signed_in")
        if signed is not None and signed.ok:
            self.conditions.pop("signed_out", None)

    def ids_changed(self) -> None:
        """New conversation ids (legacy mode): unknown until they are used."""
        self.conditions.pop("session_invalid", None)
        self.last_error = None

    def rate_limited(self) -> bool:
        return self.rate_limited_until is not None and self.rate_limited_until > time.time()

    # -- the state ----------------------------------------------------------------------------
    def state(self, tabs: int) -> str:
        if tabs == 0:
            # A tab reloading for a Cloudflare interstitial is away for a moment: the condition says more.
            return "cloudflare_challenge" if "cloudflare_challenge" in self.conditions else "no_tab"
        blocking = fatal(self.checks)
        # What the tab shows now comes before what failed last: a person must fix it first.
        if blocking is not None and blocking.state in ("no_tab", "userscript_outdated", "blocked",
                                                       "cloudflare_challenge"):
            return blocking.state
        condition = next((c for c in _CONDITIONS if c in self.conditions), None)
        if condition:
            return condition
        if blocking is not None:
            return blocking.state  # signed_out, or site_changed (a page the bridge cannot work with)
        if self.rate_limited():
            return "rate_limited"
        return "ready" if self.checks or self.last_ok_at is not None else "unknown"

    def action(self, state: str) -> str | None:
        """What a person should do; a failing check's own advice when the state comes from that check."""
        blocking = fatal(self.checks)
        if state == "site_changed" and state not in self.conditions and blocking is not None \
                and blocking.state == state:
            return blocking.advice[:1].upper() + blocking.advice[1:] + "."
        return ACTIONS.get(state)

    def to_status(self, tabs: int) -> SessionStatus:
        state = self.state(tabs)
        valid: bool | None = False if state in _INVALID else (True if self.last_ok_at is not None else None)
        return SessionStatus(bridge_reachable=True, browser_connected=tabs > 0, session_valid=valid,
                             needs_verification=state in _VERIFY,
                             rate_limited_until=self.rate_limited_until if self.rate_limited() else None,
                             last_error=self.last_error, state=state, action=self.action(state),
                             checks=[c.to_frame() for c in self.checks])
