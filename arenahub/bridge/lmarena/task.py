"""The task the userscript turns into LMArena's upstream call, built from an OpenAI chat request."""

from __future__ import annotations

import itertools
import mimetypes
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote, urlsplit

from arenahub.bridge.lmarena.models import Endpoint, Model
from arenahub.protocol.errors import InvalidRequest

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
