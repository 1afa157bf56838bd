"""Everything the bridge knows about LMArena's private web formats, in one pure module.

LMArena changes its private API often. When it does, this module and the userscript are the only
places to change: the task payload the userscript turns into the upstream call (``build_task``),
the upstream stream's line format (``StreamParser``), the failures it answers with
(``classify_failure``) and where the page keeps its model list (``extract_page_models``).
No sockets here: the server feeds in dicts and strings and gets values back.
"""

from __future__ import annotations

import itertools
import json
import mimetypes
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from arenahub.protocol.errors import (
    ApiError,
    InvalidRequest,
    RequestTooLarge,
    UpstreamError,
    UpstreamTimeout,
)

Mode = Literal["direct_chat", "battle"]
Position = Literal["a", "b"]
MODES: tuple[Mode, ...] = ("direct_chat", "battle")
POSITIONS: tuple[Position, ...] = ("a", "b")
CAPTURE_HINT = "`arenahub bridge capture-ids --config config.jsonc`"

_UUID = re.compile(r"(?i)[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_DECODER = json.JSONDecoder()


def is_uuid(value: object) -> bool:
    """LMArena's session, message and model ids are all UUIDs; anything else was never captured."""
    return isinstance(value, str) and _UUID.fullmatch(value) is not None


@dataclass(frozen=True)
class Endpoint:
    """One (session, message) pair to retry: from config.jsonc or model_endpoint_map.json."""

    session_id: str
    message_id: str
    mode: Mode = "direct_chat"
    battle_target: Position = "a"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be 'direct_chat' or 'battle', got {self.mode!r}")
        if self.battle_target not in POSITIONS:
            raise ValueError(f"battle_target must be 'a' or 'b', got {self.battle_target!r}")

    @property
    def position(self) -> Position:
        """The participant position whose answer the upstream stream carries."""
        return self.battle_target if self.mode == "battle" else "a"


@dataclass(frozen=True)
class Model:
    """A models.json entry: ``"<uuid>"`` (text), ``"<uuid>:image"``, or ``"null:image"`` (no model id)."""

    name: str
    model_id: str | None
    image: bool = False

    @classmethod
    def parse(cls, name: str, value: Any) -> Model:
        """Read one models.json value; ValueError says what is wrong with it and how to write it."""
        if value is None:
            return cls(name, None)
        if not isinstance(value, str):
            # ValueError for every bad value: callers catch one type.
            raise ValueError(f'must be a string like "<uuid>" or "<uuid>:image", got {value!r}')  # noqa: TRY004
        ident, _, kind = (s.strip() for s in value.partition(":"))
        kind = kind.lower() or "text"
        if kind not in ("text", "image"):
            raise ValueError(f'has type {kind!r}: write "<model uuid>" for a text model or "<model uuid>:image"')
        if ident.lower() == "null":
            return cls(name, None, kind == "image")
        if not is_uuid(ident):
            raise ValueError(f"{ident!r} is not an LMArena model id (a UUID, or null); "
                             "`arenahub bridge update-models` writes the current ones")
        return cls(name, ident, kind == "image")

    def to_value(self) -> str:
        return (self.model_id or "null") + (":image" if self.image else "")


# --- Failures, each naming its fix ---------------------------------------------------------------

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


# --- The task sent to the userscript ------------------------------------------------------------

_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant",
          "tool": "user", "function": "user"}
_IMAGE_EXT = {"image/png": ".png", "image/jpeg": ".jpg", "image/jpg": ".jpg", "image/gif": ".gif",
              "image/webp": ".webp", "image/bmp": ".bmp", "image/svg+xml": ".svg", "image/avif": ".avif",
              "image/heic": ".heic", "image/tiff": ".tiff"}
_EXT_TYPE = {ext: kind for kind, ext in _IMAGE_EXT.items() if kind != "image/jpg"} | {".jpeg": "image/jpeg"}
_MEDIA_TYPE = re.compile(r"[a-z0-9][a-z0-9.+-]*/[a-z0-9][a-z0-9.+-]*")
_BASE64 = re.compile(r"[A-Za-z0-9+/_\-\s]+=*\s*")
IMAGE_BYPASS_FLAG = "--bypass"


def build_task(request: dict[str, Any], model: Model, endpoint: Endpoint, *, tavern_mode: bool,
               bypass: bool) -> dict[str, Any]:
    """The ``payload`` of a task for the userscript, from an OpenAI chat request.

    Raises InvalidRequest, naming the field, for input that cannot become a task.
    """
    messages = request.get("messages") if isinstance(request, dict) else None
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("`messages` must be a non-empty list of messages.", param="messages")
    counter = itertools.count(1)
    templates = [_template(i, message, counter) for i, message in enumerate(messages)]
    if tavern_mode:
        templates = _merge_system(templates)
    templates = _image_bypass(templates)
    if bypass and not model.image:
        # An empty user turn after the conversation; image generation does not take it.
        templates.append({"role": "user", "content": " ", "attachments": []})
    for t in templates:
        if endpoint.mode == "battle":
            t["participantPosition"] = endpoint.battle_target
        else:
            t["participantPosition"] = "b" if t["role"] == "system" else "a"
    return {"message_templates": templates,
            "target_model_id": None if endpoint.mode == "battle" else model.model_id,
            "session_id": endpoint.session_id, "message_id": endpoint.message_id,
            "is_image_request": model.image}


def _template(i: int, message: Any, counter: Iterator[int]) -> dict[str, Any]:
    where = f"messages[{i}]"
    if not isinstance(message, dict):
        raise InvalidRequest(f"`{where}` must be an object with `role` and `content`.", param=where)
    role = message.get("role")
    if role not in _ROLES:
        raise InvalidRequest(f"`{where}.role` is {role!r}: use system, developer, user, assistant or tool.",
                             param=f"{where}.role")
    text, attachments = _content(where, message.get("content"), counter)
    if role in ("tool", "function"):
        # LMArena has no tool role: the result goes in as a user turn that says what it is.
        label = message.get("name") or message.get("tool_call_id")
        text = f"[{role} result{f' {label}' if isinstance(label, str) and label else ''}]\n{text}"
    elif role == "assistant":
        text = "\n".join(filter(None, [text, *_tool_calls(message)]))
    role = _ROLES[role]
    if role == "user" and not text.strip():
        text = " "  # LMArena fails on an empty user turn
    return {"role": role, "content": text, "attachments": attachments}


def _tool_calls(message: dict[str, Any]) -> list[str]:
    calls = message.get("tool_calls") if isinstance(message.get("tool_calls"), list) else []
    if isinstance(message.get("function_call"), dict):
        calls = [*calls, {"function": message["function_call"]}]
    out = []
    for call in calls:
        fn = call.get("function") if isinstance(call, dict) else None
        if isinstance(fn, dict):
            out.append(f"[tool call {fn.get('name', '?')}({fn.get('arguments', '')})]")
    return out


def _content(where: str, content: Any, counter: Iterator[int]) -> tuple[str, list[dict[str, str]]]:
    if content is None:
        return "", []
    if isinstance(content, str):
        return content, []
    if not isinstance(content, list):
        raise InvalidRequest(f"`{where}.content` must be a string or a list of content parts.",
                             param=f"{where}.content")
    texts, attachments = [], []
    for j, part in enumerate(content):
        at = f"{where}.content[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("text", "input_text") and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind == "image_url":
            attachments.append(_attachment(at, part, next(counter)))
        else:
            raise InvalidRequest(f"`{at}` is not a text or image_url part (type {kind!r}); LMArena takes text and "
                                 "images only.", param=at)
    return "\n\n".join(texts), attachments


def _attachment(where: str, part: dict[str, Any], n: int) -> dict[str, str]:
    spec, name = part.get("image_url"), None
    if isinstance(spec, dict):
        url = spec.get("url")
        name = spec.get("name") or spec.get("filename")
        detail = spec.get("detail")  # the existing bridge reads a file name from here
        if not name and isinstance(detail, str) and "." in detail and detail not in ("auto", "low", "high"):
            name = detail
    else:
        url = spec
    param = f"{where}.image_url.url"
    if not isinstance(url, str) or not url.strip():
        raise InvalidRequest(f"`{param}` is missing: give a data: URI or an http(s) URL.", param=param)
    url = url.strip()
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme == "data":
        content_type = _data_uri_type(param, url)
    elif scheme in ("http", "https") and urlsplit(url).netloc:
        content_type, name = _url_type_and_name(url, name)
    else:
        raise InvalidRequest(f"`{param}` must be a data: URI (data:image/png;base64,...) or an http(s) URL, "
                             f"got {url[:60]!r}.", param=param)
    if not isinstance(name, str) or not name.strip():
        ext = _IMAGE_EXT.get(content_type) or mimetypes.guess_extension(content_type) or ".bin"
        name = f"{'image' if content_type.startswith('image/') else 'file'}-{n}{ext}"
    return {"name": name.strip(), "contentType": content_type, "url": url}


def _data_uri_type(param: str, url: str) -> str:
    header, comma, data = url[5:].partition(",")
    if not comma:
        raise InvalidRequest(f"`{param}` is a data: URI without a comma before its data.", param=param)
    fields = [f.strip().lower() for f in header.split(";")]
    if not _MEDIA_TYPE.fullmatch(fields[0]):
        raise InvalidRequest(f"`{param}` is a data: URI without a media type: write data:image/png;base64,...",
                             param=param)
    if not data.strip() or ("base64" in fields[1:] and not _BASE64.fullmatch(data)):
        raise InvalidRequest(f"`{param}` holds no valid {'base64 ' if 'base64' in fields else ''}data.", param=param)
    return fields[0]


def _url_type_and_name(url: str, name: str | None) -> tuple[str, str | None]:
    last = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
    ext = ("." + last.rsplit(".", 1)[1].lower()) if "." in last else ""
    guessed = _EXT_TYPE.get(ext) or (mimetypes.guess_type("x" + ext)[0] if ext else None)
    if not guessed or not guessed.startswith("image/"):
        return "image/png", name  # an image_url part is an image; its format is not in the URL (".php", none)
    return guessed, name or last[-100:]


def _merge_system(templates: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tavern mode: every system message, in order, becomes one system message at the start."""
    systems = [t for t in templates if t["role"] == "system"]
    if not systems:
        return templates
    text = "\n\n".join(t["content"] for t in systems if t["content"].strip())
    attachments = [a for t in systems for a in t["attachments"]]
    merged = [{"role": "system", "content": text, "attachments": attachments}] if text or attachments else []
    return merged + [t for t in templates if t["role"] != "system"]


def _image_bypass(templates: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A last user turn ending in ``--bypass`` with images: the images move to an empty assistant turn before it.

    The existing bridge does this to get images past LMArena's check of user uploads.
    """
    last = templates[-1]
    images = [a for a in last["attachments"] if a["contentType"].startswith("image/")]
    if last["role"] != "user" or not images or not last["content"].rstrip().endswith(IMAGE_BYPASS_FLAG):
        return templates
    last["content"] = last["content"].rstrip()[: -len(IMAGE_BYPASS_FLAG)].strip() or " "
    last["attachments"] = [a for a in last["attachments"] if a not in images]
    out = [*templates[:-1], {"role": "assistant", "content": "", "attachments": images}, last]
    if out[0]["role"] == "assistant":
        out.insert(0, {"role": "user", "content": " ", "attachments": []})
    return out


# --- The upstream stream ---------------------------------------------------------------------------

@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class Reasoning:
    """``ag:`` lines: the model's reasoning, apart from its answer."""

    text: str


@dataclass(frozen=True)
class Images:
    urls: list[str]


_OPENAI_REASONS = {"stop": "stop", "length": "length", "content-filter": "content_filter",
                   "content_filter": "content_filter", "tool-calls": "tool_calls", "tool_calls": "tool_calls"}


@dataclass(frozen=True)
class Finish:
    reason: str
    usage: dict[str, Any] | None = None

    @property
    def openai_reason(self) -> str:
        """The reason in OpenAI's words (``content-filter`` -> ``content_filter``); ``stop`` when it has none."""
        return _OPENAI_REASONS.get(self.reason, "stop")


@dataclass(frozen=True)
class UpstreamFailure:
    error: ApiError


@dataclass(frozen=True)
class Challenge:
    """A Cloudflare challenge page came instead of an answer."""


@dataclass(frozen=True)
class Unknown:
    """A line the bridge does not use: logged, never fatal."""

    line: str
    reason: str = "a line the bridge does not know"


Event = TextDelta | Reasoning | Images | Finish | UpstreamFailure | Challenge | Unknown

_LINE = re.compile(r"([ab]?)([0-9a-z]):(.*)", re.DOTALL)
_PREFIX = re.compile(r"[ab]?[0-9a-z]:")
_LOOSE_LIMIT = 20_000
ARENA_ERROR_TEXT = "hasArenaError"  # sent as a text delta when LMArena fails mid-answer


class StreamParser:
    """Incremental parser of the upstream answer: feed() raw chunks as the tab forwards them.

    Lines are ``<position><kind>:<json>`` (``a0:"text"``, ``a2:[images]``, ``ad:{finish}``, ``a3:"error"``,
    ``ag:"reasoning"``). In battle mode only the followed position is the answer. After a failure or a
    challenge the rest is not an answer, and the parser returns nothing more.
    """

    def __init__(self, position: Position = "a") -> None:
        if position not in POSITIONS:
            raise ValueError(f"position must be 'a' or 'b', got {position!r}")
        self.position = position
        self.answered = False  # text or images came for our position
        self.stopped = False
        self._pending = ""  # an unfinished last line
        self._loose: list[str] = []  # lines outside the line format: maybe an error body over several lines
        self._other_text = False

    def feed(self, text: str) -> list[Event]:
        if self.stopped or not text:
            return []
        lines = (self._pending + text).split("\n")
        self._pending = lines.pop()
        events = self._lines(lines)
        # A challenge page need not end in a newline: look at its unfinished line now, not at the end.
        pending = self._pending
        if not self.stopped and len(pending) < 500_000 and not _PREFIX.match(pending) and is_challenge(pending):
            self.stopped = True
            events.append(Challenge())
        return events

    def close(self) -> list[Event]:
        """The stream ended: parse what is left and report what only the whole stream shows."""
        events = self._lines([self._pending])
        self._pending = ""
        if not self.stopped and len(self._loose) > 1 and (obj := _error_object("\n".join(self._loose))):
            events.append(self._fail(obj))
        elif not self.stopped and not self.answered and self._other_text:
            other = "b" if self.position == "a" else "a"
            events.append(UpstreamFailure(WrongPosition(
                f"LMArena answered as participant {other.upper()}, but this request reads participant "
                f"{self.position.upper()}: the ids come from a session in another mode. Set id_updater_last_mode / "
                "id_updater_battle_target (or the map entry's mode / battle_target) to match, or capture the ids "
                "again with `arenahub bridge capture-ids --config config.jsonc --mode ... --target ...`.")))
        self.stopped = True
        return events

    def _lines(self, lines: list[str]) -> list[Event]:
        events: list[Event] = []
        for raw in lines:
            line = raw.rstrip("\r")
            if self.stopped:
                break
            if line.strip():
                events.extend(self._line(line))
        return events

    def _fail(self, error: ApiError | dict[str, Any]) -> UpstreamFailure:
        self.stopped = True
        if isinstance(error, dict):
            status = error.get("status", error.get("statusCode"))
            error = classify_failure(status if isinstance(status, int) else None, json.dumps(error))
        return UpstreamFailure(error)

    def _line(self, line: str) -> list[Event]:
        m = _LINE.fullmatch(line)
        if not m:
            # Only outside the line format: a model may well write these words in its answer.
            if is_challenge(line):
                self.stopped = True
                return [Challenge()]
            if sum(map(len, self._loose)) < _LOOSE_LIMIT:
                self._loose.append(line)
            obj = _error_object(line)
            return [self._fail(obj)] if obj else [Unknown(line[:2000])]
        position, kind, rest = m.groups()
        try:
            value = json.loads(rest)
        except ValueError:
            return [Unknown(line[:2000], "not JSON after its prefix")]
        if kind == "3" or (kind == "e" and _is_error_step(value)):  # errors count from either position
            body = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
            return [self._fail(classify_failure(None, body))]  # the whole body: codes classify too
        if position and position != self.position:
            self._other_text = self._other_text or (kind == "0" and bool(value))
            return [Unknown(line[:2000], f"participant {position}: this request follows {self.position}")]
        if kind in "0g" and isinstance(value, str):
            if kind == "0" and value == ARENA_ERROR_TEXT:
                return [self._fail(LMArenaError("LMArena failed in the middle of the answer (hasArenaError); "
                                                "retry the request."))]
            self.answered = self.answered or (kind == "0" and bool(value))
            return [] if not value else [TextDelta(value) if kind == "0" else Reasoning(value)]
        if kind == "2" and isinstance(value, list):
            return self._data(line, value)
        if kind == "d" and isinstance(value, dict):
            usage = value.get("usage")
            return [Finish(str(value.get("finishReason") or "stop"), usage if isinstance(usage, dict) else None)]
        if kind in "ef":  # step bookkeeping: start (message id) and end of a step
            return []
        return [Unknown(line[:2000])]

    def _data(self, line: str, items: list[Any]) -> list[Event]:
        urls, rest = [], False
        for item in items:
            kind = item.get("type") if isinstance(item, dict) else None
            if kind == "image" and isinstance(item.get("image"), str) and item["image"]:
                urls.append(item["image"])
            elif kind != "heartbeat":
                rest = True
        events: list[Event] = [Unknown(line[:2000], "data items that are not images")] if rest else []
        if urls:
            self.answered = True
            events.insert(0, Images(urls))
        return events


def _is_error_step(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, dict) and "finishReason" not in value
                                      and ("error" in value or "message" in value))


def _error_object(text: str) -> dict[str, Any] | None:
    """The innermost JSON object in ``text`` that has an ``"error"`` key, if there is one."""
    at = text.find('"error"')
    while at >= 0:
        start, tries = text.rfind("{", 0, at), 0
        while start >= 0 and tries < 20:
            try:
                obj, end = _DECODER.raw_decode(text, start)
            except ValueError:
                obj, end = None, -1
            if isinstance(obj, dict) and end > at and "error" in obj:
                return obj
            start, tries = text.rfind("{", 0, start), tries + 1
        at = text.find('"error"', at + 1)
    return None


# --- The page's model list (update-models) --------------------------------------------------------

_NEXT_PUSH = re.compile(r'self\.__next_f\.push\(\[\s*\d+\s*,\s*("(?:[^"\\]|\\.)*")\s*\]\)', re.DOTALL)
_PUBLIC_NAME = re.compile(r'"publicName"\s*:')


def extract_page_models(html: str) -> dict[str, str]:
    """``{public name: "<uuid>" | "<uuid>:image"}`` from the LMArena page source, in page order.

    The page keeps its models as JSON objects (``id``, ``publicName``, ``capabilities``) inside the
    Next.js flight data (``self.__next_f.push([1, "..."])`` strings); plain JSON is read too. Models
    whose only output is video cannot be served through chat and are left out.
    """
    flight = []
    for m in _NEXT_PUSH.finditer(html):
        try:
            flight.append(json.loads(m.group(1)))
        except ValueError:
            continue
    found: dict[str, str] = {}
    for text in (html, "".join(flight)):
        _collect(text, found)
    if not found and '\\"publicName\\"' in html:  # escaped JSON outside any flight push
        _collect(html.replace('\\"', '"').replace("\\\\", "\\"), found)
    if not found:
        raise ModelListNotFound("No model list found in the LMArena page source: the tab may not be on lmarena.ai "
                                "(or not loaded yet), or the page keeps its models elsewhere now. Reload the tab and "
                                "retry; if it persists, update arenahub.")
    return found


def _collect(text: str, found: dict[str, str]) -> None:
    for m in _PUBLIC_NAME.finditer(text):
        obj = _owner_of(text, m.start())
        name, ident = (obj.get("publicName"), obj.get("id")) if obj else (None, None)
        if isinstance(name, str) and name.strip() and is_uuid(ident) and name not in found:
            kind = _output_kind(obj)
            if kind:
                found[name] = ident + (":image" if kind == "image" else "")


def _owner_of(text: str, at: int) -> dict[str, Any] | None:
    """The innermost object around position ``at`` that has a ``publicName`` key."""
    start, tries = text.rfind("{", 0, at), 0
    while start >= max(0, at - 20_000) and tries < 50:
        try:
            obj, end = _DECODER.raw_decode(text, start)
        except ValueError:
            obj, end = None, -1
        if isinstance(obj, dict) and end > at and "publicName" in obj:
            return obj
        start, tries = text.rfind("{", 0, start), tries + 1
    return None


def _output_kind(model: dict[str, Any]) -> str | None:
    caps = model.get("capabilities")
    out = caps.get("outputCapabilities") if isinstance(caps, dict) else None
    if not isinstance(out, dict) or not out:
        return "text"  # no capability data: a chat model, as on older pages
    if out.get("image"):
        return "image"
    return "text" if out.get("text") or out.get("search") else None


def models_json_text(page_models: dict[str, str], existing: dict[str, Any] | None = None) -> str:
    """models.json content: the page's models, plus entries of ``existing`` the page does not list
    (a user's own names, such as ``"null:image"`` ones); sorted by name so that updates diff well."""
    merged = {**(existing or {}), **page_models}
    return json.dumps(dict(sorted(merged.items(), key=lambda kv: kv[0].lower())), indent=4, ensure_ascii=False) + "\n"


__all__ = [
    "CHALLENGE_MARKERS",
    "MODES",
    "POSITIONS",
    "AttachmentTooLarge",
    "Challenge",
    "ContentRejected",
    "Endpoint",
    "Event",
    "Finish",
    "Images",
    "InvalidSession",
    "LMArenaError",
    "Model",
    "ModelListNotFound",
    "NeedsVerification",
    "Reasoning",
    "StreamParser",
    "TextDelta",
    "Unknown",
    "UpstreamApiChanged",
    "UpstreamFailure",
    "UpstreamRateLimited",
    "UpstreamStreamTimeout",
    "WrongPosition",
    "build_task",
    "classify_failure",
    "extract_page_models",
    "is_challenge",
    "is_uuid",
    "models_json_text",
    "stream_timeout",
]
