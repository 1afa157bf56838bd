"""When and where the client connects again: exponential backoff, and the platform's URLs in turn."""

from __future__ import annotations

import random


class Backoff:
    """Exponential backoff with equal jitter: half the delay fixed, half random."""

    def __init__(self, base: float = 0.5, cap: float = 30.0) -> None:
        self.base, self.cap, self.failures = base, cap, 0

    def next_delay(self) -> float:
        delay = min(self.cap, self.base * (2 ** self.failures))
        self.failures += 1
        return delay / 2 + random.uniform(0, delay / 2)

    def reset(self) -> None:
        self.failures = 0


class PlatformUrls:
    """Which of the platform's URLs to connect to (a list names the instances of a cluster): each client
    starts at a random one, so that clients spread, and moves to the next when it is lost."""

    def __init__(self, urls: tuple[str, ...]) -> None:
        self.urls = urls
        self._index = random.randrange(len(urls))
        self._failed_in_a_row = 0  # once every URL failed in a row, the client backs off

    @property
    def current(self) -> str:
        return self.urls[self._index % len(self.urls)]

    def connected(self) -> None:
        self._failed_in_a_row = 0

    def next_after_loss(self, was_connected: bool) -> float | None:
        """Move to the next URL; the delay before trying it (a moment, while some URL has not failed
        since the last connection), or None when all have: then the caller backs off."""
        if len(self.urls) < 2:
            return None
        self._index = (self._index + 1) % len(self.urls)
        self._failed_in_a_row = 0 if was_connected else self._failed_in_a_row + 1
        return random.uniform(0.1, 0.5) if self._failed_in_a_row < len(self.urls) else None
