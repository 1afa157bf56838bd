"""The model catalogue in the database (tables ``model_catalogue`` and ``model_approvals``)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from arenahub.platform.catalogue import Listing, Offerer
from arenahub.platform.storage.accounts import utcnow
from arenahub.platform.storage.schema import clients, model_approvals, model_catalogue


async def load(engine: AsyncEngine) -> tuple[dict[str, Listing], frozenset[tuple[str, str]]]:
    """The listings, and the refusals of models that are not listed (client id, model)."""
    async with engine.connect() as conn:
        listed = (await conn.execute(sa.select(model_catalogue.c.model, model_catalogue.c.any_client))).all()
        decisions = (await conn.execute(sa.select(model_approvals.c.model, model_approvals.c.client_id,
                                                  model_approvals.c.approved))).all()
    approved: dict[str, set[str]] = {}
    refused: dict[str, set[str]] = {}
    for model, client_id, ok in decisions:
        (approved if ok else refused).setdefault(model, set()).add(client_id)
    listings = {model: Listing(model, bool(any_client), frozenset(approved.get(model, ())),
                               frozenset(refused.get(model, ()))) for model, any_client in listed}
    unlisted = frozenset((client_id, model) for model, clients in refused.items() if model not in listings
                         for client_id in clients)
    return listings, unlisted


async def version(engine: AsyncEngine) -> tuple[object, ...]:
    """Changes whenever the catalogue does (rows added, removed or changed): cheap to poll. The counts
    of open listings and of approvals change with a flip even when the clock went back meanwhile."""
    def yes(column: sa.Column[bool]) -> sa.ColumnElement[int]:
        return sa.func.count().filter(column.is_(True))

    async with engine.connect() as conn:
        a = (await conn.execute(sa.select(sa.func.count(), yes(model_catalogue.c.any_client),
                                          sa.func.max(model_catalogue.c.updated_at)))).one()
        b = (await conn.execute(sa.select(sa.func.count(), yes(model_approvals.c.approved),
                                          sa.func.max(model_approvals.c.decided_at)))).one()
    return (int(a[0]), int(a[1]), int(b[0]), int(b[1]), None if a[2] is None else str(a[2]),
            None if b[2] is None else str(b[2]))


async def list_model(engine: AsyncEngine, model: str, *, any_client: bool) -> bool:
    """Offer ``model`` (or change whether any client may serve it). True when it was not listed before."""
    now = utcnow()
    async with engine.begin() as conn:
        updated = await conn.execute(model_catalogue.update().where(model_catalogue.c.model == model)
                                     .values(any_client=any_client, updated_at=now))
        if updated.rowcount:
            return False
        await conn.execute(model_catalogue.insert().values(model=model, any_client=any_client, created_at=now,
                                                           updated_at=now))
    return True


async def unlist_model(engine: AsyncEngine, model: str) -> bool:
    """Stop offering ``model``; its approvals go with it (its refusals stay). False when it was not listed."""
    async with engine.begin() as conn:
        gone = await conn.execute(sa.delete(model_catalogue).where(model_catalogue.c.model == model))
        await conn.execute(sa.delete(model_approvals).where(model_approvals.c.model == model,
                                                            model_approvals.c.approved.is_(True)))
    return bool(gone.rowcount)


async def decide(engine: AsyncEngine, model: str, client_id: str, *, approved: bool) -> None:
    """Approve ``client_id`` to serve ``model`` (listing the model if it is not), or refuse it."""
    now = utcnow()
    async with engine.begin() as conn:
        if approved:
            listed = (await conn.execute(sa.select(model_catalogue.c.model)
                                         .where(model_catalogue.c.model == model))).first()
            if listed is None:
                await conn.execute(model_catalogue.insert().values(model=model, any_client=False, created_at=now,
                                                                   updated_at=now))
        updated = await conn.execute(model_approvals.update().where(
            model_approvals.c.model == model, model_approvals.c.client_id == client_id)
            .values(approved=approved, decided_at=now))
        if not updated.rowcount:
            await conn.execute(model_approvals.insert().values(model=model, client_id=client_id, approved=approved,
                                                               decided_at=now))


async def forget(engine: AsyncEngine, model: str, client_id: str) -> bool:
    """Take back a decision: the client's offer of ``model`` waits again. False when there was none."""
    async with engine.begin() as conn:
        gone = await conn.execute(sa.delete(model_approvals).where(model_approvals.c.model == model,
                                                                   model_approvals.c.client_id == client_id))
    return bool(gone.rowcount)


async def offerers(engine: AsyncEngine, client_id: str | None = None) -> list[Offerer]:
    """Every registered client (or the one ``client_id``) with the models it offered when it last
    connected or sent a heartbeat (``clients.models``), in the order they were registered."""
    query = sa.select(clients.c.id, clients.c.name, clients.c.models).order_by(clients.c.created_at, clients.c.id)
    if client_id is not None:
        query = query.where(clients.c.id == client_id)
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [Offerer(row.id, row.name, [m for m in row.models or () if isinstance(m, str)]) for row in rows]
