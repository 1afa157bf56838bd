"""What sits in front of the site: the lmarena.ai -> arena.ai redirect, and Cloudflare.

Cloudflare has two scriptable modes. "challenge" answers every request without a valid
``cf_clearance`` cookie with the "Just a moment..." interstitial, whose script clears itself after
``clears_after_ms`` (300 by default; ``GET /cdn-cgi/challenge-platform/clear`` sets the cookie, then
the page reloads), so a browser gets through on its own while a plain HTTP client does not. "block" answers everything
with "Sorry, you have been blocked" until the mode is turned off: only a person can act on that.
``/__sim/`` is never challenged or blocked; ``/cdn-cgi/`` is only blocked.
"""

from __future__ import annotations

import secrets

from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from arenahub.tools.arena_sim.log import kind_of, open_record
from arenahub.tools.arena_sim.state import SimState, sim_of

CLEARANCE_COOKIE = "cf_clearance"
OLD_HOSTS = ("lmarena.ai", "www.lmarena.ai")

CHALLENGE_PAGE = """<!DOCTYPE html><html lang="en-US"><head><title>Just a moment...</title>
<meta http-equiv="Content-Type" content="text/html; charset=UTF-8"><meta name="robots" content="noindex,nofollow">
<meta name="viewport" content="width=device-width,initial-scale=1"></head>
<body><div class="main-wrapper" role="main"><div class="main-content">
<h1 class="zone-name-title h1">arena.ai</h1>
<h2 class="h2" id="challenge-running">Verifying you are human. This may take a few seconds.</h2>
<div id="challenge-body-text" class="core-msg spacer">Enable JavaScript and cookies to continue</div>
<noscript><div class="h2">Enable JavaScript and cookies to continue</div></noscript>
</div></div>
<script>
setTimeout(function () {
  var xhr = new XMLHttpRequest();
  xhr.open("GET", "/cdn-cgi/challenge-platform/clear");
  xhr.onload = function () { location.reload(); };
  xhr.send();
}, CLEARS_AFTER_MS);
</script></body></html>"""

BLOCK_PAGE = """<!DOCTYPE html><html lang="en-US"><head><title>Attention Required! | Cloudflare</title>
<meta charset="UTF-8"><meta name="robots" content="noindex, nofollow"></head>
<body><div id="cf-wrapper"><div id="cf-error-details" class="cf-error-details-wrapper">
<div class="cf-wrapper cf-header cf-error-overview">\
<h1 data-translate="block_headline">Sorry, you have been blocked</h1>
<h2 class="cf-subheadline"><span data-translate="unable_to_access">You are unable to access</span> arena.ai</h2></div>
<div class="cf-section cf-wrapper"><h2 data-translate="blocked_why_headline">Why have I been blocked?</h2>
<p>This website is using a security service to protect itself from online attacks.</p></div>
<div class="cf-error-footer"><p>Cloudflare Ray ID: <strong class="font-semibold">RAYID</strong></p></div>
</div></div></body></html>"""


def _cf_headers() -> dict[str, str]:
    return {"server": "cloudflare", "cf-ray": secrets.token_hex(8) + "-AMS", "cache-control": "no-store"}


def challenge_response(clears_after_ms: int = 300) -> Response:
    page = CHALLENGE_PAGE.replace("CLEARS_AFTER_MS", str(clears_after_ms))
    return HTMLResponse(page, status_code=403, headers={**_cf_headers(), "cf-mitigated": "challenge"})


def block_response() -> Response:
    headers = _cf_headers()
    return HTMLResponse(BLOCK_PAGE.replace("RAYID", headers["cf-ray"]), status_code=403, headers=headers)


class Edge:
    """ASGI middleware in front of every route: the redirect first, then the Cloudflare mode."""

    def __init__(self, app: ASGIApp, sim: SimState) -> None:
        self.app = app
        self.sim = sim

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        response = self._verdict(request)
        if response is None:
            await self.app(scope, receive, send)
        else:
            await response(scope, receive, send)

    def _verdict(self, request: Request) -> Response | None:
        host = (request.headers.get("host") or "").rsplit(":", 1)[0].lower()
        if host in OLD_HOSTS:
            query = "?" + request.url.query if request.url.query else ""
            return RedirectResponse("https://arena.ai" + request.url.path + query, status_code=301)
        path, mode = request.url.path, self.sim.cloudflare
        if path.startswith("/__sim/") or mode == "off":
            return None
        if mode == "challenge":
            if path.startswith("/cdn-cgi/") or request.cookies.get(CLEARANCE_COOKIE) in self.sim.clearances:
                return None
            response = challenge_response(self.sim.challenge_clears_after_ms)
        else:
            response = block_response()
        kind = kind_of(request.method, path, request.headers.get("next-action"))
        if kind is not None:
            record = open_record(request, kind, self.sim.now())
            record.status, record.error = 403, f"cloudflare: {mode}"
            self.sim.record(record)
        return response


async def clear_challenge(request: Request) -> Response:
    """What the interstitial's script calls: a clearance cookie, good until the mode is set again."""
    sim = sim_of(request)
    value = secrets.token_urlsafe(32)
    sim.clearances.add(value)
    response = PlainTextResponse("ok")
    response.set_cookie(CLEARANCE_COOKIE, value, path="/", secure=request.url.scheme == "https", httponly=True,
                        samesite="lax")
    return response
