"""The model list the site embeds in its page, and which modality each model can answer.

A model is a msgspec struct so that a model list given to ``create_app``, ``--models`` or
``POST /__sim/models`` is checked once, on the way in, with a clear error; the page then renders it
in the field order the real site uses.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import msgspec

from arenahub.tools.arena_sim.checks import is_uuid

Modality = Literal["chat", "image", "search", "webdev", "video"]
MODALITIES: tuple[str, ...] = ("chat", "image", "search", "webdev", "video")


class Capabilities(msgspec.Struct, forbid_unknown_fields=True):
    outputCapabilities: dict[str, Any]
    inputCapabilities: dict[str, Any] = msgspec.field(default_factory=lambda: {"text": True})


class Model(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One entry of ``initialModels``. Only ``id``, ``publicName`` and ``capabilities`` are required."""

    id: str
    name: str = ""
    publicName: str
    displayName: str = ""
    organization: str = ""
    provider: str = ""
    userSelectable: bool = True
    capabilities: Capabilities
    rankByModality: dict[str, int] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        if not is_uuid(self.id):
            raise ValueError(f"model id must be a uuid, got {self.id!r}")
        self.id = self.id.lower()
        self.name = self.name or self.publicName
        self.displayName = self.displayName or self.publicName

    @property
    def outputs(self) -> dict[str, Any]:
        return self.capabilities.outputCapabilities

    def supports(self, modality: str) -> bool:
        """The sim answers text (chat, webdev), text with citations (search) and images; never video."""
        if modality in ("chat", "webdev"):
            return bool(self.outputs.get("text"))
        if modality == "search":
            return bool(self.outputs.get("text")) and bool(self.outputs.get("search"))
        if modality == "image":
            return bool(self.outputs.get("image"))
        return False


def fixed_uuid7(name: str, ms: int) -> str:
    """A UUIDv7 that is the same on every run: timestamp ``ms``, the rest from a hash of ``name``."""
    raw = bytearray(ms.to_bytes(6, "big") + hashlib.sha256(name.encode()).digest()[:10])
    raw[6] = 0x70 | (raw[6] & 0x0F)
    raw[8] = 0x80 | (raw[8] & 0x3F)
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_TEXT = {"text": True}
_DEFAULTS: tuple[tuple[str, str, str, dict[str, Any], bool, bool], ...] = (
    # name, displayName, organization, outputs, image input, user selectable
    ("gpt-5-high", "GPT-5 (high)", "openai", _TEXT, False, True),
    ("claude-opus-4-1", "Claude Opus 4.1", "anthropic", _TEXT, True, True),
    ("gemini-2.5-pro", "Gemini 2.5 Pro", "google", _TEXT, True, True),
    ("gemini-2.5-pro-grounding", "Gemini 2.5 Pro (grounding)", "google", {"text": True, "search": True}, True, True),
    ("imagen-4.0-generate", "Imagen 4.0", "google", {"image": {"aspectRatios": ["1:1"]}}, False, True),
    ("veo-3", "Veo 3", "google", {"video": {"aspectRatios": ["16:9"], "durations": [8]}}, True, True),
    ("internal-test-model", "Internal test model", "arena", _TEXT, False, False),
)


def default_models() -> list[Model]:
    """The seven default models, with fixed UUIDv7 ids (2025-08 timestamps)."""
    models = []
    for i, (name, display, org, outputs, image_in, selectable) in enumerate(_DEFAULTS):
        modality = "image" if "image" in outputs else "video" if "video" in outputs else "text"
        models.append(Model(
            id=fixed_uuid7("arena-sim/" + name, 1_754_000_000_000 + i * 1_000), name=name, publicName=name,
            displayName=display, organization=org, provider=org, userSelectable=selectable,
            capabilities=Capabilities(inputCapabilities={"text": True, "image": image_in}, outputCapabilities=outputs),
            rankByModality={modality: i + 1}))
    return models


def decode_models(items: object) -> list[Model]:
    """Models from JSON-like data: a list, or ``{"models": [...]}``; ValueError names the bad one."""
    if isinstance(items, Mapping) and set(items) == {"models"}:
        items = items["models"]
    if not isinstance(items, Sequence) or isinstance(items, str | bytes):
        raise TypeError('models must be a list, or {"models": [...]}')
    models = []
    for i, item in enumerate(items):
        try:
            models.append(msgspec.convert(item, Model))
        except msgspec.ValidationError as exc:
            raise ValueError(f"model {i}: {exc}") from None
    ids = [m.id for m in models]
    if len(set(ids)) != len(ids):
        raise ValueError("model ids must be unique")
    return models


def find(models: Iterable[Model], model_id: str | None) -> Model | None:
    return next((m for m in models if model_id is not None and m.id == model_id.lower()), None)
