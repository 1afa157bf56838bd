"""The reCAPTCHA Enterprise stand-in: site keys, the tokens it issues, and the script the page loads.

Real tokens come from Google and are verified by the site's server once; here the sim issues them
(``POST /__sim/recaptcha/execute``) and remembers each one by its hash, so the log never holds a
usable token. A token is good once, for the site key and action it was issued for, for
``token_ttl_seconds``.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import string
from dataclasses import dataclass, field

SITE_KEY = re.compile(r"^6L[A-Za-z0-9_-]{38}$")
_KEY_CHARS = string.ascii_letters + string.digits + "_-"


def new_site_key() -> str:
    return "6L" + "".join(secrets.choice(_KEY_CHARS) for _ in range(38))


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass
class IssuedToken:
    site_key: str
    action: str
    issued_at: float
    used: bool = False


@dataclass
class TokenLedger:
    """Every token issued, by hash; ``redeem`` is the site's one-time verification."""

    tokens: dict[str, IssuedToken] = field(default_factory=dict)

    def issue(self, site_key: str, action: str, now: float) -> str:
        token = "03AFcWeA" + secrets.token_urlsafe(294)  # about 400 chars of [A-Za-z0-9_-], as real ones
        self.tokens[token_hash(token)] = IssuedToken(site_key, action, now)
        return token

    def redeem(self, token: object, *, site_key: str, action: str, now: float, ttl: float) -> str | None:
        """None when the token is good; else why not. A known token is used up whatever the verdict."""
        if token is None:
            return "recaptcha: missing token"
        if not isinstance(token, str):
            return "recaptcha: token is not a string"
        issued = self.tokens.get(token_hash(token))
        if issued is None:
            return "recaptcha: unknown token"
        was_used, issued.used = issued.used, True
        if was_used:
            return "recaptcha: reused token"
        if issued.site_key != site_key:
            return "recaptcha: token for an old site key"
        if issued.action != action:
            return f"recaptcha: wrong action {issued.action}"
        if now - issued.issued_at > ttl:
            return f"recaptcha: expired token ({now - issued.issued_at:.1f} s old, ttl {ttl:g} s)"
        return None


# Served at /recaptcha/enterprise.js. It talks to the sim with XMLHttpRequest, not fetch: the real
# script talks to Google from its own iframe, so a fetch wrapper in the page never sees it either.
STAND_IN_SCRIPT = """/* reCAPTCHA Enterprise stand-in (arena.ai simulator) */
(function () {
  "use strict";
  function execute(siteKey, options) {
    return new Promise(function (resolve, reject) {
      var xhr = new XMLHttpRequest();
      xhr.open("POST", "/__sim/recaptcha/execute");
      xhr.setRequestHeader("Content-Type", "application/json");
      xhr.onload = function () {
        if (xhr.status !== 200) {
          reject(new Error("reCAPTCHA execute failed: HTTP " + xhr.status + " " + xhr.responseText));
          return;
        }
        try { resolve(JSON.parse(xhr.responseText).token); }
        catch (error) { reject(new Error("reCAPTCHA execute failed: " + error)); }
      };
      xhr.onerror = function () { reject(new Error("reCAPTCHA execute failed: network error")); };
      xhr.send(JSON.stringify({siteKey: String(siteKey), action: (options && options.action) || ""}));
    });
  }
  // Like the real script, grecaptcha appears a little after the script has loaded.
  setTimeout(function () {
    window.grecaptcha = {enterprise: {
      ready: function (callback) { setTimeout(callback, 0); },
      execute: execute,
      render: function () { return 0; }
    }};
  }, 50 + Math.floor(Math.random() * 100));
})();
"""
