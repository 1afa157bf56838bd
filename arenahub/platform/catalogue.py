"""The operator's model catalogue: which model names the platform offers, and which clients may serve
each. Pure: what is stored (storage/catalogue_store.py) is handed in.

A client says which models it serves, and a client is a stranger: one that claims ``gpt-4o`` would
get that traffic. With the catalogue on (the live setting ``model_catalogue``), a client serves a
model only when the model is listed and the client may serve it: every client (``any_client``) or
one the operator approved. What a client offers beyond that waits for the operator (``pending``):
listed for approval, never shown to consumers. An offer the operator refused stays refused.

Off (the default), every model a registered client offers is served, within the protocol's bounds.

A name the operator cannot write (empty, longer than 200 characters, or with control characters: see
``nameable``) is never served with the catalogue on, and never waits for approval.

``describe`` is what the operator reads of it (the admin API's ``GET /api/admin/catalogue`` and
``arenahub admin models list``).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

MAX_NAME = 200  # as frames.MAX_MODEL_NAME: the longest name a client may offer
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # C0, DEL and C1


def nameable(model: str) -> bool:
    """Whether the operator can list ``model`` (and approve or refuse a client for it): 1 to 200
    characters, no control characters."""
    return 0 < len(model) <= MAX_NAME and not _CONTROL.search(model)


@dataclass(frozen=True)
class Listing:
    """One model the platform offers."""

    model: str
    any_client: bool = False  # every client that offers it may serve it
    approved: frozenset[str] = frozenset()  # clients the operator approved for it
    refused: frozenset[str] = frozenset()  # clients the operator refused for it (never pending again)

    def allows(self, client_id: str) -> bool:
        return client_id not in self.refused and (self.any_client or client_id in self.approved)


@dataclass
class ModelCatalogue:
    enabled: bool = False
    listings: dict[str, Listing] = field(default_factory=dict)
    # Offers refused for models not listed (a refusal must hold whether or not the model is listed).
    refused: frozenset[tuple[str, str]] = frozenset()  # (client_id, model)

    def allows(self, client_id: str, model: str) -> bool:
        """Whether ``client_id`` may serve ``model`` to consumers now."""
        if not self.enabled:
            return True
        listing = self.listings.get(model)
        return listing is not None and listing.allows(client_id)

    def served(self, client_id: str, offered: Iterable[str]) -> set[str]:
        """Of what a client offers, what it serves to consumers."""
        if not self.enabled:
            return set(offered)
        return {m for m in offered if self.allows(client_id, m)}

    def pending(self, client_id: str, offered: Iterable[str]) -> list[str]:
        """What a client offers that waits for the operator: not allowed, and not refused."""
        if not self.enabled:
            return []
        out = []
        for model in offered:
            if not nameable(model):
                continue  # never served, and nothing the operator could approve
            listing = self.listings.get(model)
            refused = (client_id, model) in self.refused or (listing is not None and client_id in listing.refused)
            if not refused and not self.allows(client_id, model):
                out.append(model)
        return sorted(out)

    def offered_to_consumers(self, model: str) -> bool:
        """Whether consumers may ask for ``model`` at all (with the catalogue on: it is listed)."""
        return not self.enabled or model in self.listings


@dataclass(frozen=True)
class Offerer:
    """A registered client as the operator's view needs it: what it offers (its live session's claim,
    else the one stored at its last connection) and, when it is connected here, what it serves now."""

    client_id: str
    name: str
    offered: Collection[str]
    serving: Collection[str] | None = None  # None: not connected here


PENDING_SHOWN = 1_000  # offers listed at most (pending_total counts them all)


def listing_view(listing: Listing, serving: Iterable[str]) -> dict[str, Any]:
    """One listed model as the operator reads it; ``serving``: the connected clients serving it now."""
    return {"model": listing.model, "any_client": listing.any_client, "approved": sorted(listing.approved),
            "refused": sorted(listing.refused), "serving": sorted(serving)}


def describe(catalogue: ModelCatalogue, clients: Iterable[Offerer], *, only: str | None = None) -> dict[str, Any]:
    """The catalogue as the operator reads it: ``enabled``; ``models``, each listed model as
    ``listing_view`` shows it; ``pending``, the offers that wait for a decision (``client_id``,
    ``client_name``, ``model``; with the catalogue off, those that would wait once it is on), by model,
    at most ``PENDING_SHOWN`` of ``pending_total``; ``refused``, the refused offers of models that are
    not listed; and ``client_names`` of the client ids named. ``only``: the offers (pending and
    refused) of that client only."""
    clients = list(clients)
    names = {c.client_id: c.name for c in clients}
    asking = replace(catalogue, enabled=True)  # what waits, whether or not the catalogue is on now
    pending = sorted((model, c.name, c.client_id) for c in clients if only in (None, c.client_id)
                     for model in asking.pending(c.client_id, c.offered))
    shown = pending[:PENDING_SHOWN]
    refused = sorted(((client_id, model) for client_id, model in catalogue.refused if only in (None, client_id)),
                     key=lambda offer: (offer[1], offer[0]))
    models = [listing_view(catalogue.listings[model], (c.client_id for c in clients
                                                       if c.serving is not None and model in c.serving))
              for model in sorted(catalogue.listings)]
    named = {client_id for view in models for key in ("approved", "refused", "serving") for client_id in view[key]}
    named.update(client_id for _, _, client_id in shown)
    named.update(client_id for client_id, _ in refused)
    return {
        "enabled": catalogue.enabled, "models": models,
        "pending": [{"client_id": c, "client_name": n, "model": m} for m, n, c in shown],
        "pending_total": len(pending),
        "refused": [{"client_id": c, "client_name": names.get(c), "model": m} for c, m in refused],
        "client_names": {client_id: names[client_id] for client_id in sorted(named) if client_id in names},
    }
