"""``/api/admin/catalogue``: the operator's model catalogue (``platform/catalogue.py``): which model
names the platform offers, which clients may serve each, and the clients' offers that wait for a
decision. Every change is stored (``storage/catalogue_store.py``) and applied at once; other platform
processes on the database follow within about a second.

Model names travel in bodies and query strings, never in paths: a name may hold ``/``, ``:`` and ``.``.
Routes are declared in ``api.ROUTES``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Annotated

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from arenahub.platform.admin import fields
from arenahub.platform.admin.client_views import json_response
from arenahub.platform.admin.inputs import json_body, query
from arenahub.platform.admin.state import platform_of
from arenahub.platform.catalogue import MAX_NAME, Listing, Offerer, describe, listing_view
from arenahub.platform.storage import accounts, catalogue_store
from arenahub.protocol.errors import NotFound

if TYPE_CHECKING:
    from arenahub.platform.runtime import Platform

log = logging.getLogger("arenahub.platform.admin")

# What catalogue.nameable allows: what a client may offer (frames.Name), less control characters.
ModelName = Annotated[str, fields.text(r"[^\x00-\x1f\x7f-\x9f]+", f"a model name of 1 to {MAX_NAME} characters "
                                       "without control characters (it may hold '/', ':' and '.')",
                                       min_length=1, max_length=MAX_NAME)]


class CatalogueQuery(msgspec.Struct, forbid_unknown_fields=True):
    client_id: Annotated[fields.Id, msgspec.Meta(description="only this client's offers (pending and refused)")] | \
        None = None


class ModelListing(msgspec.Struct, forbid_unknown_fields=True):
    """List a model (or change a listed one)."""

    model: ModelName
    any_client: Annotated[bool, msgspec.Meta(description="every client that offers it may serve it; false "
                                             "(default): only the clients approved for it")] = False


class ModelQuery(msgspec.Struct, forbid_unknown_fields=True):
    model: ModelName


class Decision(msgspec.Struct, forbid_unknown_fields=True):
    """The operator's decision about a client's offer of a model."""

    model: ModelName
    client_id: fields.Id
    approved: Annotated[bool, msgspec.Meta(description="true: the client may serve it (listing the model if it "
                                           "is not); false: refused, it never waits for approval again")]


class DecisionQuery(msgspec.Struct, forbid_unknown_fields=True):
    model: ModelName
    client_id: fields.Id


def offerers(platform: Platform, stored: list[Offerer]) -> list[Offerer]:
    """The stored claims of each client, with what a client connected here offers and serves now."""
    out = []
    for client in stored:
        session = platform.registry.get(client.client_id)
        if session is not None and not session.closed:
            client = Offerer(client.client_id, client.name, set(session.offered), set(session.models))
        out.append(client)
    return out


def _serving(platform: Platform, model: str) -> list[str]:
    return [s.client_id for s in platform.registry.sessions() if not s.closed and s.serves(model)]


async def show_catalogue(request: Request) -> Response:
    platform = platform_of(request)
    only: CatalogueQuery = query(request, CatalogueQuery)
    await platform.refresh_catalogue()  # a change another process made in the last second shows too
    stored = await catalogue_store.offerers(platform.engine)
    return json_response(describe(platform.catalogue, offerers(platform, stored), only=only.client_id))


async def list_model(request: Request) -> Response:
    platform = platform_of(request)
    body: ModelListing = await json_body(request, ModelListing)
    created = await catalogue_store.list_model(platform.engine, body.model, any_client=body.any_client)
    await platform.refresh_catalogue()
    log.info("model catalogue: %s %s (any client: %s)", body.model, "listed" if created else "changed",
             body.any_client)
    listing = platform.catalogue.listings.get(body.model) or Listing(body.model, body.any_client)
    return JSONResponse({**listing_view(listing, _serving(platform, body.model)), "created": created})


async def unlist_model(request: Request) -> Response:
    platform = platform_of(request)
    model = query(request, ModelQuery).model
    if not await catalogue_store.unlist_model(platform.engine, model):
        raise NotFound(f"The model {model!r} is not listed.", code="model_not_listed")
    await platform.refresh_catalogue()
    log.info("model catalogue: %s unlisted", model)
    return Response(status_code=204)


async def decide(request: Request) -> Response:
    platform = platform_of(request)
    body: Decision = await json_body(request, Decision)
    if await accounts.get_client(platform.engine, body.client_id) is None:
        raise NotFound(f"No client with id {body.client_id!r}.", code="client_not_found")
    await catalogue_store.decide(platform.engine, body.model, body.client_id, approved=body.approved)
    await platform.refresh_catalogue()
    log.info("model catalogue: client %s %s for %s", body.client_id, "approved" if body.approved else "refused",
             body.model)
    session = platform.registry.get(body.client_id)
    serving = session is not None and not session.closed and session.serves(body.model)
    return JSONResponse({"model": body.model, "client_id": body.client_id, "approved": body.approved,
                         "serving": serving})


async def forget(request: Request) -> Response:
    platform = platform_of(request)
    asked: DecisionQuery = query(request, DecisionQuery)
    if not await catalogue_store.forget(platform.engine, asked.model, asked.client_id):
        raise NotFound(f"No decision about client {asked.client_id!r} and the model {asked.model!r}.",
                       code="decision_not_found")
    await platform.refresh_catalogue()
    log.info("model catalogue: the decision about client %s for %s is forgotten", asked.client_id, asked.model)
    return Response(status_code=204)
