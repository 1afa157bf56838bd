"""This instance among the others: the cards of the clients connected here (cluster/clients.py), the
cluster's clients as read from theirs, and a client that connects again to another instance.

With one instance (no Redis) the directory is this process's, and the cluster is this instance.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import msgspec

from arenahub.platform.cluster.clients import ClientCard
from arenahub.platform.cluster.errors import LiveStateUnavailable
from arenahub.platform.cluster.instances import InstanceCard
from arenahub.platform.cluster.live import LiveState
from arenahub.platform.registry import ClientRegistry
from arenahub.platform.tunnel_session import ClientSession

log = logging.getLogger("arenahub.platform.cluster")

CLIENT_TAKEN = "client_taken"  # a client's new connection came to another instance (bus topic)


class Presence:
    def __init__(self, live: LiveState, registry: ClientRegistry, instance_card: Callable[[], InstanceCard],
                 let_go: Callable[[ClientSession, str], object],
                 on_cards: Callable[[list[ClientCard]], None] | None = None,
                 kept_out: Callable[[ClientSession], bool] = lambda _session: False) -> None:
        self.live = live
        self.instance = live.instance
        self._registry = registry
        self._instance_card = instance_card
        self._let_go = let_go  # closes a session whose client connected again elsewhere, telling it why
        self.cards: list[ClientCard] = []  # every instance's clients, read each period
        self.instance_urls: dict[str, str] = {}  # where each live instance is reached
        self._on_cards = on_cards
        # Whether this instance's breaker (or maintenance, or its upstream's limit) keeps work from a client now:
        # the other instances route by its card, as this instance owns that state (cluster/relayed.py).
        self._kept_out = kept_out
        if live.shared:
            live.bus.subscribe(CLIENT_TAKEN, self._taken_elsewhere)

    def card(self, session: ClientSession) -> ClientCard:
        return ClientCard(client_id=session.client_id, instance=self.instance, connection_id=session.connection_id,
                          name=session.name, models=sorted(session.models), capabilities=list(session.capabilities),
                          available=session.available, kept_out=not session.moving and self._kept_out(session),
                          moving=session.moving,
                          draining=session.draining, active=session.active,
                          max_concurrent=session.max_concurrent, connected_at=session.connected_at)

    # -- a client connects, and leaves ------------------------------------------------------------
    async def elsewhere(self, client_id: str) -> ClientCard | None:
        """The client's card when another instance of the cluster holds its connection."""
        if not self.live.shared:
            return None
        try:
            card = await self.live.clients.get(client_id)
        except LiveStateUnavailable:
            return None  # Redis is away: the client serves here (a copy elsewhere is found once it is back)
        return card if card is not None and card.instance != self.instance else None

    async def take_over(self, card: ClientCard, where: str) -> None:
        """A new connection of this client came here: the instance holding the old one lets it go."""
        log.info("client %s connected here from %s while instance %s held it; that instance lets it go",
                 card.client_id, where, card.instance)
        try:
            await self.live.bus.publish(CLIENT_TAKEN, {"client_id": card.client_id,
                                                       "connection_id": card.connection_id, "where": where[:200]})
        except LiveStateUnavailable:
            pass  # its card goes stale, and its heartbeats stop: it is dropped there anyway

    async def claimed(self, session: ClientSession) -> None:
        try:
            await self.live.clients.claim(self.card(session))
        except LiveStateUnavailable:
            log.warning("client %s: could not announce it to the cluster (Redis away); it serves here",
                        session.client_id)

    async def released(self, session: ClientSession) -> None:
        try:
            await self.live.clients.release(session.client_id, session.connection_id)
        except LiveStateUnavailable:
            pass  # its card goes stale by itself

    async def _taken_elsewhere(self, payload: dict[str, Any]) -> None:
        session = self._registry.get(str(payload.get("client_id", "")))
        if session is None or session.closed or session.connection_id != payload.get("connection_id"):
            return
        if payload.get("from") == self.instance:
            return
        if session.moving:  # it was asked to: its answers in flight finish here, then it closes
            log.info("client %s moved to instance %s; %d request(s) in flight finish here", session.client_id,
                     payload.get("from"), session.active)
            return
        where = str(payload.get("where", ""))[:200]
        self._let_go(session, f"this client connected again to instance {payload.get('from')} (from {where}); "
                              "this connection was closed")

    # -- the cluster's clients --------------------------------------------------------------------
    async def publish_loop(self, period: float = 1.0) -> None:
        """Renew the cards of the clients connected here, and read everybody's."""
        while True:
            await asyncio.sleep(period)
            try:
                await self.live.clients.publish([self.card(s) for s in self._registry.sessions() if not s.closed])
                self.cards = await self.live.clients.cards()
                self.instance_urls = {c.id: c.url for c in await self.live.directory.alive() if c.url}
            except LiveStateUnavailable:
                continue  # Redis is away: routing goes on with this instance's clients
            live = [c for c in self.cards if c.instance in self.instance_urls]  # not those of a dead instance
            if self._on_cards is not None:
                self._on_cards(live)

    def models_offered(self) -> set[str]:
        """Models served now by the available clients of the cluster."""
        models = self._registry.models()
        for card in self.cards:
            if card.available and card.instance != self.instance:
                models.update(card.models)
        return models

    async def health(self, *, changes: str) -> dict[str, object]:
        """The cluster as this instance sees it: its peers (with their cards) and whether Redis answers.
        ``changes``: how this instance learns what the admin changed ("notified" or "polled")."""
        if not self.live.shared:
            return {"shared_state": "in_process", "changes": changes,
                    "instances": [msgspec.to_builtins(self._instance_card())]}
        try:
            ready = await self.live.credit_ready()
        except LiveStateUnavailable:
            return {"shared_state": "unreachable", "changes": changes, "instances": []}
        cards = await self.live.directory.alive()
        return {"shared_state": "ready" if ready else "loading", "changes": changes,
                "instances": [msgspec.to_builtins(c) for c in cards]}
