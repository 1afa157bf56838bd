"""The model list in the LMArena page source, and models.json written from it (update-models)."""

from __future__ import annotations

import json
import re
from typing import Any

from arenahub.bridge.lmarena.failures import ModelListNotFound
from arenahub.bridge.lmarena.jsonscan import enclosing_object
from arenahub.bridge.lmarena.models import is_uuid

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
    return enclosing_object(text, at, "publicName", tries=50, lowest=max(0, at - 20_000))


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
