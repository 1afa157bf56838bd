"""What the Python side knows about arena.ai: names, markers and formats, in one place.

The site changes often (it moved from lmarena.ai to arena.ai in 2026-02; its send path, ids and
reCAPTCHA changed through 2025-2026). When it does, the fix should be one line here or in the
userscript's ``UPSTREAM`` object (which knows the paths, body fields, reCAPTCHA actions and the
upload actions, since the tab makes the calls). This module knows how answers and failures look
and where the page keeps its models. Facts and their public sources: README, "The bridge".
"""

from __future__ import annotations

import re

# --- Where the site lives -----------------------------------------------------------------------
SITE_URL = "https://arena.ai"
# Hosts whose pages may connect a tab: arena.ai now; lmarena.ai still answers (301 to arena.ai).
SITE_HOSTS = ("arena.ai", "lmarena.ai")

# --- Conversations ------------------------------------------------------------------------------
# ``mode`` of a new conversation. In every mode but direct a second, anonymous model answers too
# (side b); the bridge returns one side.
MODES = ("direct", "direct-battle", "side-by-side", "battle")
# Modes in which the model the consumer names answers on side a (battle: nobody chooses).
NAMED_MODEL_MODES = ("direct", "direct-battle", "side-by-side")

# --- The answer stream: AI-SDK-style lines ``<side><kind>:<json>`` (side a or b) ----------------
LINE = re.compile(r"([ab]?)([0-9a-z]):(.*)", re.DOTALL)
KIND_TEXT = "0"  # a JSON string: a piece of the answer
KIND_REASONING = "g"  # a JSON string: a piece of the model's reasoning
KIND_DATA = "2"  # a JSON list of items: images, heartbeats, the routed model
KIND_TOOL_DELTA = "c"  # {"toolCallId", "argsTextDelta"}: search citations, as a JSON text in pieces
KIND_ERROR = "3"  # a JSON string (or object): the upstream failed
KIND_FINISH = "d"  # {"finishReason", "usage": {"promptTokens", "completionTokens"}}: the end
KIND_STEP_END = "e"  # {"finishReason", "isContinued"}: a step ended (not the answer)
KIND_START = "f"  # {"messageId"}: the answer began
KNOWN_KINDS = {KIND_TEXT, KIND_REASONING, KIND_DATA, KIND_TOOL_DELTA, KIND_ERROR, KIND_FINISH, KIND_STEP_END,
               KIND_START}
DATA_IMAGE, DATA_HEARTBEAT, DATA_ROUTED_MODEL = "image", "heartbeat", "routed_model"
FINISH_ERROR = "error"  # finishReason "error" is a failure, not a stop
ARENA_ERROR_TEXT = "hasArenaError"  # sent as a text piece when the site fails mid-answer
FINISH_REASONS = {"stop": "stop", "length": "length", "content-filter": "content_filter",
                  "content_filter": "content_filter", "tool-calls": "tool_calls", "tool_calls": "tool_calls"}

# --- The page: its models, in the Next.js flight data -------------------------------------------
MODELS_KEY = "initialModels"
MODEL_NAME_KEY = "publicName"  # what models.json and the OpenAI API call a model
MODEL_DISPLAY_KEY = "displayName"
MODEL_SELECTABLE_KEY = "userSelectable"

# --- Failures -----------------------------------------------------------------------------------
# A Cloudflare interstitial the browser clears by itself ("Just a moment...").
CHALLENGE_MARKERS = ("<title>just a moment...</title>", "enable javascript and cookies to continue",
                     "window._cf_chl_opt")
# Cloudflare's block page: only a person (another network, a cleared flag) can get past it.
BLOCK_MARKERS = ("<title>attention required! | cloudflare</title>", "sorry, you have been blocked",
                 'id="cf-error-details"', "cf-error-details")
RECAPTCHA_FAILED = re.compile(r"(?i)recaptcha")  # with a 403
RECAPTCHA_REFUSED = re.compile(r"(?i)recaptcha validation failed")  # the site's own words, with or without a status
SIGNED_OUT = re.compile(r"(?i)\buser not found\b|login_required|sign in to|not signed in|unauthori[sz]ed")
FOREIGN_SESSION = re.compile(r"(?i)does not have access to evaluation session|session (?:has )?expired")
HAS_FEEDBACK = re.compile(r"(?i)already has feedback")
SPOOFED_ID = re.compile(r"(?i)seems spoofed|offset too big")
NOT_UUID7 = re.compile(r"(?i)uuid\s*v?7")
CONTENT_REJECTED = re.compile(r"(?i)violates? our terms|request rejected|moderation")
TOO_LARGE = re.compile(r"(?i)too large|exceeds? the maximum (?:file |upload )?size|entitytoolarge")
RATE_LIMITED = re.compile(r"(?i)rate.?limit|too many requests")
# A schema refusal lists issues with a path (zod): the first field the site did not take.
SCHEMA_ISSUE_KEYS = ("issues", "errors", "details")
# A field the consumer controls: a refusal there is the request's fault, not a site change.
CONSUMER_FIELDS = ("userMessage.content", "userMessage.experimental_attachments")
