"""Failed sign-ins and wrong credentials, counted per client address (sliding windows).

A ``ThrottleRule``: after ``per_address`` failures from one address within ``address_window`` seconds,
that address waits; after ``overall`` failures from all addresses within ``overall_window`` seconds
(None: no such bound), everybody waits, so spraying from many addresses is slowed too. Successes are
not counted. ``SignInThrottle`` is the arithmetic, pure and in memory.

Where the failures are counted is a ``ThrottleStore``: this process (``LocalThrottleStore``), or Redis
for every instance of a cluster (``throttle_redis.py``). ``DashboardAuth`` keeps one for sign-ins;
``CredentialThrottle`` applies one to the API's credentials: admin tokens, client keys, consumer keys.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Protocol, TypeVar

from arenahub.protocol.errors import ApiError

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ThrottleRule:
    """``per_address`` 0: no bound per address; ``overall`` None: no bound across addresses."""

    per_address: int
    address_window: float
    overall: int | None = None
    overall_window: float = 60.0

    def __post_init__(self) -> None:
        if self.per_address < 0 or (self.overall is not None and self.overall < 1):
            raise ValueError("per_address must be at least 0 and overall at least 1 (or None)")
        if self.address_window <= 0 or self.overall_window <= 0:
            raise ValueError("the windows must be longer than 0 seconds")

    @property
    def counts(self) -> bool:
        return bool(self.per_address) or self.overall is not None


# Dashboard sign-ins (and the current password when it is changed).
SIGN_INS = ThrottleRule(per_address=5, address_window=15 * 60, overall=100, overall_window=60)
# Wrong credentials offered to the API. No bound across addresses: one that many addresses share would
# let a spray lock out every consumer.
CREDENTIALS = ThrottleRule(per_address=30, address_window=60.0)


def wait_seconds(rule: ThrottleRule, now: float, mine: float | None, everyone: float | None) -> int:
    """Seconds to wait (0: none), from the oldest of the address's last ``per_address`` failures and the
    oldest of everybody's last ``overall`` failures (None: there were fewer)."""
    wait = 0.0
    if mine is not None:
        wait = mine + rule.address_window - now
    if everyone is not None:
        wait = max(wait, everyone + rule.overall_window - now)
    return math.ceil(wait) if wait > 0 else 0


class SignInThrottle:
    def __init__(self, rule: ThrottleRule = SIGN_INS) -> None:
        self.rule = rule
        # Each address's last per_address failures, the address whose last failure is oldest first;
        # all addresses' last ``overall`` failures. Memory stays bounded under any flood.
        self._by_address: OrderedDict[str, deque[float]] = OrderedDict()
        self._all: deque[float] = deque(maxlen=rule.overall or 1)

    def retry_after(self, address: str, now: float) -> int:
        """Seconds this address must wait before trying again (0: it may try now)."""
        self._expire(now)
        rule = self.rule
        times = self._by_address.get(address)
        mine = times[0] if rule.per_address and times is not None and len(times) >= rule.per_address else None
        everyone = self._all[0] if rule.overall is not None and len(self._all) >= rule.overall else None
        return wait_seconds(rule, now, mine, everyone)

    def failed(self, address: str, now: float) -> None:
        self._expire(now)
        if self.rule.per_address:
            times = self._by_address.get(address)
            if times is None:
                times = self._by_address[address] = deque(maxlen=self.rule.per_address)
            else:
                self._by_address.move_to_end(address)
            times.append(now)
        if self.rule.overall is not None:
            self._all.append(now)

    def _expire(self, now: float) -> None:
        while self._all and self._all[0] <= now - self.rule.overall_window:
            self._all.popleft()
        cutoff = now - self.rule.address_window
        while self._by_address:  # an address whose last failure left the window has none left in it
            address, times = next(iter(self._by_address.items()))
            if times[-1] > cutoff:
                break
            del self._by_address[address]


class ThrottleStore(Protocol):
    """Where the failures of one ``ThrottleRule`` are counted: this process, or a store shared by several."""

    async def retry_after(self, address: str) -> int:
        """Seconds ``address`` must wait before trying again (0: it may try now)."""
        ...

    async def failed(self, address: str) -> None: ...


class LocalThrottleStore:
    """``SignInThrottle`` with a clock: the store of a platform that runs as one process."""

    def __init__(self, rule: ThrottleRule = SIGN_INS, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.throttle = SignInThrottle(rule)

    @property
    def rule(self) -> ThrottleRule:
        return self.throttle.rule

    async def retry_after(self, address: str) -> int:
        return self.throttle.retry_after(address, self.clock())

    async def failed(self, address: str) -> None:
        self.throttle.failed(address, self.clock())


class TooManyFailedCredentials(ApiError):
    status = 429
    type = "rate_limit_exceeded"
    code = "too_many_failed_credentials"


class CredentialThrottle:
    """Wrong credentials offered to the API (an admin token, a client's key, a consumer key: any 401
    from their checks), per client address: after the rule's ``per_address`` in its window, that
    address is answered 429 ``too_many_failed_credentials`` with Retry-After, whatever it sends, until
    its oldest failure leaves the window. The store's rule is ``CREDENTIALS`` with the configured
    ``per_address`` (0: no throttle); without a store, this process counts, allowing ``per_address``."""

    def __init__(self, store: ThrottleStore | None = None, *, per_address: int | None = None,
                 on_refusal: Callable[[str, bool], None] | None = None) -> None:
        if store is not None and per_address is not None:
            raise TypeError("per_address is the store's rule: give one or the other")
        if store is None:
            rule = CREDENTIALS if per_address is None else replace(CREDENTIALS, per_address=per_address)
            store = LocalThrottleStore(rule)
        self.store = store
        self._on_refusal = on_refusal

    async def check(self, address: str, kind: str) -> None:
        """Raise TooManyFailedCredentials when ``address`` must wait."""
        wait = await self.store.retry_after(address)
        if wait:
            if self._on_refusal is not None:
                self._on_refusal(kind, True)
            raise TooManyFailedCredentials(
                f"Too many wrong credentials from your address; try again in {wait} seconds.",
                headers={"Retry-After": str(wait)})

    async def failed(self, address: str, kind: str) -> None:
        await self.store.failed(address)
        if self._on_refusal is not None:
            self._on_refusal(kind, False)

    async def guard(self, address: str, kind: str, check: Callable[[], Awaitable[T]]) -> T:
        """``check()``'s result; a 401 it raises counts against ``address``."""
        await self.check(address, kind)
        try:
            return await check()
        except ApiError as err:
            if err.status == 401:
                await self.failed(address, kind)
            raise
