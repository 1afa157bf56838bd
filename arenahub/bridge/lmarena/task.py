"""The task a tab turns into arena.ai's call, built from an OpenAI chat request (pure: no I/O).

- ``create_task``: a new conversation (``create-evaluation``) with the flattened history.
- ``follow_up_task``: new turns of a conversation the tab already has (``post-to-evaluation``).
- ``retry_task``: the 2025 path (``retry-evaluation-session-message``), per message, legacy mode.

Images arrive here as ``data:`` URLs (the bridge downloads links first); ``attachment`` checks
one and names it.
"""

from __future__ import annotations

import mimetypes
import re
from dataclasses import dataclass

from arenahub.bridge.lmarena import conversation
from arenahub.bridge.lmarena.conversation import ImageRef, Turn
from arenahub.bridge.lmarena.models import Endpoint, Model, Position
from arenahub.protocol import tab
from arenahub.protocol.errors import InvalidRequest

_IMAGE_EXT = {"image/png": ".png", "image/jpeg": ".jpg", "image/jpg": ".jpg", "image/gif": ".gif",
              "image/webp": ".webp", "image/bmp": ".bmp", "image/svg+xml": ".svg", "image/avif": ".avif",
              "image/heic": ".heic", "image/tiff": ".tiff", "application/pdf": ".pdf"}
_MEDIA_TYPE = re.compile(r"[a-z0-9][a-z0-9.+-]*/[a-z0-9][a-z0-9.+-]*")
_BASE64 = re.compile(r"[A-Za-z0-9+/_\-\s]+=*\s*")
IMAGE_BYPASS_FLAG = "--bypass"


@dataclass(frozen=True)
class ArenaSettings:
    """How the bridge starts conversations (config.jsonc: arena_mode, id_updater_battle_target, ...)."""

    mode: tab.Mode = "direct"
    target: Position = "a"  # the side returned in battle mode
    side_by_side_model: Model | None = None  # side b's model in side-by-side
    tavern_mode: bool = False

    def position(self) -> Position:
        """The side whose answer is returned: a, where the named model answers, except in battle."""
        return self.target if self.mode == "battle" else "a"


def attachment(ref: ImageRef, n: int) -> tab.Attachment:
    """A checked ``data:`` URL as the tab's attachment; InvalidRequest names the field when it is not one."""
    url = ref.url
    if not url[:5].lower() == "data:":
        raise InvalidRequest(f"`{ref.where}` must be a data: URI (data:image/png;base64,...) or an http(s) URL, "
                             f"got {url[:60]!r}.", param=ref.where)
    header, comma, data = url[5:].partition(",")
    if not comma:
        raise InvalidRequest(f"`{ref.where}` is a data: URI without a comma before its data.", param=ref.where)
    fields = [f.strip().lower() for f in header.split(";")]
    if not _MEDIA_TYPE.fullmatch(fields[0]):
        raise InvalidRequest(f"`{ref.where}` is a data: URI without a media type: write data:image/png;base64,...",
                             param=ref.where)
    if "base64" not in fields[1:] or not data.strip() or not _BASE64.fullmatch(data):
        raise InvalidRequest(f"`{ref.where}` holds no valid base64 data (write data:<type>;base64,<data>).",
                             param=ref.where)
    kind = fields[0]
    name = ref.name.strip() if ref.name and ref.name.strip() else None
    if not name:
        ext = _IMAGE_EXT.get(kind) or mimetypes.guess_extension(kind) or ".bin"
        name = f"{'image' if kind.startswith('image/') else 'file'}-{n}{ext}"
    return tab.Attachment(name=name[:200], content_type=kind, data_url=f"data:{kind};base64,{data.strip()}")


def attachments(refs: tuple[ImageRef, ...]) -> list[tab.Attachment]:
    return [attachment(ref, i + 1) for i, ref in enumerate(refs)]


def create_task(turns: list[Turn], model: Model, settings: ArenaSettings) -> tuple[tab.Task, conversation.Prompt]:
    """A new conversation for the whole history; the prompt's images still to be resolved to data URLs."""
    prompt = conversation.flatten(turns, merge_system=settings.tavern_mode)
    mode = settings.mode
    if mode != "battle" and model.model_id is None:
        raise InvalidRequest(f"models.json gives '{model.name}' no model id (null): in arena_mode {mode!r} the site "
                             "needs one. Run `arenahub bridge update-models`, or use a battle mode.", param="model",
                             code="model_without_id")
    if mode == "battle":
        a_id, b_id = None, None
    elif mode == "side-by-side":
        if settings.side_by_side_model is None:
            raise ValueError("side-by-side needs side_by_side_model")
        a_id, b_id = model.model_id, settings.side_by_side_model.model_id
    else:
        a_id, b_id = model.model_id, None
    task = tab.Task(call="create", mode=mode, modality=model.modality, model_a_id=a_id, model_b_id=b_id,  # type: ignore[arg-type]
                    content=prompt.content)
    return task, prompt


def follow_up_task(new_turns: list[Turn], model: Model, settings: ArenaSettings,
                   evaluation_id: str) -> tuple[tab.Task, conversation.Prompt]:
    prompt = conversation.flatten(new_turns, follow_up=True)
    task = tab.Task(call="follow_up", mode=settings.mode, modality=model.modality,  # type: ignore[arg-type]
                    content=prompt.content, evaluation_id=evaluation_id)
    return task, prompt


# --- The 2025 retry path (legacy mode) -----------------------------------------------------------

def retry_task(turns: list[Turn], model: Model, endpoint: Endpoint, *, tavern_mode: bool,
               bypass: bool) -> tab.Task:
    """The 2025 body's messages, one per OpenAI message (roles kept, tool turns as user turns).

    The turns' images must be data URLs already (the bridge downloads links first).
    """
    if tavern_mode:
        turns = conversation.merge_systems(turns)
    messages: list[tab.LegacyMessage] = []
    n = 0
    for t in turns:
        text = t.text.replace("\x00image\x00", "").strip("\n")
        if t.role == "tool_result":
            text = f"[tool result{f' {t.label}' if t.label else ''}]\n{text}"
        role = "user" if t.role == "tool_result" else t.role
        if role == "user" and not text.strip():
            text = " "  # the site fails on an empty user turn
        files = [attachment(ref, n + i + 1) for i, ref in enumerate(t.images)]
        n += len(files)
        messages.append(tab.LegacyMessage(role=role, content=text, attachments=files))  # type: ignore[arg-type]
    messages = _image_bypass(messages)
    if bypass and not model.image:
        messages.append(tab.LegacyMessage(role="user", content=" "))  # an empty user turn after the conversation
    for m in messages:
        m.position = endpoint.battle_target if endpoint.mode == "battle" else ("b" if m.role == "system" else "a")
    return tab.Task(call="retry", session_id=endpoint.session_id, message_id=endpoint.message_id,
                    messages=messages, model_id=None if endpoint.mode == "battle" else model.model_id,
                    modality=model.modality)  # type: ignore[arg-type]


def _image_bypass(messages: list[tab.LegacyMessage]) -> list[tab.LegacyMessage]:
    """A last user turn ending in ``--bypass`` with images: the images move to an empty assistant turn before it
    (what LMArenaBridge does to get images past the site's check of user uploads)."""
    last = messages[-1]
    images = [a for a in last.attachments if a.content_type.startswith("image/")]
    if last.role != "user" or not images or not last.content.rstrip().endswith(IMAGE_BYPASS_FLAG):
        return messages
    last.content = last.content.rstrip()[: -len(IMAGE_BYPASS_FLAG)].strip() or " "
    last.attachments = [a for a in last.attachments if a not in images]
    out = [*messages[:-1], tab.LegacyMessage(role="assistant", content="", attachments=images), last]
    if out[0].role == "assistant":
        out.insert(0, tab.LegacyMessage(role="user", content=" "))
    return out
