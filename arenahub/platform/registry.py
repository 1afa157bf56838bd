"""Live state: which clients are connected to this platform instance right now.

Behind a small interface so that several platform instances can later share it (Redis).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

from arenahub.platform.tunnel_session import ClientSession


def served_models(sessions: Iterable[ClientSession]) -> set[str]:
    """The models served by the sessions that can answer now (``ClientSession.available``)."""
    out: set[str] = set()
    for s in sessions:
        if s.available:
            out |= s.models
    return out


class ClientRegistry(Protocol):
    def add(self, session: ClientSession) -> ClientSession | None:
        """Register a connected client; returns the session it replaces, if any."""

    def remove(self, session: ClientSession) -> None: ...

    def get(self, client_id: str) -> ClientSession | None: ...

    def sessions(self) -> Iterator[ClientSession]: ...

    def models(self) -> set[str]:
        """Models served by connected, healthy clients."""

    def __len__(self) -> int: ...


class LocalClientRegistry:
    """The registry of one platform process."""

    def __init__(self) -> None:
        self._sessions: dict[str, ClientSession] = {}

    def add(self, session: ClientSession) -> ClientSession | None:
        old = self._sessions.get(session.client_id)
        self._sessions[session.client_id] = session
        return old

    def remove(self, session: ClientSession) -> None:
        if self._sessions.get(session.client_id) is session:
            del self._sessions[session.client_id]

    def get(self, client_id: str) -> ClientSession | None:
        return self._sessions.get(client_id)

    def sessions(self) -> Iterator[ClientSession]:
        return iter(list(self._sessions.values()))

    def models(self) -> set[str]:
        return served_models(self._sessions.values())

    def __len__(self) -> int:
        return len(self._sessions)


class ClusterView:
    """What the dispatcher routes over: this instance's clients, then the other instances' (cluster/peers.py).
    Adding, removing and looking up are this instance's own."""

    def __init__(self, local: LocalClientRegistry, remote: Callable[[], Iterator[ClientSession]]) -> None:
        self._local = local
        self._remote = remote

    def add(self, session: ClientSession) -> ClientSession | None:
        return self._local.add(session)

    def remove(self, session: ClientSession) -> None:
        self._local.remove(session)

    def get(self, client_id: str) -> ClientSession | None:
        return self._local.get(client_id)

    def sessions(self) -> Iterator[ClientSession]:
        local = list(self._local.sessions())
        here = {s.client_id for s in local if not s.moving}  # one that moves away: its new connection serves
        return iter(local + [s for s in self._remote() if s.client_id not in here])

    def models(self) -> set[str]:
        return served_models(self.sessions())

    def __len__(self) -> int:
        return len(self._local)
