"""Failed sign-ins and wrong credentials, counted per client address (sliding windows).

``SignInThrottle``: after ``per_address`` failures from one address within ``address_window``
seconds, that address waits; after ``overall`` failures from all addresses within
``overall_window`` seconds (None: no such bound), everybody waits, so spraying from many addresses
is slowed too. Successes are not counted. ``CredentialThrottle`` applies one to the API's
credentials: admin tokens, client keys, consumer keys. Kept in memory: each platform process counts
its own failures.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from typing import TypeVar

from arenahub.protocol.errors import ApiError

T = TypeVar("T")


class SignInThrottle:
    def __init__(self, *, per_address: int = 5, address_window: float = 15 * 60,
                 overall: int | None = 100, overall_window: float = 60) -> None:
        self.per_address = per_address
        self.address_window = address_window
        self.overall = overall
        self.overall_window = overall_window
        # Each address's last per_address failures, the address whose last failure is oldest first;
        # all addresses' last ``overall`` failures. Memory stays bounded under any flood.
        self._by_address: OrderedDict[str, deque[float]] = OrderedDict()
        self._all: deque[float] = deque(maxlen=overall or 1)

    def retry_after(self, address: str, now: float) -> int:
        """Seconds this address must wait before trying again (0: it may try now)."""
        self._expire(now)
        wait = 0.0
        mine = self._by_address.get(address)
        if mine is not None and len(mine) >= self.per_address:
            wait = mine[0] + self.address_window - now
        if self.overall is not None and len(self._all) >= self.overall:
            wait = max(wait, self._all[0] + self.overall_window - now)
        return math.ceil(wait) if wait > 0 else 0

    def failed(self, address: str, now: float) -> None:
        self._expire(now)
        times = self._by_address.get(address)
        if times is None:
            times = self._by_address[address] = deque(maxlen=self.per_address)
        else:
            self._by_address.move_to_end(address)
        times.append(now)
        if self.overall is not None:
            self._all.append(now)

    def _expire(self, now: float) -> None:
        while self._all and self._all[0] <= now - self.overall_window:
            self._all.popleft()
        cutoff = now - self.address_window
        while self._by_address:  # an address whose last failure left the window has none left in it
            address, times = next(iter(self._by_address.items()))
            if times[-1] > cutoff:
                break
            del self._by_address[address]


class TooManyFailedCredentials(ApiError):
    status = 429
    type = "rate_limit_exceeded"
    code = "too_many_failed_credentials"


class CredentialThrottle:
    """Wrong credentials offered to the API (an admin token, a client's key, a consumer key: any
    401 from their checks), per client address: after ``per_address`` in ``window`` seconds, that
    address is answered 429 ``too_many_failed_credentials`` with Retry-After, whatever it sends,
    until its oldest failure leaves the window. No bound across addresses: one that many
    addresses share would let a spray lock out every consumer. ``per_address`` 0: no throttle."""

    def __init__(self, *, per_address: int = 30, window: float = 60.0,
                 on_refusal: Callable[[str, bool], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._throttle = SignInThrottle(per_address=per_address, address_window=window, overall=None)
        self._on_refusal = on_refusal
        self._clock = clock

    def check(self, address: str, kind: str) -> None:
        """Raise TooManyFailedCredentials when ``address`` must wait."""
        if not self._throttle.per_address:
            return
        wait = self._throttle.retry_after(address, self._clock())
        if wait:
            if self._on_refusal is not None:
                self._on_refusal(kind, True)
            raise TooManyFailedCredentials(
                f"Too many wrong credentials from your address; try again in {wait} seconds.",
                headers={"Retry-After": str(wait)})

    def failed(self, address: str, kind: str) -> None:
        if self._throttle.per_address:
            self._throttle.failed(address, self._clock())
        if self._on_refusal is not None:
            self._on_refusal(kind, False)

    async def guard(self, address: str, kind: str, check: Callable[[], Awaitable[T]]) -> T:
        """``check()``'s result; a 401 it raises counts against ``address``."""
        self.check(address, kind)
        try:
            return await check()
        except ApiError as err:
            if err.status == 401:
                self.failed(address, kind)
            raise
