"""What a tab found in its page, judged item by item, each with what to do (pure: no I/O).

The same checks run when a tab connects (``/bridge/status``, the heartbeat's session state) and
in ``arenahub bridge doctor``, which adds one tiny real call. A failed ``fatal`` check means the
bridge cannot work until a person acts.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from arenahub.bridge.lmarena import site
from arenahub.protocol import frames, tab
from arenahub.protocol.tab import PageFacts

USERSCRIPT_HINT = "install the userscript again (`arenahub userscript` prints it) and reload the arena.ai tab"


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool | None  # None: a warning (the bridge works, something is limited)
    detail: str
    advice: str = ""
    fatal: bool = False  # failing, the bridge cannot answer
    state: str = "site_changed"  # the session state (frames.SESSION_STATES) this check puts the bridge in, failing

    def to_frame(self) -> frames.SessionCheck:
        return frames.SessionCheck(name=self.name, ok=self.ok, detail=self.detail[:300], advice=self.advice[:300])

    def public(self) -> dict[str, object]:
        """For /bridge/status and ``doctor --json``: the state only of a check that fails and sets one."""
        out: dict[str, object] = {"name": self.name, "ok": self.ok, "detail": self.detail, "advice": self.advice,
                                  "fatal": self.fatal}
        if self.ok is False and self.fatal:
            out["state"] = self.state
        return out


@dataclass(frozen=True)
class TabView:
    """One connected tab as the checks see it."""

    protocol: int
    script_version: str
    facts: PageFacts
    models_in_page: int | None = None  # None: not counted yet


def _host(origin: str) -> str:
    return urlsplit(origin).hostname or ""


def on_site(origin: str) -> bool:
    host = _host(origin)
    return any(host == h or host.endswith("." + h) for h in site.SITE_HOSTS)


def check_tab(view: TabView | None, *, needs_sign_in: bool, uses_images: bool = True) -> list[Check]:
    """The checks of one tab (the best connected one), in the order a person fixes them."""
    if view is None:
        return [Check("tab", False, "no arena.ai tab is connected to the bridge",
                      "open https://arena.ai in the browser where the arenahub userscript is installed (Tampermonkey); "
                      "the tab title starts with a green check when it is connected", fatal=True,
                      state="no_tab")]
    facts = view.facts
    checks = [Check("tab", True, f"a tab is connected ({facts.origin or 'origin unknown'})")]
    if view.protocol != tab.TAB_PROTOCOL_VERSION:
        checks.append(Check("userscript", False, f"the tab runs userscript {view.script_version or '?'} (protocol "
                            f"{view.protocol}); this bridge speaks protocol {tab.TAB_PROTOCOL_VERSION}",
                            USERSCRIPT_HINT, fatal=True, state="userscript_outdated"))
        return checks
    checks.append(Check("userscript", True, f"userscript {view.script_version}"))
    if facts.page == "block":
        checks.append(Check("page", False, "Cloudflare's block page (\"Attention Required!\") is showing",
                            "a person must act: open the tab; if it says \"Sorry, you have been blocked\", use another "
                            "network or turn a VPN off, then reload", fatal=True, state="blocked"))
        return checks
    if facts.page == "challenge":
        checks.append(Check("page", False, "Cloudflare's check (\"Just a moment...\") is showing",
                            "wait a few seconds: the browser clears it and the page reloads by itself; if a check box "
                            "shows, tick it", fatal=True, state="cloudflare_challenge"))
        return checks
    if facts.page != "arena":
        where = facts.origin or "an unknown page"
        checks.append(Check("page", False, f"the tab is not on an arena.ai chat page ({where})",
                            "open https://arena.ai in that tab", fatal=True))
        return checks
    checks.append(Check("page", True, f"an arena.ai page ({facts.title[:80] or 'no title'})"))
    if facts.auth_cookies and facts.account == "guest":
        checks.append(Check("signed_in", False if needs_sign_in else None,
                            "signed in as a guest (an anonymous session), which may only battle",
                            "sign in with an account at arena.ai in that tab" + ("" if needs_sign_in else
                                                                                 " (battle modes work as a guest)"),
                            fatal=needs_sign_in, state="signed_out"))
    elif facts.auth_cookies:
        who = "an account" if facts.account == "user" else "auth cookie"
        checks.append(Check("signed_in", True, f"signed in ({who}: " + ", ".join(facts.auth_cookies) + ")"))
    else:
        checks.append(Check("signed_in", False if needs_sign_in else None, "not signed in: no arena.ai auth cookie",
                            "sign in at arena.ai in that tab" + ("" if needs_sign_in else
                                                                 " (battle modes work without an account)"),
                            fatal=needs_sign_in, state="signed_out"))
    if facts.sitekey_found and facts.grecaptcha:
        checks.append(Check("recaptcha", True, f"reCAPTCHA Enterprise ready (site key {facts.sitekey_hint}...)"))
    else:
        missing = [n for n, ok in (("the site key", facts.sitekey_found), ("grecaptcha.enterprise", facts.grecaptcha))
                   if not ok]
        checks.append(Check("recaptcha", False, f"{' and '.join(missing)} not found in the page",
                            "reload the tab; if it stays, arena.ai has changed how it loads reCAPTCHA: update "
                            "arenahub", fatal=True))
    if view.models_in_page is None:
        checks.append(Check("models", None, "the page's model list was not read yet"))
    elif view.models_in_page:
        checks.append(Check("models", True, f"initialModels found: {view.models_in_page} models"))
    else:
        checks.append(Check("models", False, "no initialModels in the page",
                            "reload the tab; if it stays, the page keeps its models elsewhere now: update arenahub"))
    if facts.upload_actions is None:
        checks.append(Check("uploads", None, "the upload actions were not looked for yet"))
    elif facts.upload_actions:
        checks.append(Check("uploads", True, "the page's upload actions found (generateUploadUrl, getSignedUrl)"))
    else:
        checks.append(Check("uploads", False if uses_images else None,
                            f"the page's upload actions were not found ({facts.upload_problem or 'no reason given'})",
                            "requests with images fail until they are; reload the tab, and if it stays, update "
                            "arenahub"))
    return checks


def fatal(checks: list[Check]) -> Check | None:
    return next((c for c in checks if c.ok is False and c.fatal), None)
