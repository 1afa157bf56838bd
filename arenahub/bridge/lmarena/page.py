"""The model list in the arena.ai page, and models.json written from it (``update-models``)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from arenahub.bridge.lmarena import site
from arenahub.bridge.lmarena.failures import ModelListNotFound
from arenahub.bridge.lmarena.jsonscan import enclosing_object
from arenahub.bridge.lmarena.models import is_uuid

_NEXT_PUSH = re.compile(r'self\.__next_f\.push\(\[\s*\d+\s*,\s*("(?:[^"\\]|\\.)*")\s*\]\)', re.DOTALL)
_NAME = re.compile(r'"' + site.MODEL_NAME_KEY + r'"\s*:')


@dataclass(frozen=True)
class PageModel:
    """One entry of the page's ``initialModels``."""

    name: str  # publicName: what models.json and the API call it
    model_id: str
    display_name: str
    kind: str | None  # "text", "image" or "search"; None for what chat cannot serve (video)
    selectable: bool  # a person can pick it on the site

    @property
    def value(self) -> str:
        """The models.json value: ``"<uuid>"``, ``"<uuid>:image"`` or ``"<uuid>:search"``."""
        return self.model_id + ("" if self.kind == "text" else f":{self.kind}")


def page_models(text: str) -> list[PageModel]:
    """Every model the page lists, in page order, each name once (the first wins).

    ``text`` is the page's HTML, or its Next.js flight data already joined (what the userscript
    sends). In the HTML the models are JSON objects (``id``, ``publicName``, ``displayName``,
    ``capabilities``, ``userSelectable``) inside ``self.__next_f.push([1, "..."])`` strings.
    """
    flight = []
    for m in _NEXT_PUSH.finditer(text):
        try:
            flight.append(json.loads(m.group(1)))
        except ValueError:
            continue
    found: dict[str, PageModel] = {}
    for source in (text, "".join(flight)):
        _collect(source, found)
    if not found and '\\"publicName\\"' in text:  # escaped JSON outside any flight push
        _collect(text.replace('\\"', '"').replace("\\\\", "\\"), found)
    return list(found.values())


def extract_page_models(text: str) -> dict[str, str]:
    """``{publicName: models.json value}`` of the models a person can select and chat can serve.

    Raises ModelListNotFound when the page lists none (not an arena.ai page, not loaded, or moved).
    """
    models = {m.name: m.value for m in page_models(text) if m.selectable and m.kind is not None}
    if not models:
        raise ModelListNotFound("No model list found in the arena.ai page: the tab may not be on arena.ai (or not "
                                "loaded yet), or the page keeps its models elsewhere now. Reload the tab and retry; "
                                "if it persists, update arenahub.")
    return models


def _collect(text: str, found: dict[str, PageModel]) -> None:
    for m in _NAME.finditer(text):
        obj = enclosing_object(text, m.start(), site.MODEL_NAME_KEY, tries=50, lowest=max(0, m.start() - 20_000))
        if obj is None:
            continue
        name, ident = obj.get(site.MODEL_NAME_KEY), obj.get("id")
        if not (isinstance(name, str) and name.strip() and is_uuid(ident)) or name in found:
            continue
        display = obj.get(site.MODEL_DISPLAY_KEY)
        found[name] = PageModel(name=name, model_id=ident, display_name=display if isinstance(display, str) else name,
                                kind=_output_kind(obj), selectable=obj.get(site.MODEL_SELECTABLE_KEY) is not False)


def _output_kind(model: dict[str, Any]) -> str | None:
    caps = model.get("capabilities")
    out = caps.get("outputCapabilities") if isinstance(caps, dict) else None
    if not isinstance(out, dict) or not out:
        return "text"  # no capability data: a chat model, as on older pages
    def has(kind: str) -> bool:  # a capability is its key: {"image": {}} is an image model
        return out.get(kind) not in (None, False)

    if has("image"):
        return "image"
    if has("search"):
        return "search"
    return "text" if has("text") else None


def models_json_text(page_models: dict[str, str], existing: dict[str, Any] | None = None) -> str:
    """models.json content: the page's models, plus entries of ``existing`` the page does not list
    (a user's own names, such as ``"null:image"`` ones); sorted by name so that updates diff well."""
    merged = {**(existing or {}), **page_models}
    return json.dumps(dict(sorted(merged.items(), key=lambda kv: kv[0].lower())), indent=4, ensure_ascii=False) + "\n"
