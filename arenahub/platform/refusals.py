"""Why the platform last refused a client or closed its connection: what the dashboard shows.

A refusal is recorded for a registered client only (a hello naming an unknown client id leaves
nothing), at most one per client: the last. The platform keeps them in memory and persists each
into ``clients.last_stats`` under ``STORED_KEY``, so another process on the same database, or
this one after a restart, shows it too. Messages are the platform's own texts: they never carry
the key a client offered.

Codes: ``invalid_credentials`` (a wrong or regenerated key, at connect or while connected),
``client_disabled``, ``client_deleted``, ``connection_replaced`` (the client connected again: a
reconnect, or a second copy of it), ``client_id_in_use`` (a copy that was replaced stands by),
``missed_heartbeats`` and ``protocol_error`` (too many malformed frames). Maintenance is not a
refusal: the client stays connected.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

STORED_KEY = "last_refusal"


@dataclass(frozen=True)
class Refusal:
    code: str
    message: str
    at: dt.datetime  # aware, UTC

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "at": self.at.isoformat()}

    @classmethod
    def from_stored(cls, last_stats: Any) -> Refusal | None:
        """The refusal kept in a client's ``last_stats``; None when there is none (or it is unreadable)."""
        value = last_stats.get(STORED_KEY) if isinstance(last_stats, dict) else None
        if not isinstance(value, dict):
            return None
        try:
            at = dt.datetime.fromisoformat(value["at"])
            return cls(str(value["code"]), str(value["message"]), at if at.tzinfo else at.replace(tzinfo=dt.UTC))
        except (KeyError, TypeError, ValueError):
            return None


def latest(*found: Refusal | None) -> Refusal | None:
    """The most recent of several (the one in memory, the one stored by another process)."""
    known = [r for r in found if r is not None]
    return max(known, key=lambda r: r.at) if known else None


class RefusalBook:
    """The last refusal of each registered client, in memory. Bounded: the caller records only
    clients it knows are registered and forgets deleted ones."""

    def __init__(self) -> None:
        self._last: dict[str, Refusal] = {}

    def record(self, client_id: str, code: str, message: str, at: dt.datetime | None = None) -> Refusal:
        refusal = Refusal(code, message, at or dt.datetime.now(dt.UTC))
        self._last[client_id] = refusal
        return refusal

    def get(self, client_id: str) -> Refusal | None:
        return self._last.get(client_id)

    def forget(self, client_id: str) -> None:
        self._last.pop(client_id, None)

    def client_ids(self) -> set[str]:
        return set(self._last)

    def __len__(self) -> int:
        return len(self._last)
