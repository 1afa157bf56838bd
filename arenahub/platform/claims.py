"""What clients claimed to use, beside what the platform counted: kept for audit, never billed.

A client reports usage with each answer; the platform bills its own count of what it relayed. A claim
that differs much from the count (see ``Exchange.claim_gap``) is noted here per client, for the
client's page in the admin API and dashboard, and counted in the metrics. Bounded: one small entry per
client, and only the clients a gap was seen for.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ClaimGaps:
    count: int = 0
    last: dict[str, Any] = field(default_factory=dict)


class UsageClaims:
    def __init__(self, max_clients: int = 100_000) -> None:
        self._gaps: dict[str, ClaimGaps] = {}
        self.max_clients = max_clients

    def gap(self, client_id: str, claimed: dict[str, int], counted: dict[str, int]) -> None:
        entry = self._gaps.get(client_id)
        if entry is None:
            if len(self._gaps) >= self.max_clients:
                return
            entry = self._gaps[client_id] = ClaimGaps()
        entry.count += 1
        entry.last = {"claimed": dict(claimed), "counted": {k: counted[k] for k in ("prompt_tokens",
                                                                                     "completion_tokens")},
                      "at": time.time()}

    def view(self, client_id: str) -> dict[str, Any] | None:
        """``{"gaps": n, "last": {"claimed", "counted", "at"}}`` for the client's page, or None when it has none."""
        entry = self._gaps.get(client_id)
        return None if entry is None else {"gaps": entry.count, "last": entry.last}

    def forget(self, client_id: str) -> None:
        self._gaps.pop(client_id, None)
