"""Failed sign-ins and wrong credentials counted in Redis, for every instance of a cluster at once.

``RedisThrottleStore`` decides as ``SignInThrottle`` (throttle.py) does: each address's last
``per_address`` failure times are a list under ``ah:thr:{<namespace>}:a:<address>``, everybody's last
``overall`` a list under ``ah:thr:{<namespace>}:all`` (one hash slot per rule). Counting a failure is
one Lua script (push, trim to the bound, expire a window after the last failure), and so is reading
the wait: no instance sees half a count, the lists never grow past their bound and idle addresses
cost nothing after their window. The wait is computed in Python by the same function as in memory
(``wait_seconds``), from times that Redis returns as ``%.17g`` strings (they round-trip exactly).
Time is Redis's own (``TIME``) unless a clock is given (the tests give one), so instances whose
clocks drift still share one window.

When Redis cannot be reached, ``RedisThrottleStore`` raises ``LiveStateUnavailable``; what the
platform runs is ``FallbackThrottleStore``, which decides what a throttle does then. Refusing every
sign-in and every credential (503) would lock everybody out, admins included, for as long as Redis is
away; letting them through uncounted would make the throttle bypassable exactly then. So each instance
also counts, always, the failures it sees itself (``LocalThrottleStore``, the same rule), and while
Redis does not answer it decides from that count alone: the single-process throttle, which still
holds on each instance (across N instances an address gets at most N times its allowance until Redis
is back). After a failed call Redis is left alone for a few seconds, so that an outage does not add a
timeout to every request. Failures counted only locally are not copied into Redis later. While Redis
answers, the wait is the larger of the two: the shared one, unless Redis lost its data (restarted
empty), when this instance still remembers its own failures.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis

from arenahub.platform.cluster.errors import RETRY_AFTER_SECONDS, UNREACHABLE, LiveStateUnavailable
from arenahub.platform.throttle import SIGN_INS, LocalThrottleStore, ThrottleRule, ThrottleStore, wait_seconds

log = logging.getLogger("arenahub.platform.throttle")

_CLOCK = """
local function fmt(x) return string.format('%.17g', x) end
local function clock()
  if ARGV[1] ~= '' then return tonumber(ARGV[1]) end
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
"""

# ARGV: now ('' = Redis time), per_address (0: none), overall (0: none). Returns now and the oldest of
# the address's last per_address failures and of everybody's last overall ('' when there are fewer).
_CHECK = _CLOCK + """
local now, per, overall = clock(), tonumber(ARGV[2]), tonumber(ARGV[3])
local mine, everyone = '', ''
if per > 0 and redis.call('LLEN', KEYS[1]) >= per then mine = redis.call('LINDEX', KEYS[1], -per) end
if overall > 0 and redis.call('LLEN', KEYS[2]) >= overall then
  everyone = redis.call('LINDEX', KEYS[2], -overall)
end
return {fmt(now), mine, everyone}
"""

# ARGV: now, per_address, overall, address window (ms), overall window (ms).
_FAIL = _CLOCK + """
local now, per, overall = fmt(clock()), tonumber(ARGV[2]), tonumber(ARGV[3])
if per > 0 then
  redis.call('RPUSH', KEYS[1], now)
  redis.call('LTRIM', KEYS[1], -per, -1)
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
end
if overall > 0 then
  redis.call('RPUSH', KEYS[2], now)
  redis.call('LTRIM', KEYS[2], -overall, -1)
  redis.call('PEXPIRE', KEYS[2], ARGV[5])
end
return 1
"""


def _ms(seconds: float) -> int:
    return math.ceil(seconds * 1000)  # rounded up: a key never expires before its window ends


class RedisThrottleStore:
    """The ``ThrottleStore`` of one rule, shared by every instance of a cluster (see the module docstring)."""

    def __init__(self, redis: Redis, rule: ThrottleRule = SIGN_INS, *, namespace: str = "sign-ins",
                 clock: Callable[[], float] | None = None) -> None:
        self.redis = redis
        self.rule = rule
        self.namespace = namespace  # one per rule: sign-ins and API credentials are counted apart
        self.clock = clock
        self._check = redis.register_script(_CHECK)
        self._fail = redis.register_script(_FAIL)

    async def retry_after(self, address: str) -> int:
        if not self.rule.counts:
            return 0
        now, mine, everyone = await self._run(self._check, address, [])
        return wait_seconds(self.rule, float(now), float(mine) if mine else None,
                            float(everyone) if everyone else None)

    async def failed(self, address: str) -> None:
        if self.rule.counts:
            await self._run(self._fail, address, [_ms(self.rule.address_window), _ms(self.rule.overall_window)])

    async def _run(self, script: Any, address: str, extra: list[object]) -> list[str]:
        base = "ah:thr:{" + self.namespace + "}:"
        now = "" if self.clock is None else repr(float(self.clock()))
        try:
            result = await script(keys=[base + "a:" + address, base + "all"],
                                  args=[now, self.rule.per_address, self.rule.overall or 0, *extra])
        except UNREACHABLE as exc:
            raise LiveStateUnavailable("failed-credential counts", exc) from exc
        return [v.decode() if isinstance(v, bytes) else str(v) for v in result] if isinstance(result, list) else []


class FallbackThrottleStore:
    """A shared store, with this instance's own count beside it for when the shared one cannot be
    reached (see the module docstring)."""

    def __init__(self, shared: ThrottleStore, local: ThrottleStore, *, retry_seconds: float = RETRY_AFTER_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.shared = shared
        self.local = local
        self.retry_seconds = retry_seconds
        self.clock = clock
        self._away_until: float | None = None  # the shared store failed: asked again after this time

    async def retry_after(self, address: str) -> int:
        wait = await self.local.retry_after(address)
        if self._reachable():
            try:
                wait = max(wait, await self.shared.retry_after(address))
            except LiveStateUnavailable as exc:
                self._away(exc)
            else:
                self._back()
        return wait

    async def failed(self, address: str) -> None:
        await self.local.failed(address)
        if self._reachable():
            try:
                await self.shared.failed(address)
            except LiveStateUnavailable as exc:
                self._away(exc)
            else:
                self._back()

    def _reachable(self) -> bool:
        return self._away_until is None or self.clock() >= self._away_until

    def _away(self, exc: LiveStateUnavailable) -> None:
        if self._away_until is None:
            log.warning("the shared failed-credential counts cannot be reached (%s): counting this instance's "
                        "failures only until Redis answers", exc.__cause__ or exc)
        self._away_until = self.clock() + self.retry_seconds

    def _back(self) -> None:
        if self._away_until is not None:
            log.info("the shared failed-credential counts answer again")
            self._away_until = None


def throttle_store(redis: Redis | None, rule: ThrottleRule, namespace: str) -> ThrottleStore:
    """``rule``'s store: this process's without Redis; with Redis, the cluster's, this instance's own
    count beside it."""
    local = LocalThrottleStore(rule)
    if redis is None:
        return local
    return FallbackThrottleStore(RedisThrottleStore(redis, rule, namespace=namespace), local)
