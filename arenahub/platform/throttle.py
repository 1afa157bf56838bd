"""Failed sign-ins, counted per client address and across all addresses (sliding windows).

After ``per_address`` failures from one address within ``address_window`` seconds, that address
waits; after ``overall`` failures from all addresses within ``overall_window`` seconds, everybody
waits, so spraying from many addresses is slowed too. Successful sign-ins are not counted.
Kept in memory: each platform process counts its own failures.
"""

from __future__ import annotations

import math
from collections import deque


class SignInThrottle:
    def __init__(self, *, per_address: int = 5, address_window: float = 15 * 60,
                 overall: int = 100, overall_window: float = 60) -> None:
        self.per_address = per_address
        self.address_window = address_window
        self.overall = overall
        self.overall_window = overall_window
        self._by_address: dict[str, deque[float]] = {}
        self._all: deque[float] = deque()

    def retry_after(self, address: str, now: float) -> int:
        """Seconds this address must wait before trying again (0: it may try now)."""
        self._expire(now)
        wait = 0.0
        mine = self._by_address.get(address)
        if mine is not None and len(mine) >= self.per_address:
            wait = mine[-self.per_address] + self.address_window - now
        if len(self._all) >= self.overall:
            wait = max(wait, self._all[-self.overall] + self.overall_window - now)
        return math.ceil(wait) if wait > 0 else 0

    def failed(self, address: str, now: float) -> None:
        self._expire(now)
        self._by_address.setdefault(address, deque()).append(now)
        self._all.append(now)

    def _expire(self, now: float) -> None:
        while self._all and self._all[0] <= now - self.overall_window:
            self._all.popleft()
        for address in [a for a, times in self._by_address.items() if times[0] <= now - self.address_window]:
            times = self._by_address[address]
            while times and times[0] <= now - self.address_window:
                times.popleft()
            if not times:
                del self._by_address[address]
        # Memory stays bounded: an address holds at most per_address + a few recent times.
        for times in self._by_address.values():
            while len(times) > self.per_address:
                times.popleft()
