"""The values LMArena's ids come as: a (session, message) pair to retry and a models.json entry."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal, TypeGuard

Mode = Literal["direct_chat", "battle"]
Position = Literal["a", "b"]
MODES: tuple[Mode, ...] = ("direct_chat", "battle")
POSITIONS: tuple[Position, ...] = ("a", "b")

_UUID = re.compile(r"(?i)[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def is_uuid(value: object) -> TypeGuard[str]:
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


ModelKind = Literal["text", "image", "search"]
MODEL_KINDS: tuple[ModelKind, ...] = ("text", "image", "search")


@dataclass(frozen=True)
class Model:
    """A models.json entry: ``"<uuid>"`` (text), ``"<uuid>:image"``, ``"<uuid>:search"``, or ``"null:image"``."""

    name: str
    model_id: str | None
    kind: ModelKind = "text"

    @property
    def image(self) -> bool:
        return self.kind == "image"

    @property
    def modality(self) -> str:
        """The ``modality`` of a conversation with this model: chat, image or search."""
        return "chat" if self.kind == "text" else self.kind

    @classmethod
    def parse(cls, name: str, value: Any) -> Model:
        """Read one models.json value; ValueError says what is wrong with it and how to write it."""
        if value is None:
            return cls(name, None)
        if not isinstance(value, str):
            # ValueError for every bad value: callers catch one type.
            raise ValueError(f'must be a string like "<uuid>" or "<uuid>:image", got {value!r}')
        ident, _, kind = (s.strip() for s in value.partition(":"))
        kind = kind.lower() or "text"
        if kind not in MODEL_KINDS:
            raise ValueError(f'has type {kind!r}: write "<model uuid>" for a text model, "<model uuid>:image" or '
                             '"<model uuid>:search"')
        if ident.lower() == "null":
            return cls(name, None, kind)
        if not is_uuid(ident):
            raise ValueError(f"{ident!r} is not an arena.ai model id (a UUID, or null); "
                             "`arenahub bridge update-models` writes the current ones")
        return cls(name, ident, kind)

    def to_value(self) -> str:
        return (self.model_id or "null") + ("" if self.kind == "text" else f":{self.kind}")
